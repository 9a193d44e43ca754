"""Simulated annotators: per-frame label flips, partly systematic for sloppy annotators."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from demo.items import CLASSES
from demo.noise import crc

__all__ = ["ANNOTATORS", "SYSTEMATIC_RATE", "SYSTEMATIC_SHARE", "make_annotations"]

ANNOTATORS: dict[str, float] = {"alice": 0.03, "bob": 0.06, "sloppy_sam": 0.30}
"""Default annotators and their per-frame label-flip rate."""

SYSTEMATIC_RATE = 0.2
"""Annotators with a flip rate at or above this make partly systematic errors."""

SYSTEMATIC_SHARE = 0.7
"""Share of a systematic annotator's errors that go to the class's look-alike."""

_LOOK_ALIKE = {
    "good": "discoloration",
    "discoloration": "good",
    "dent": "scratch",
    "scratch": "dent",
}


def make_annotations(
    truth: pl.DataFrame,
    *,
    video: str,
    seed: int,
    annotators: Mapping[str, float] = ANNOTATORS,
) -> pl.DataFrame:
    """Simulate annotators labelling every labelled frame of one video, with flips.

    Each annotator independently flips a frame's label with its rate. Errors go to
    another class chosen uniformly, except for annotators whose rate is at least
    ``SYSTEMATIC_RATE``: ``SYSTEMATIC_SHARE`` of their errors go to the class's
    look-alike (dent <-> scratch, good <-> discoloration).

    Parameters
    ----------
    truth : polars.DataFrame
        Needs ``frame_index`` and ``label`` (null rows are skipped).
    video : str
        Value of the ``video`` column (a video id or file name); also seeds the flips.
    seed : int
        Non-negative seed; same inputs give the same output.
    annotators : Mapping[str, float]
        Annotator name -> flip rate in [0, 1].

    Returns
    -------
    polars.DataFrame
        Columns ``video``, ``frame_index`` (Int64), ``label``, ``annotator``; sorted by
        frame then annotator (in mapping order); ``n_labelled * len(annotators)`` rows.
    """
    lab = truth.filter(pl.col("label").is_not_null()).sort("frame_index")
    frames = lab["frame_index"].cast(pl.Int64).to_numpy()
    idx = {c: i for i, c in enumerate(CLASSES)}
    y = np.array([idx[c] for c in lab["label"].to_list()], dtype=np.int64)
    n, k = len(y), len(CLASSES)
    names = list(annotators)
    given = np.empty((n, len(names)), dtype=np.int64)
    for j, name in enumerate(names):
        rate = float(annotators[name])
        conf = (np.ones((k, k)) - np.eye(k)) / (k - 1)
        if rate >= SYSTEMATIC_RATE:
            conf *= 1 - SYSTEMATIC_SHARE
            for a, b in _LOOK_ALIKE.items():
                conf[idx[a], idx[b]] += SYSTEMATIC_SHARE
        rng = np.random.default_rng(np.random.SeedSequence([seed, crc(video), crc(name)]))
        flip = rng.random(n) < rate
        u = rng.random(n)
        wrong = (u[:, None] > np.cumsum(conf[y], axis=1)).sum(axis=1).clip(max=k - 1)
        given[:, j] = np.where(flip, wrong, y)
    return pl.DataFrame(
        {
            "video": [video] * (n * len(names)),
            "frame_index": np.repeat(frames, len(names)),
            "label": [CLASSES[i] for i in given.reshape(-1)],
            "annotator": names * n,
        },
        schema={"video": pl.Utf8, "frame_index": pl.Int64, "label": pl.Utf8, "annotator": pl.Utf8},
    )

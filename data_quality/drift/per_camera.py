"""Per-camera drift references from a champion's frames, and the drift queue of a video.

No I/O here: the ``drift_reference`` asset hands in the frames behind the champion's dataset
and two callables (decode JPEGs, score with the champion) and writes each
:class:`CameraBuild`'s reference and row; ``drift_report`` writes the rows of
:func:`drift_queue_rows` to ``drift_queue``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from data_quality.drift.reference import CameraReference, build_reference
from data_quality.drift.sampling import needs_labels

__all__ = [
    "CameraBuild",
    "VideoDrift",
    "assess_video",
    "build_camera_references",
    "drift_queue_rows",
]

KEYS = ["video_id", "frame_index"]

#: ``decode(frames) -> BGR uint8 images``, one per row, in order
Decode = Callable[[pl.DataFrame], list[np.ndarray]]
#: ``score(bgr, camera_ids) -> (embeddings (N, D), probabilities (N, K))`` (None, None: no model)
Score = Callable[[list[np.ndarray], list[str]], tuple[Any, Any]]


@dataclass(frozen=True)
class CameraBuild:
    """One camera's reference and what it was built from."""

    camera_id: str
    model_version: str
    reference: CameraReference
    frames: int
    videos: int
    held_out: bool
    """True: built from videos the champion never trained on (embedding and prediction tests
    possible); False: from its own training videos (those tests are left out)."""

    def row(self, uri: str, *, created_at: datetime) -> dict[str, Any]:
        """The ``drift_references`` row: ``camera_id, model_version, uri, frames, videos,
        held_out, created_at``."""
        return {
            "camera_id": self.camera_id,
            "model_version": self.model_version,
            "uri": uri,
            "frames": self.frames,
            "videos": self.videos,
            "held_out": self.held_out,
            "created_at": created_at,
        }


def build_camera_references(
    frames: pl.DataFrame,
    *,
    version: str,
    decode: Decode,
    score: Score,
    max_frames_per_camera: int,
    min_frames: int,
    log: Callable[[str], None] | None = None,
) -> Iterator[CameraBuild]:
    """Each camera's reference, one camera at a time (cameras in order of first appearance
    after sorting by ``video_id, frame_index``).

    Held out: the videos the champion never trained on (their embeddings and confidences are
    what a new video's should look like); with fewer than ``min_frames`` of those, the
    champion's own training videos (in-sample: its confidence there is inflated, so the
    embedding and prediction tests are left out rather than made to over-alarm). Then an even
    stride down to ``max_frames_per_camera``.

    Parameters
    ----------
    frames : pl.DataFrame
        Grid-sampled frames of the champion's dataset: ``video_id, frame_index, camera_id``,
        ``trained`` (bool: the video has training frames) and whatever ``decode`` needs.
    version : str
        The champion's model version (the references' version).
    decode, score : callable
        See :data:`Decode` and :data:`Score`.
    max_frames_per_camera, min_frames : int
        The cap, and the held-out frames needed to prefer held-out videos.
    log : callable, optional
        One line per camera.

    Yields
    ------
    CameraBuild
    """
    for (camera,), group in frames.sort(KEYS).group_by("camera_id", maintain_order=True):
        held_out = group.filter(~pl.col("trained"))
        in_sample = held_out.height < min_frames
        group = group if in_sample else held_out
        stride = max(1, -(-group.height // max_frames_per_camera))
        group = group.gather_every(stride)
        bgr = decode(group)
        emb, probs = (None, None) if in_sample else score(bgr, group["camera_id"].to_list())
        ref = build_reference(
            bgr,
            emb,
            probs,
            camera_id=str(camera),
            version=version,
            segments=group["video_id"].to_numpy(),
            meta={"in_sample": in_sample},
        )
        if log is not None:
            source = (
                "held-out videos"
                if not in_sample
                else "training videos only: no embedding/prediction tests"
            )
            log(f"reference for {camera}: {group.height} frames ({source})")
        yield CameraBuild(
            camera_id=str(camera),
            model_version=version,
            reference=ref,
            frames=group.height,
            videos=group["video_id"].n_unique(),
            held_out=not in_sample,
        )


def drift_queue_rows(
    frames: pl.DataFrame,
    drifted: Sequence[str],
    embeddings: np.ndarray | None,
    probs: np.ndarray | None,
    reference_embeddings: np.ndarray | None,
    *,
    budget: int,
    now: datetime,
    empty_share: float = 0.0,
) -> pl.DataFrame:
    """The frames of a drifted video to label first (the ``drift_queue`` rows of one video).

    Only data or prediction drift queues frames (the most uncertain and novel, by
    :func:`data_quality.drift.needs_labels`); a viewpoint shift changes every statistic and
    asks for a new reference instead, so it queues none. No budget goes to frames without an
    item (``item_present`` false; null, unscored, counts as an item) beyond
    ``round(empty_share * budget)`` of them, ranked among themselves and queued after the
    frames with an item: a video with few items queues fewer frames.

    Parameters
    ----------
    frames : pl.DataFrame
        The video's frames in order: ``video_id, frame_index, camera_id, uri``.
    drifted : sequence of str
        The drift kinds that drifted (``"data"``, ``"viewpoint"``, ``"prediction"``).
    embeddings, probs : np.ndarray, optional
        float (N, D) and (N, K) of the frames under the champion.
    reference_embeddings : np.ndarray, optional
        float (M, D) of the camera's reference.
    budget : int
        Frames to queue at most.
    now : datetime
        ``queued_at``.
    empty_share : float
        Share of ``budget`` that may go to frames without an item, in [0, 1].

    Returns
    -------
    pl.DataFrame
        ``video_id, frame_index, camera_id, uri, priority`` (1 = first), ``reason``
        (e.g. ``"data+prediction drift"``), ``queued_at``; empty when nothing is queued.
    """
    kinds = set(drifted)
    picks = np.array([], dtype=int)
    if kinds & {"data", "prediction"} and "viewpoint" not in kinds and budget > 0:
        empty = _without_item(frames)
        n_empty = min(int(empty.sum()), round(min(max(empty_share, 0.0), 1.0) * budget))
        picks = np.concatenate(
            [
                _ranked(np.flatnonzero(~empty), embeddings, probs, reference_embeddings,
                        budget=budget - n_empty),
                _ranked(np.flatnonzero(empty), embeddings, probs, reference_embeddings,
                        budget=n_empty),
            ]
        )  # fmt: skip
    reason = "+".join(sorted(kinds & {"data", "prediction"})) + " drift"
    return (
        frames[picks.tolist(), :]
        .select(*KEYS, "camera_id", "uri")
        .with_columns(
            priority=pl.Series(np.arange(1, len(picks) + 1), dtype=pl.Int64),
            reason=pl.lit(reason),
            queued_at=pl.lit(now),
        )
    )


def _without_item(frames: pl.DataFrame) -> np.ndarray:
    """bool (N,): the frames scored as showing no item (``item_present`` false; a frame
    without the column or with null, never scored, counts as showing one)."""
    if "item_present" not in frames.columns:
        return np.zeros(frames.height, dtype=bool)
    return frames["item_present"].eq(False).fill_null(False).to_numpy()


def _ranked(
    rows: np.ndarray,
    embeddings: np.ndarray | None,
    probs: np.ndarray | None,
    reference_embeddings: np.ndarray | None,
    *,
    budget: int,
) -> np.ndarray:
    """:func:`needs_labels` over the frames ``rows`` only: indices into all frames."""
    if budget <= 0 or not len(rows):
        return np.zeros(0, dtype=np.int64)
    emb = None if embeddings is None else np.asarray(embeddings)[rows]
    prob = None if probs is None else np.asarray(probs)[rows]
    return rows[needs_labels(emb, prob, reference_embeddings, budget=budget)]


@dataclass
class VideoDrift:
    """One video tested against its camera's reference: the ``drift`` rows, the summary per
    kind (``ok`` / ``drifted`` / why not tested), the tests and the ``drift_queue`` rows."""

    tests: list[Any]
    table: pl.DataFrame
    verdict: dict[str, str]
    queue: pl.DataFrame

    @property
    def drifted_statistics(self) -> list[str]:
        return self.table.filter(pl.col("drifted"))["statistic"].to_list()


def assess_video(
    frames: pl.DataFrame,
    reference: CameraReference | None,
    new: CameraReference,
    embeddings: np.ndarray | None,
    probs: np.ndarray | None,
    *,
    options: Any,
    budget: int,
    now: datetime,
    schema: dict[str, Any],
) -> VideoDrift:
    """Data, viewpoint and prediction drift of one video (``new``: its summary) against its
    camera's ``reference`` (None: every test reports ``no_reference``), and the frames of a
    data- or prediction-drifted video to label first.

    Parameters
    ----------
    frames : pl.DataFrame
        The video's sampled frames in order: ``video_id, frame_index, camera_id, uri``.
    embeddings, probs : np.ndarray, optional
        float (N, D) and (N, K) of the frames under the champion (None without one).
    options : data_quality.drift.DriftConfig
        Test settings (alpha, viewpoint tolerances).
    budget : int
        Frames to queue at most.
    now : datetime
        ``computed_at`` and ``queued_at``.
    schema : dict
        The ``drift`` table's polars schema.
    """
    from data_quality.drift.detect import detect_drift, summary

    video_id, camera = frames["video_id"][0], frames["camera_id"][0]
    tests = detect_drift(reference, new, alpha=options.alpha, config=options)
    ref_version = reference.version if reference is not None else None
    table = pl.DataFrame(
        [
            {"video_id": video_id, "camera_id": camera, **t.to_row(),
             "reference_version": ref_version, "computed_at": now}
            for t in tests
        ],
        schema=schema,
    )  # fmt: skip
    queue = drift_queue_rows(
        frames,
        [t.kind for t in tests if t.drifted],
        embeddings,
        probs,
        reference.embeddings if reference is not None else None,
        budget=budget,
        now=now,
        empty_share=getattr(options, "empty_share", 0.0),
    )
    return VideoDrift(tests, table, summary(tests), queue)

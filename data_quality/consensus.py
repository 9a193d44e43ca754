"""Multi-annotator consensus with :mod:`cleanlab.multiannotator`.

Two modes, chosen by whether model predictions are available:

* ``pred_probs`` given -> CROWDLAB (``consensus_method="best_quality"``,
  ``quality_method="crowdlab"``): consensus and quality weigh every
  annotator's label by that annotator's estimated reliability, together
  with the model.
* no ``pred_probs`` -> majority vote (``consensus_method="majority_vote"``,
  ``quality_method="agreement"``): consensus quality is the fraction of
  annotators that agree; annotator quality is the agreement with consensus.

Frames labelled by a single annotator keep that label. Their
``consensus_quality`` is the model's label quality score when
``pred_probs`` is given, otherwise the estimated quality of that annotator
(CROWDLAB's agreement score would be a vacuous 1.0). When no frame has two
annotators there is nothing to compare: quality comes from the model alone,
or is null without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

__all__ = ["ConsensusResult", "compute_consensus"]

_KEYS = ["video_id", "frame_index"]
_ANNOTATOR_SCHEMA = {
    "annotator": pl.String,
    "quality": pl.Float64,
    "agreement_with_consensus": pl.Float64,
    "num_labels": pl.Int64,
    "worst_class": pl.String,
}


@dataclass(frozen=True)
class ConsensusResult:
    """Output of :func:`compute_consensus`.

    Attributes
    ----------
    frames : pl.DataFrame
        One row per labelled frame, worst ``consensus_quality`` first (nulls
        last, then by key): ``video_id``, ``frame_index``, ``consensus_label``
        (class name), ``consensus_quality`` (0..1, higher = more likely
        correct), ``annotator_agreement`` (fraction of this frame's annotators
        agreeing with the consensus, 0..1), ``num_annotations``.
    annotators : pl.DataFrame
        One row per annotator, worst ``quality`` first: ``annotator``,
        ``quality`` (0..1), ``agreement_with_consensus`` (0..1, over all of
        the annotator's frames), ``num_labels``, ``worst_class`` (the class
        this annotator most often gets wrong, cleanlab's estimate; null when
        unknown).
    method : str
        ``"crowdlab"``, ``"majority_vote"``, ``"single_annotation"`` or ``"empty"``.
    """

    frames: pl.DataFrame
    annotators: pl.DataFrame
    method: str


def _wide(
    labels: pl.DataFrame, classes: Sequence[str]
) -> tuple[pl.DataFrame, list[str], np.ndarray]:
    """Return (frame keys, annotator ids, (N, M) float matrix with NaN for missing)."""
    missing = {"video_id", "frame_index", "label", "annotator"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels lack columns {sorted(missing)}")
    unknown = sorted(set(labels["label"].drop_nulls().unique().to_list()) - set(classes))
    if unknown or labels["label"].null_count():
        raise ValueError(f"labels contain classes outside `classes`: {unknown or ['<null>']}")
    code = {c: i for i, c in enumerate(classes)}
    df = (
        labels.select(*_KEYS, "annotator", "label")
        .with_row_index("_order")
        .with_columns(pl.col("annotator").fill_null("unknown"))
        # An annotator who labelled a frame twice: the later row wins.
        .unique(subset=[*_KEYS, "annotator"], keep="last", maintain_order=True)
        .with_columns(pl.col("label").replace_strict(code, return_dtype=pl.Int64).alias("_code"))
    )
    frames = df.select(_KEYS).unique().sort(_KEYS)
    annotators = sorted(df["annotator"].unique().to_list())
    row = frames.with_row_index("_row")
    df = df.join(row, on=_KEYS)
    col = {a: j for j, a in enumerate(annotators)}
    matrix = np.full((frames.height, len(annotators)), np.nan)
    matrix[df["_row"].to_numpy(), [col[a] for a in df["annotator"].to_list()]] = df[
        "_code"
    ].to_numpy()
    return frames, annotators, matrix


def _align(
    pred_probs: np.ndarray, frames: pl.DataFrame, frame_keys: pl.DataFrame | None, k: int
) -> np.ndarray:
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != k:
        raise ValueError(f"pred_probs must have shape (N, {k}), got {pred_probs.shape}")
    if frame_keys is None:
        if len(pred_probs) != frames.height:
            raise ValueError(
                f"pred_probs has {len(pred_probs)} rows but there are {frames.height} labelled "
                "frames; pass frame_keys to say which row is which frame"
            )
        return pred_probs
    if frame_keys.height != len(pred_probs):
        raise ValueError("frame_keys and pred_probs must have the same number of rows")
    keyed = frame_keys.select(_KEYS).with_row_index("_p")
    joined = frames.join(keyed, on=_KEYS, how="left", maintain_order="left")
    if joined["_p"].null_count():
        raise ValueError(f"{joined['_p'].null_count()} labelled frame(s) missing from frame_keys")
    return pred_probs[joined["_p"].to_numpy()]


def _vote_fractions(matrix: np.ndarray, k: int) -> np.ndarray:
    counts = np.stack([(matrix == c).sum(axis=1) for c in range(k)], axis=1).astype(float)
    return (counts + 1e-3) / (counts + 1e-3).sum(axis=1, keepdims=True)


def _single_annotation(matrix: np.ndarray, pred_probs: np.ndarray | None, annotators: list[str]):
    from cleanlab.rank import get_label_quality_scores

    consensus = np.nanmax(matrix, axis=1).astype(int)  # one label per frame
    quality = (
        get_label_quality_scores(consensus, pred_probs)
        if pred_probs is not None
        else np.full(len(consensus), np.nan)
    )
    has = ~np.isnan(matrix)
    ann_quality = np.array(
        [
            np.nanmean(quality[has[:, j]]) if pred_probs is not None else np.nan
            for j in range(len(annotators))
        ]
    )
    stats = pd.DataFrame(
        {
            "annotator_quality": ann_quality,
            "agreement_with_consensus": np.ones(len(annotators)),
            "worst_class": np.nan,
            "num_examples_labeled": has.sum(axis=0),
        },
        index=annotators,
    )
    frames = pd.DataFrame(
        {
            "consensus_label": consensus,
            "consensus_quality_score": quality,
            "annotator_agreement": np.ones(len(consensus)),
            "num_annotations": has.sum(axis=1),
        }
    )
    return frames, stats


def compute_consensus(
    labels: pl.DataFrame,
    *,
    classes: Sequence[str],
    pred_probs: np.ndarray | None = None,
    frame_keys: pl.DataFrame | None = None,
) -> ConsensusResult:
    """Consensus label per frame and a quality score per frame and annotator.

    Parameters
    ----------
    labels : pl.DataFrame
        Long labels table (``video_id``, ``frame_index``, ``label``,
        ``annotator``), e.g. from :func:`data_quality.labels.read_label_file`.
        If an annotator labelled a frame more than once, the last row wins
        (pass rows in import order). Every label must be in ``classes``.
    classes : sequence of str
        The K class names; class ``k`` is column ``k`` of ``pred_probs``.
    pred_probs : np.ndarray of shape (F, K), optional
        Out-of-sample predicted class probabilities per frame (rows sum to 1).
        Enables CROWDLAB; without it, majority vote.
    frame_keys : pl.DataFrame of shape (F, 2), optional
        ``video_id``, ``frame_index`` of each row of ``pred_probs`` (extra
        frames are ignored). If omitted, rows must be the distinct labelled
        frames sorted by (video_id, frame_index).

    Returns
    -------
    ConsensusResult
        ``frames`` and ``annotators`` tables, worst first (see
        :class:`ConsensusResult`).
    """
    from cleanlab.multiannotator import get_label_quality_multiannotator

    classes = list(classes)
    k = len(classes)
    frames, annotators, matrix = _wide(labels, classes)
    probs = _align(pred_probs, frames, frame_keys, k) if pred_probs is not None else None
    num_annotations = (~np.isnan(matrix)).sum(axis=1)

    if frames.height == 0:
        return ConsensusResult(
            frames=frames.with_columns(
                consensus_label=pl.lit(None, pl.String),
                consensus_quality=pl.lit(None, pl.Float64),
                annotator_agreement=pl.lit(None, pl.Float64),
                num_annotations=pl.lit(None, pl.Int64),
            ),
            annotators=pl.DataFrame(schema=_ANNOTATOR_SCHEMA),
            method="empty",
        )
    if len(annotators) < 2 or (num_annotations < 2).all():
        method = "single_annotation"
        info_frames, stats = _single_annotation(matrix, probs, annotators)
    else:
        method = "crowdlab" if probs is not None else "majority_vote"
        wide = pd.DataFrame(matrix, columns=annotators)
        # cleanlab breaks exhausted ties with the global numpy RNG: seed it locally.
        state = np.random.get_state()
        np.random.seed(0)
        try:
            info = get_label_quality_multiannotator(
                wide,
                probs if probs is not None else _vote_fractions(matrix, k),
                consensus_method="best_quality" if probs is not None else "majority_vote",
                quality_method="crowdlab" if probs is not None else "agreement",
                verbose=False,
            )
        finally:
            np.random.set_state(state)
        info_frames = info["label_quality"].reset_index(drop=True)
        stats = info["annotator_stats"]
        detailed = info["detailed_label_quality"].to_numpy()
        quality = stats["annotator_quality"].reindex(annotators).to_numpy(dtype=float)
        # Annotators who never overlap with anyone: fall back to their mean label quality.
        fallback = (
            np.nanmean(detailed, axis=0)
            if probs is not None
            else np.full(
                len(annotators), np.nanmean(quality) if np.isfinite(quality).any() else np.nan
            )
        )
        quality = np.where(np.isnan(quality), fallback, quality)
        stats = stats.reindex(annotators).assign(annotator_quality=quality)
        if probs is None:
            single = num_annotations == 1
            who = np.argmax(~np.isnan(matrix[single]), axis=1)
            q = info_frames["consensus_quality_score"].to_numpy(dtype=float, copy=True)
            q[single] = quality[who]
            info_frames["consensus_quality_score"] = q

    frames_out = frames.with_columns(
        consensus_label=pl.Series(
            [classes[i] for i in info_frames["consensus_label"].to_numpy()], dtype=pl.String
        ),
        consensus_quality=pl.Series(
            info_frames["consensus_quality_score"].to_numpy(dtype=float)
        ).fill_nan(None),
        annotator_agreement=pl.Series(info_frames["annotator_agreement"].to_numpy(dtype=float)),
        num_annotations=pl.Series(num_annotations, dtype=pl.Int64),
    ).sort(["consensus_quality", *_KEYS], nulls_last=True)
    worst = [
        classes[int(w)] if w is not None and not pd.isna(w) else None
        for w in stats["worst_class"].reindex(annotators).to_list()
    ]
    annotators_out = pl.DataFrame(
        schema=_ANNOTATOR_SCHEMA,
        data={
            "annotator": annotators,
            "quality": pl.Series(
                stats["annotator_quality"].reindex(annotators).to_numpy(dtype=float)
            ).fill_nan(None),
            "agreement_with_consensus": stats["agreement_with_consensus"]
            .reindex(annotators)
            .to_numpy(dtype=float),
            "num_labels": stats["num_examples_labeled"]
            .reindex(annotators)
            .to_numpy()
            .astype(np.int64),
            "worst_class": pl.Series(worst, dtype=pl.String),
        },
    ).sort(["quality", "agreement_with_consensus", "annotator"], nulls_last=True)
    return ConsensusResult(frames=frames_out, annotators=annotators_out, method=method)

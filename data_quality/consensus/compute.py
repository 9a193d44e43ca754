"""The entry point: :func:`compute_consensus` from the long labels table, choosing the method."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from data_quality.consensus.best_quality import crowdlab
from data_quality.consensus.crowd import Crowd
from data_quality.consensus.single import single_annotation
from data_quality.contract import KEYS as _KEYS

__all__ = ["ConsensusResult", "compute_consensus"]

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


def _long(labels: pl.DataFrame, classes: Sequence[str]) -> tuple[pl.DataFrame, list[str], Crowd]:
    """Return (frame keys sorted, annotator ids sorted, the labels as a :class:`Crowd`)."""
    missing = {"video_id", "frame_index", "label", "annotator"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels lack columns {sorted(missing)}")
    unknown = sorted(set(labels["label"].drop_nulls().unique().to_list()) - set(classes))
    if unknown or labels["label"].null_count():
        raise ValueError(f"labels contain classes outside `classes`: {unknown or ['<null>']}")
    df = (
        labels.select(*_KEYS, "annotator", "label")
        .with_columns(pl.col("annotator").fill_null("unknown"))
        # An annotator who labelled a frame twice: the later row wins.
        .unique(subset=[*_KEYS, "annotator"], keep="last", maintain_order=True)
    )
    frames = df.select(_KEYS).unique().sort(_KEYS)
    annotators = sorted(df["annotator"].unique().to_list())
    df = (
        df.join(frames.with_row_index("_row"), on=_KEYS)
        .select(
            "_row",
            pl.col("annotator").cast(pl.Enum(annotators)).to_physical().alias("_ann"),
            pl.col("label").cast(pl.Enum(list(classes))).to_physical().alias("_code"),
        )
        .sort("_row", "_ann")
    )
    crowd = Crowd(
        frame=df["_row"].to_numpy().astype(np.int64),
        annotator=df["_ann"].to_numpy().astype(np.int64),
        label=df["_code"].to_numpy().astype(np.int64),
        n_frames=frames.height,
        n_annotators=len(annotators),
        n_classes=len(classes),
    )
    return frames, annotators, crowd


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
    classes = list(classes)
    k = len(classes)
    frames, annotators, crowd = _long(labels, classes)
    probs = _align(pred_probs, frames, frame_keys, k) if pred_probs is not None else None
    num_annotations = crowd.num_annotations()

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
        stats = single_annotation(crowd, probs)
        quality = stats.annotator_quality
        frame_quality = stats.consensus_quality_score
    else:
        method = "crowdlab" if probs is not None else "majority_vote"
        # cleanlab breaks exhausted ties with the global numpy RNG: seed it locally.
        state = np.random.get_state()
        np.random.seed(0)
        try:
            stats = crowdlab(crowd, probs)
        finally:
            np.random.set_state(state)
        quality = stats.annotator_quality
        # Annotators who never overlap with anyone: fall back to their mean label quality.
        fallback = (
            stats.label_quality_mean
            if probs is not None
            else np.full(
                len(annotators), np.nanmean(quality) if np.isfinite(quality).any() else np.nan
            )
        )
        quality = np.where(np.isnan(quality), fallback, quality)
        frame_quality = stats.consensus_quality_score.copy()
        if probs is None:  # a lone label is only as good as its annotator
            single = num_annotations == 1
            frame_quality[crowd.frame[single[crowd.frame]]] = quality[
                crowd.annotator[single[crowd.frame]]
            ]

    frames_out = frames.with_columns(
        consensus_label=pl.Series(
            np.array(classes, dtype=object)[stats.consensus_label], dtype=pl.String
        ),
        consensus_quality=pl.Series(frame_quality, dtype=pl.Float64).fill_nan(None),
        annotator_agreement=pl.Series(stats.annotator_agreement, dtype=pl.Float64),
        num_annotations=pl.Series(num_annotations, dtype=pl.Int64),
    ).sort(["consensus_quality", *_KEYS], nulls_last=True)
    worst = [classes[w] if w >= 0 else None for w in stats.worst_class.tolist()]
    annotators_out = pl.DataFrame(
        schema=_ANNOTATOR_SCHEMA,
        data={
            "annotator": annotators,
            "quality": pl.Series(quality, dtype=pl.Float64).fill_nan(None),
            "agreement_with_consensus": stats.agreement_with_consensus,
            "num_labels": stats.num_examples_labeled.astype(np.int64),
            "worst_class": pl.Series(worst, dtype=pl.String),
        },
    ).sort(["quality", "agreement_with_consensus", "annotator"], nulls_last=True)
    return ConsensusResult(frames=frames_out, annotators=annotators_out, method=method)

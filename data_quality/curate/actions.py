"""Curation actions: per frame keep, relabel or drop (with reasons), and what overrides them.

:func:`decide_actions` applies a :class:`CurationPolicy`; :func:`apply_reviews` lets a
reviewer's latest label win; :func:`drift_requests_not_low_quality` keeps frames asked for
because their video drifted; :func:`quality_drops` counts the frame-quality drops per camera.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from data_quality.contract import KEYS as _KEYS

__all__ = [
    "DEFAULT_POLICY",
    "CurationPolicy",
    "apply_reviews",
    "decide_actions",
    "drift_requests_not_low_quality",
    "quality_drops",
]


@dataclass(frozen=True)
class CurationPolicy:
    """What to do with each kind of issue.

    Attributes
    ----------
    relabel_max_quality : float
        A frame is *relabelled* to ``suggested_label`` when its
        ``label_quality`` (model probability of the given label) is below this...
    relabel_min_confidence : float
        ...and the model's probability of the suggestion is at least this.
    relabel_only_flagged : bool
        ``False`` (default): the relabel rule also applies to frames cleanlab
        did not flag (confident model, implausible label); on the digits
        benchmark this lowers residual noise by ~0.5 points. ``True``: only
        flagged label issues are relabelled.
    drop_unresolved_label_issues : bool
        Flagged label issues that are not relabelled are dropped (``True``,
        default) or kept with their given label.
    min_consensus_quality : float
        Drop frames whose annotators' consensus quality is below this
        (0 = never; frames without a quality are kept).
    drop_outliers : bool
        Default ``False``: in inspection data outliers are often the rare
        defects the model must learn; review them instead of dropping.
    dedupe_near_duplicates : bool
        ``False`` (default) keeps every near-duplicate; ``True`` keeps one per
        set (the highest ``label_quality``) and drops the rest. Either way a
        set never spans two splits.
    drop_frame_quality : tuple of str
        Frame-quality issue names whose flagged frames are dropped
        (``"dark"``, ``"overexposed"``, ``"blurry"``).
    trust_unanimous : bool
        A frame on which two or more annotators all agree is neither relabelled nor dropped
        for a label issue (it stays flagged for review): independent annotators agreeing on the
        same wrong class is far rarer than a held-out model being wrong (default ``True``).
    """

    relabel_max_quality: float = 0.3
    relabel_min_confidence: float = 0.7
    relabel_only_flagged: bool = False
    drop_unresolved_label_issues: bool = True
    min_consensus_quality: float = 0.0
    drop_outliers: bool = False
    dedupe_near_duplicates: bool = False
    drop_frame_quality: tuple[str, ...] = ("dark", "overexposed", "blurry")
    trust_unanimous: bool = True


DEFAULT_POLICY = CurationPolicy()
"""The default policy (frozen; the default argument of :func:`data_quality.curate.curate`)."""


def _flag(df: pl.DataFrame, col: str) -> pl.Expr:
    return pl.col(col).fill_null(False) if col in df.columns else pl.lit(False)


def decide_actions(
    consensus_frames: pl.DataFrame,
    issues: pl.DataFrame,
    *,
    policy: CurationPolicy = CurationPolicy(),
) -> pl.DataFrame:
    """Apply ``policy`` frame by frame.

    Parameters
    ----------
    consensus_frames : pl.DataFrame
        ``video_id``, ``frame_index``, ``consensus_label`` and optionally
        ``consensus_quality`` (from :func:`data_quality.consensus.compute_consensus`).
    issues : pl.DataFrame
        The ``label_issues`` table (:func:`data_quality.label_issues.find_label_issues`);
        frames missing from it are kept unchanged.
    policy : CurationPolicy

    Returns
    -------
    pl.DataFrame
        Sorted by key: ``video_id``, ``frame_index``, ``label`` (final),
        ``original_label``, ``action`` (``"kept"``, ``"relabelled"``,
        ``"dropped"``), ``reasons`` (list of str: the issue names behind a
        drop, ``["label_issue"]`` or ``["low_label_quality"]`` for a relabel,
        empty for plain keeps), ``near_duplicate_set`` (Int64 or null).
    """
    base = consensus_frames.select(
        *_KEYS,
        pl.col("consensus_label").alias("original_label"),
        (
            pl.col("consensus_quality")
            if "consensus_quality" in consensus_frames.columns
            else pl.lit(None, pl.Float64)
        ).alias("_cq"),
        (
            (pl.col("annotator_agreement") >= 1.0) & (pl.col("num_annotations") >= 2)
            if {"annotator_agreement", "num_annotations"} <= set(consensus_frames.columns)
            and policy.trust_unanimous
            else pl.lit(False)
        )
        .fill_null(False)
        .alias("_unanimous"),
    )
    wanted = [c for c in issues.columns if c not in _KEYS and c != "given_label"]
    df = base.join(issues.select(*_KEYS, *wanted), on=_KEYS, how="left").sort(_KEYS)
    if "near_duplicate_set" not in df.columns:
        df = df.with_columns(near_duplicate_set=pl.lit(None, pl.Int64))
    label_issue = _flag(df, "is_label_issue") & ~pl.col("_unanimous")
    relabel = (
        (
            ~pl.col("_unanimous")
            & (label_issue if policy.relabel_only_flagged else pl.lit(True))
            & (pl.col("label_quality") < policy.relabel_max_quality)
            & (pl.col("suggested_confidence") >= policy.relabel_min_confidence)
            & (pl.col("suggested_label") != pl.col("original_label"))
        ).fill_null(False)
        if {"label_quality", "suggested_confidence", "suggested_label"} <= set(df.columns)
        else pl.lit(False)
    )
    df = df.with_columns(_relabel=relabel, _issue=label_issue)

    duplicate_extra = pl.lit(False)
    if policy.dedupe_near_duplicates and "label_quality" in df.columns:
        rank = pl.col("label_quality").rank("ordinal", descending=True).over("near_duplicate_set")
        duplicate_extra = pl.col("near_duplicate_set").is_not_null() & (rank > 1)
    reasons = [
        *[(_flag(df, f"is_{name}"), name) for name in policy.drop_frame_quality],
        (_flag(df, "is_outlier") if policy.drop_outliers else pl.lit(False), "outlier"),
        (duplicate_extra, "near_duplicate"),
        (pl.col("_cq").fill_null(1.0) < policy.min_consensus_quality, "low_consensus"),
        (
            pl.col("_issue") & ~pl.col("_relabel") & pl.lit(policy.drop_unresolved_label_issues),
            "label_issue",
        ),
    ]
    drop_reasons = pl.concat_list(
        [
            pl.when(cond).then(pl.lit(name)).otherwise(pl.lit(None, pl.String))
            for cond, name in reasons
        ]
    ).list.drop_nulls()
    df = df.with_columns(_drop=drop_reasons).with_columns(
        _drop=pl.when(pl.col("_drop").list.len() == 0).then(None).otherwise(pl.col("_drop"))
    )
    return df.select(
        *_KEYS,
        pl.when(pl.col("_relabel") & pl.col("_drop").is_null())
        .then(pl.col("suggested_label"))
        .otherwise(pl.col("original_label"))
        .alias("label")
        if "suggested_label" in df.columns
        else pl.col("original_label").alias("label"),
        "original_label",
        pl.when(pl.col("_drop").is_not_null())
        .then(pl.lit("dropped"))
        .when(pl.col("_relabel"))
        .then(pl.lit("relabelled"))
        .otherwise(pl.lit("kept"))
        .alias("action"),
        pl.when(pl.col("_drop").is_not_null())
        .then(pl.col("_drop"))
        .when(pl.col("_relabel") & pl.col("_issue"))
        .then(pl.lit(["label_issue"], pl.List(pl.String)))
        .when(pl.col("_relabel"))
        .then(pl.lit(["low_label_quality"], pl.List(pl.String)))
        .otherwise(pl.lit([], pl.List(pl.String)))
        .alias("reasons"),
        pl.col("near_duplicate_set").cast(pl.Int64),
    )


def apply_reviews(result: pl.DataFrame, reviews: pl.DataFrame | None) -> pl.DataFrame:
    """A reviewer's latest word on a frame overrides consensus and curation (action ``reviewed``).

    ``result`` is :func:`curate`'s output; ``reviews`` has ``video_id``, ``frame_index``,
    ``label`` and ``imported_at``. Frames curation dropped (no split) stay dropped.
    """
    if reviews is None or reviews.is_empty():
        return result
    latest = (
        reviews.sort("imported_at").group_by(_KEYS).agg(pl.col("label").last().alias("_review"))
    )
    out = result.join(latest, on=_KEYS, how="left")
    reviewed = pl.col("_review").is_not_null() & pl.col("split").is_not_null()
    return out.with_columns(
        label=pl.when(reviewed).then(pl.col("_review")).otherwise(pl.col("label")),
        action=pl.when(reviewed).then(pl.lit("reviewed")).otherwise(pl.col("action")),
    ).drop("_review")


def quality_drops(
    curated: pl.DataFrame, frames: pl.DataFrame, issue_names: Sequence[str]
) -> pl.DataFrame:
    """Per camera: how many curated frames the frame-quality rules dropped.

    Parameters
    ----------
    curated : pl.DataFrame
        :func:`curate`'s output (``video_id``, ``frame_index``, ``action``, ``reasons``).
    frames : pl.DataFrame
        ``video_id``, ``frame_index``, ``camera_id`` (e.g. the ``frames`` table).
    issue_names : sequence of str
        The frame-quality reasons counted (``CurationPolicy.drop_frame_quality``).

    Returns
    -------
    pl.DataFrame
        One row per camera, worst share first: ``camera_id``, ``frames`` (curated frames of the
        camera), ``dropped_for_quality`` (dropped with at least one of ``issue_names`` among
        their reasons), ``share`` (0..1), and one count column per issue name.
    """
    names = list(issue_names)
    df = curated.join(frames.select(*_KEYS, "camera_id"), on=_KEYS, how="left").with_columns(
        pl.col("camera_id").fill_null("unknown"),
        _q=(pl.col("action") == "dropped")
        & pl.col("reasons").list.eval(pl.element().is_in(names)).list.any(),
    )
    return (
        df.group_by("camera_id")
        .agg(
            frames=pl.len(),
            dropped_for_quality=pl.col("_q").sum().cast(pl.Int64),
            **{
                n: (pl.col("_q") & pl.col("reasons").list.contains(n)).sum().cast(pl.Int64)
                for n in names
            },
        )
        .with_columns(share=pl.col("dropped_for_quality") / pl.col("frames"))
        .sort(["share", "camera_id"], descending=[True, False])
    )


def drift_requests_not_low_quality(
    issues: pl.DataFrame, queue: pl.DataFrame | None
) -> pl.DataFrame:
    """Frames queued for labels *because* their video drifted are new conditions, not bad
    quality: clear their dark / overexposed / blurry flags so curation keeps them."""
    if queue is None or queue.is_empty():
        return issues
    asked = pl.col("_asked").fill_null(False)
    flags = [c for c in ("is_dark", "is_overexposed", "is_blurry") if c in issues.columns]
    return (
        issues.join(queue.select(_KEYS).with_columns(_asked=pl.lit(True)), on=_KEYS, how="left")
        .with_columns([pl.when(asked).then(False).otherwise(pl.col(c)).alias(c) for c in flags])
        .drop("_asked")
    )

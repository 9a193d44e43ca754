"""Turn consensus labels + the label_issues table into the curated ``dataset``.

Two steps, both deterministic:

1. :func:`decide_actions` applies a :class:`CurationPolicy` per frame:
   keep, relabel to the model's suggestion, or drop (with the reasons).
2. :func:`assign_splits` puts whole videos (and videos linked by
   near-duplicate frames) into train / val / test, balancing class counts.
   With fewer videos than non-empty splits (one long recording) it splits
   contiguous time blocks of the videos instead and drops the frames within
   a guard gap of a frame in another split (:mod:`data_quality.splits`).

:func:`curate` runs both. Its output keeps dropped frames, for audit; the
``dataset`` Delta table is ``curated.filter(pl.col("action") != "dropped")``
with columns ``video_id, frame_index, label, split``.

The two steps live in :mod:`.actions` (the policy, per-frame actions, reviews) and
:mod:`.splits` (train / val / test); this module holds :func:`curate` and lists the public names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import polars as pl

from data_quality.contract import KEYS as _KEYS
from data_quality.curate.actions import (
    DEFAULT_POLICY,
    CurationPolicy,
    apply_reviews,
    decide_actions,
    drift_requests_not_low_quality,
    quality_drops,
)
from data_quality.curate.splits import SPLIT_GUARD, SPLITS, assign_splits, split_drift_videos

__all__ = [
    "SPLIT_GUARD",
    "apply_reviews",
    "SPLITS",
    "CurationPolicy",
    "assign_splits",
    "curate",
    "decide_actions",
    "drift_requests_not_low_quality",
    "quality_drops",
    "split_drift_videos",
]


def curate(
    consensus_frames: pl.DataFrame,
    issues: pl.DataFrame,
    *,
    policy: CurationPolicy = DEFAULT_POLICY,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    group_col: str = "video_id",
    guard_frames: int = 15,
    return_grouping: bool = False,
    strata_col: str | None = None,
    pinned: Mapping[str, str] | None = None,
) -> pl.DataFrame | tuple[pl.DataFrame, dict]:
    """Curate the dataset: decide per-frame actions, then split by video (or time block).

    Parameters
    ----------
    consensus_frames, issues, policy
        See :func:`decide_actions`.
    split_fractions, seed, group_col, guard_frames, return_grouping, strata_col, pinned
        See :func:`assign_splits`; only frames that are not dropped are split. ``strata_col``
        (e.g. ``camera_id``) is taken from ``consensus_frames``.

    Returns
    -------
    pl.DataFrame
        One row per consensus frame, sorted by key: ``video_id``,
        ``frame_index``, ``label``, ``split`` (null when dropped), ``action``,
        ``reasons`` (list of str), ``original_label``, ``split_group``. No
        ``split_group`` appears in two splits; with time blocks, frames in a
        guard gap are ``dropped`` with reason :data:`SPLIT_GUARD`.
    grouping : dict, only with ``return_grouping``
        See :func:`assign_splits`.
    """
    decided = decide_actions(consensus_frames, issues, policy=policy)
    for col in (group_col, strata_col):
        if col is not None and col not in decided.columns and col in consensus_frames.columns:
            decided = decided.join(consensus_frames.select(*_KEYS, col), on=_KEYS, how="left")
    keep = decided.filter(pl.col("action") != "dropped")
    split, grouping = cast(
        tuple[pl.DataFrame, dict],
        assign_splits(
            keep,
            split_fractions=split_fractions,
            seed=seed,
            group_col=group_col,
            guard_frames=guard_frames,
            return_grouping=True,
            strata_col=strata_col,
            pinned=pinned,
        ),
    )
    out = decided.join(split.select(*_KEYS, "split", "split_group"), on=_KEYS, how="left")
    guarded = (pl.col("action") != "dropped") & pl.col("split").is_null()
    out = out.with_columns(
        action=pl.when(guarded).then(pl.lit("dropped")).otherwise(pl.col("action")),
        label=pl.when(guarded).then(pl.col("original_label")).otherwise(pl.col("label")),
        reasons=pl.when(guarded)
        .then(pl.lit([SPLIT_GUARD], pl.List(pl.String)))
        .otherwise(pl.col("reasons")),
    )
    out = out.select(
        *_KEYS, "label", "split", "action", "reasons", "original_label", "split_group"
    ).sort(_KEYS)
    return (out, grouping) if return_grouping else out

"""The ``curated_dataset`` step end to end: consensus + issues + reviews -> dataset and log.

:func:`curate_dataset` is what the ``curated_dataset`` asset computes between reading and
writing the lake: it clears drift-requested frames of low-quality flags, runs
:func:`data_quality.curate.curate` (actions, then splits stratified by line condition),
applies reviewers' corrections, splits drift-labelled videos by time and counts the frames
the frame-quality rules dropped per camera. It gets data frames, never storage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import polars as pl

from data_quality.contract import KEYS as _KEYS
from data_quality.curate import curate
from data_quality.curate.actions import (
    CurationPolicy,
    apply_reviews,
    drift_requests_not_low_quality,
    quality_drops,
)
from data_quality.curate.splits import SPLITS, split_drift_videos

__all__ = ["CuratedDataset", "curate_dataset", "stable_splits"]

DATASET_COLUMNS = (*_KEYS, "label", "split", "action", "original_label")
"""Columns of the ``dataset`` table."""


@dataclass(frozen=True)
class CuratedDataset:
    """Result of :func:`curate_dataset`.

    Attributes
    ----------
    log : pl.DataFrame
        The ``curation_log`` table: one row per consensus frame, columns of
        :func:`data_quality.curate.curate`'s output (``split`` null when dropped).
    grouping : dict
        How frames were grouped into split units (see :func:`data_quality.curate.assign_splits`).
    quality_drops : pl.DataFrame
        Per camera, worst first (see :func:`data_quality.curate.quality_drops`).
    """

    log: pl.DataFrame
    grouping: dict
    quality_drops: pl.DataFrame

    @property
    def kept(self) -> pl.DataFrame:
        """Rows of ``log`` that have a split."""
        return self.log.filter(pl.col("split").is_not_null())

    @property
    def dataset(self) -> pl.DataFrame:
        """The ``dataset`` table: columns ``video_id``, ``frame_index``, ``label``, ``split``,
        ``action``, ``original_label``."""
        return self.kept.select(DATASET_COLUMNS)

    @property
    def worst_drop_share(self) -> float:
        """The largest per-camera share (0..1) of frames dropped for frame quality; 0 if none."""
        shares = self.quality_drops["share"].drop_nulls()
        return float(shares.to_numpy().max()) if shares.len() else 0.0

    def videos_per_split(self) -> dict[str, list[str]]:
        """``{"train": [video_id, ...], "val": [...], "test": [...]}``, ids sorted."""
        kept = self.kept
        return {
            s: sorted(kept.filter(pl.col("split") == s)["video_id"].unique().to_list())
            for s in SPLITS
        }

    def class_balance(self) -> pl.DataFrame:
        """Kept frames per split and label: columns ``split``, ``label``, ``len``."""
        return self.kept.group_by("split", "label").len().sort("split", "label")

    def actions(self) -> pl.DataFrame:
        """Frames per action (kept, relabeled, reviewed, dropped): columns ``action``, ``len``."""
        return self.log.group_by("action").len().sort("action")


def curate_dataset(
    consensus: pl.DataFrame,
    issues: pl.DataFrame,
    *,
    frames: pl.DataFrame,
    conditions: Sequence[str] | np.ndarray,
    queue: pl.DataFrame | None,
    reviews: pl.DataFrame | None,
    policy: CurationPolicy,
    seed: int = 0,
    guard_frames: int = 15,
    split_by_condition: bool = True,
    pinned: Mapping[str, str] | None = None,
) -> CuratedDataset:
    """Curate and split the dataset; see the module docstring for the steps.

    Parameters
    ----------
    consensus : pl.DataFrame
        The ``label_consensus`` table joined with usable frames: ``video_id``, ``frame_index``,
        ``camera_id``, ``consensus_label``, ``consensus_quality``, ...
    issues : pl.DataFrame
        The ``label_issues`` table (see :func:`data_quality.curate.decide_actions`).
    frames : pl.DataFrame
        Usable frames: ``video_id``, ``frame_index``, ``camera_id``.
    conditions : sequence of str or np.ndarray, shape (N,)
        The line condition of each row of ``consensus`` (same order); the split strata.
    queue : pl.DataFrame or None
        The ``drift_queue`` table (``video_id``, ``frame_index``); None if none yet.
    reviews : pl.DataFrame or None
        The ``label_reviews`` table (``video_id``, ``frame_index``, ``label``,
        ``imported_at``); None if none yet.
    policy : CurationPolicy
        What to keep, relabel and drop.
    seed : int, optional
        Seed of the split.
    guard_frames : int, optional
        With time-block splits: frames this close to a frame of another split are dropped.
    split_by_condition : bool, optional
        Split each line condition on its own (else all frames together).
    pinned : mapping of str to str, optional
        ``{video_id: split}`` of videos split before, which keep their split
        (:func:`data_quality.curate.assign_splits`); :func:`stable_splits` makes it from the
        previous dataset.

    Returns
    -------
    CuratedDataset
    """
    consensus = consensus.with_columns(condition=pl.Series(conditions, dtype=pl.String))
    curated, grouping = cast(
        tuple[pl.DataFrame, dict],
        curate(
            consensus,
            drift_requests_not_low_quality(issues, queue),
            policy=policy,
            seed=seed,
            guard_frames=guard_frames,
            return_grouping=True,
            strata_col="condition" if split_by_condition else None,
            pinned=pinned,
        ),
    )
    log = split_drift_videos(apply_reviews(curated, reviews), queue)
    return CuratedDataset(
        log=log,
        grouping=grouping,
        quality_drops=quality_drops(log, frames, policy.drop_frame_quality),
    )


def stable_splits(previous: pl.DataFrame | None) -> dict[str, str]:
    """``{video_id: split}`` of the videos whose kept frames all sit in one split of a previous
    ``dataset`` table (a video split by time, e.g. a drift video, is not pinned)."""
    if previous is None or previous.is_empty():
        return {}
    per = (
        previous.filter(pl.col("split").is_not_null())
        .group_by("video_id")
        .agg(pl.col("split").unique())
        .filter(pl.col("split").list.len() == 1)
    )
    return dict(zip(per["video_id"].to_list(), per["split"].list.first().to_list(), strict=True))

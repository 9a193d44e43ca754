"""Curation splits: whole videos (or time blocks) into train / val / test, classes balanced.

:func:`assign_splits` puts whole videos (and videos linked by near-duplicate frames) into
train / val / test, balancing class counts. With fewer videos than non-empty splits (one long
recording) it splits contiguous time blocks of the videos instead and drops the frames within
a guard gap of a frame in another split (:mod:`data_quality.splits`).
:func:`split_drift_videos` splits the videos labelled because they drifted by time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import polars as pl

from data_quality.contract import KEYS as _KEYS
from data_quality.splits import group_ids, near

__all__ = ["SPLITS", "SPLIT_GUARD", "assign_splits", "split_drift_videos"]

SPLITS = ("train", "val", "test")
SPLIT_GUARD = "split_guard"
"""Drop reason of a frame within the guard gap of a frame in another split (time blocks)."""


def _units(frames: pl.DataFrame, group_col: str) -> dict[str, str]:
    """Map each group to its split unit: groups sharing a near-duplicate set are merged."""
    parent = {g: g for g in sorted(frames[group_col].unique().to_list())}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    if "near_duplicate_set" in frames.columns:
        linked = (
            frames.filter(pl.col("near_duplicate_set").is_not_null())
            .group_by("near_duplicate_set")
            .agg(pl.col(group_col).unique().sort())
        )
        for groups in linked[group_col].to_list():
            for g in groups[1:]:
                a, b = find(groups[0]), find(g)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {g: find(g) for g in parent}


def assign_splits(
    frames: pl.DataFrame,
    *,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    group_col: str = "video_id",
    guard_frames: int = 15,
    return_grouping: bool = False,
    strata_col: str | None = None,
    pinned: Mapping[str, str] | None = None,
) -> pl.DataFrame | tuple[pl.DataFrame, dict]:
    """Assign whole groups to train / val / test, balancing per-class counts.

    With ``strata_col`` (e.g. ``camera_id``), each stratum is split on its own, so every
    camera has frames in every split (the promotion gate and the per-camera metrics then see
    every camera; a whole-video split of 3 cameras x 2 videos would test on one camera only).
    The grouping is decided per stratum: by video when the camera has enough videos, else by
    time blocks of its videos (below).

    With fewer ``group_col`` values (videos) than splits of positive fraction and a
    ``frame_index`` column, the groups are contiguous time blocks of the videos instead
    (:func:`data_quality.splits.group_ids`, ``max(splits, ceil(1 / smallest fraction))``
    blocks in all), and a frame within ``guard_frames`` of a frame of another split in the
    same video gets split null (test frames are kept over val and train, val over train).

    Groups (videos) linked by a ``near_duplicate_set`` form one unit, unless
    that would leave fewer units than non-empty splits. With at least as
    many units as splits of positive fraction, each such split first gets
    one unit (smallest units, smallest-fraction split first); the remaining
    units go, largest first, to the split that minimises the squared gap
    between achieved and target counts (per class and in total). Ties are
    broken by a ``seed``-ed permutation, so the result is deterministic.

    Parameters
    ----------
    frames : pl.DataFrame
        ``group_col``, ``label`` and optionally ``near_duplicate_set``.
    split_fractions : (3,) floats summing to 1
        Target fractions for train, val, test (zeros allowed).
    seed : int
    group_col : str
    guard_frames : int
        Time blocks only: frame-index distance within which two frames of one video may not
        sit in different splits.
    return_grouping : bool
        Also return ``{"grouping": "video" | "time_block", "blocks": n, "guard_frames": g,
        "guard_dropped": frames given no split}``.
    pinned : mapping of str to str, optional
        Split of groups assigned before (``{video_id: "train" | "val" | "test"}``, e.g. the
        previous dataset's): they keep it, and only the other groups are balanced around
        them, so a new video never moves a past one between splits (a model warm-started
        from the champion never meets its own training frames in val or test). A unit of
        groups pinned to several splits takes the later one (test over val over train).
        Time blocks (``"<video>@<block>"``) are never pinned.

    Returns
    -------
    pl.DataFrame
        ``frames`` with a ``split`` column (``"train"``, ``"val"``, ``"test"``, or null for a
        frame in a guard gap) and ``split_group`` (the video, or ``"<video>@<block>"``).
    """
    fractions = np.asarray(split_fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError("split_fractions must be three non-negative numbers summing to 1")
    if strata_col is not None and strata_col in frames.columns and frames.height:
        return _split_strata(
            frames, strata_col, return_grouping,
            split_fractions=split_fractions, seed=seed, group_col=group_col,
            guard_frames=guard_frames, pinned=pinned,
        )  # fmt: skip
    active = [s for s in range(3) if fractions[s] > 0]
    info = {"grouping": "video", "blocks": 0, "guard_frames": 0, "guard_dropped": 0}
    if frames.height == 0:
        out = frames.with_columns(
            split=pl.lit(None, pl.String), split_group=pl.lit(None, pl.String)
        )
        return (out, info) if return_grouping else out
    videos = frames[group_col].to_numpy()
    if "frame_index" in frames.columns:
        blocks = max(len(active), int(np.ceil(1 / fractions[active].min() - 1e-9)))
        groups, grouping = group_ids(
            videos,
            frames["frame_index"].to_numpy(),
            min_groups=min(len(active), frames.height),
            guard=guard_frames,
            n_blocks=blocks,
        )
        info.update(grouping)
    else:
        groups = videos.astype(str).astype(object)
        info["blocks"] = len(set(groups))
    frames = frames.with_columns(split_group=pl.Series(groups, dtype=pl.String))
    out = _assign_units(frames, fractions, active, seed, "split_group", pinned or {})
    if info["grouping"] == "time_block":
        split = out["split"].to_numpy().astype(object)
        frame_index = out["frame_index"].to_numpy()
        dropped = np.zeros(len(split), bool)
        for higher, lower in (("test", ("val", "train")), ("val", ("train",))):
            ref = (split == higher) & ~dropped
            dropped |= near(videos, frame_index, ref, guard=guard_frames) & np.isin(split, lower)
        split[dropped] = None
        out = out.with_columns(split=pl.Series(split, dtype=pl.String))
        info["guard_dropped"] = int(dropped.sum())
    return (out, info) if return_grouping else out


def _split_strata(
    frames: pl.DataFrame, strata_col: str, return_grouping: bool, **options: Any
) -> pl.DataFrame | tuple[pl.DataFrame, dict]:
    """:func:`assign_splits` per stratum; the grouping record says how each one was split."""
    parts, per = [], {}
    for (name,), part in frames.group_by(strata_col, maintain_order=True):
        out, info = cast(
            tuple[pl.DataFrame, dict], assign_splits(part, return_grouping=True, **options)
        )
        parts.append(out)
        per[str(name)] = info
    kinds = {i["grouping"] for i in per.values()}
    info = {
        "grouping": kinds.pop() if len(kinds) == 1 else "mixed",
        "blocks": sum(i["blocks"] for i in per.values()),
        "guard_frames": max(i["guard_frames"] for i in per.values()),
        "guard_dropped": sum(i["guard_dropped"] for i in per.values()),
        "strata": strata_col,
        "per_stratum": per,
    }
    out = pl.concat(parts, how="vertical").sort(_KEYS)
    return (out, info) if return_grouping else out


def _assign_units(
    frames: pl.DataFrame,
    fractions: np.ndarray,
    active: list[int],
    seed: int,
    group_col: str,
    pinned: Mapping[str, str],
) -> pl.DataFrame:
    """The greedy, class-balancing assignment of :func:`assign_splits` over ``group_col``."""
    unit_of = _units(frames, group_col)
    if len(set(unit_of.values())) < min(len(active), len(unit_of)):
        unit_of = {g: g for g in unit_of}
    df = frames.with_columns(
        _unit=pl.col(group_col).replace_strict(unit_of, return_dtype=pl.String)
    )
    classes = sorted(df["label"].unique().to_list())
    counts = (
        df.group_by("_unit", "label")
        .len()
        .pivot(on="label", index="_unit", values="len")
        .fill_null(0)
        .sort("_unit")
    )
    names = counts["_unit"].to_list()
    mat = counts.select([c for c in classes if c in counts.columns]).to_numpy().astype(float)
    totals = mat.sum(axis=0)
    target = fractions[:, None] * np.c_[totals[None, :], totals.sum()]
    tiebreak = np.random.default_rng(seed).permutation(len(names))
    order = sorted(range(len(names)), key=lambda u: (-mat[u].sum(), tiebreak[u]))
    got = np.zeros((3, mat.shape[1] + 1))
    split_of: dict[str, int] = {}
    for g, unit in unit_of.items():  # pinned units first: the later split wins
        if pinned.get(g) in SPLITS:
            split_of[unit] = max(split_of.get(unit, 0), SPLITS.index(pinned[g]))
    for u, name in enumerate(names):
        if name in split_of:
            got[split_of[name]] += np.r_[mat[u], mat[u].sum()]
    empty = [s for s in active if got[s, -1] == 0]
    free = [u for u in order if names[u] not in split_of]
    if len(free) >= len(empty):
        seeds = free[::-1][: len(empty)]  # smallest units
        for u, s in zip(seeds, sorted(empty, key=lambda s: (fractions[s], s)), strict=True):
            split_of[names[u]] = s
            got[s] += np.r_[mat[u], mat[u].sum()]
    for u in order:
        if names[u] in split_of:
            continue
        row = np.r_[mat[u], mat[u].sum()]
        cost = [
            ((got[s] + row - target[s]) ** 2).sum() - ((got[s] - target[s]) ** 2).sum()
            for s in active
        ]
        best = active[int(np.argmin(cost))]
        split_of[names[u]] = best
        got[best] += row
    mapping = {n: SPLITS[s] for n, s in split_of.items()}
    return df.with_columns(
        split=pl.col("_unit").replace_strict(mapping, return_dtype=pl.String)
    ).drop("_unit")


def split_drift_videos(
    result: pl.DataFrame, queue: pl.DataFrame | None, *, guard: int = 8
) -> pl.DataFrame:
    """Frames labelled because their video drifted show conditions the model has never seen:
    a whole-video split would put them all in test or all in train. Split each such video by
    time instead (first 70% train, next 15% val, last 15% test of its kept frames), and drop
    frames within ``guard`` frames of another split (no near-duplicates across splits)."""
    if queue is None or queue.is_empty():
        return result
    videos = queue["video_id"].unique().implode()
    mine = (pl.col("video_id").is_in(videos)) & pl.col("split").is_not_null()
    part = result.filter(mine).sort(_KEYS)
    if part.is_empty():
        return result
    rank = part.with_columns(
        _r=(pl.col("frame_index").rank("ordinal").over("video_id") - 1) / pl.len().over("video_id")
    )
    part = rank.with_columns(
        split=pl.when(pl.col("_r") < 0.7)
        .then(pl.lit("train"))
        .when(pl.col("_r") < 0.85)
        .then(pl.lit("val"))
        .otherwise(pl.lit("test"))
    ).drop("_r")
    vids, idx = part["video_id"].to_numpy(), part["frame_index"].to_numpy()
    split = part["split"].to_numpy()
    drop = near(vids, idx, split == "test", guard=guard) & (split != "test")
    drop |= near(vids, idx, split == "val", guard=guard) & (split == "train")
    part = part.with_columns(
        split=pl.when(pl.Series(drop)).then(pl.lit(None, pl.String)).otherwise(pl.col("split"))
    )
    return pl.concat([result.filter(~mine), part.select(result.columns)], how="vertical")

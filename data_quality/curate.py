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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import polars as pl

from data_quality.splits import group_ids, near

__all__ = [
    "SPLIT_GUARD",
    "apply_reviews",
    "SPLITS",
    "CurationPolicy",
    "assign_splits",
    "curate",
    "decide_actions",
    "drift_requests_not_low_quality",
    "split_drift_videos",
]

SPLITS = ("train", "val", "test")
_KEYS = ["video_id", "frame_index"]
SPLIT_GUARD = "split_guard"
"""Drop reason of a frame within the guard gap of a frame in another split (time blocks)."""


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
            guard_frames=guard_frames,
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
    out = _assign_units(frames, fractions, active, seed, "split_group")
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
    frames: pl.DataFrame, fractions: np.ndarray, active: list[int], seed: int, group_col: str
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
    if len(names) >= len(active):
        seeds = order[::-1][: len(active)]  # smallest units
        for u, s in zip(seeds, sorted(active, key=lambda s: (fractions[s], s)), strict=True):
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


def curate(
    consensus_frames: pl.DataFrame,
    issues: pl.DataFrame,
    *,
    policy: CurationPolicy = CurationPolicy(),
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    group_col: str = "video_id",
    guard_frames: int = 15,
    return_grouping: bool = False,
    strata_col: str | None = None,
) -> pl.DataFrame | tuple[pl.DataFrame, dict]:
    """Curate the dataset: decide per-frame actions, then split by video (or time block).

    Parameters
    ----------
    consensus_frames, issues, policy
        See :func:`decide_actions`.
    split_fractions, seed, group_col, guard_frames, return_grouping, strata_col
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

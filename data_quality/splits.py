"""Leakage-free grouping of frames for cross-validation folds and train/val/test splits.

Frames of one video are near-duplicates of their neighbours, so a video is the natural unit
that must never sit on both sides of a split. With enough videos, :func:`group_ids` groups by
video. With too few (one long recording per line or shift is the common case) it cuts each
video into contiguous *time blocks* instead, and :func:`near` finds the frames that lie within
a guard gap of a frame on the other side, which the caller drops (splits) or leaves out of
training (folds). The mode is returned so it can be recorded::

    groups, info = group_ids(videos, frames, min_groups=3, guard=15)
    info == {"grouping": "time_block", "blocks": 7, "guard_frames": 15}

No Dagster, no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["group_ids", "near"]


def _allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` blocks over videos in proportion to ``sizes`` (>= 1 each, <= size)."""
    share = total * sizes / sizes.sum()
    alloc = np.maximum(1, np.floor(share).astype(np.int64))
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    for i in order:  # largest remainders first
        if alloc.sum() >= total:
            break
        alloc[i] += 1
    return np.minimum(alloc, sizes)


def group_ids(
    video_ids: np.ndarray,
    frame_indices: np.ndarray,
    *,
    min_groups: int,
    guard: int,
    n_blocks: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A leakage-free group per frame: its video, or a contiguous time block of its video.

    Parameters
    ----------
    video_ids : np.ndarray of shape (N,)
        Video of each frame (any hashable values, e.g. str).
    frame_indices : np.ndarray of shape (N,), int
        Frame number of each frame within its video (any order; need not be contiguous).
    min_groups : int
        Groups the caller needs (folds, or splits with a positive fraction). With at least
        this many videos the grouping is by video.
    guard : int
        Frames (in frame-index units) on either side of a time-block boundary that the caller
        must not put on the other side; recorded in the returned ``info`` and meant for
        :func:`near`. Ignored (recorded as 0) when grouping by video.
    n_blocks : int, optional
        Time blocks wanted in all (default ``min_groups``); spread over the videos in
        proportion to their frame counts, capped by the number of frames.

    Returns
    -------
    groups : np.ndarray of shape (N,), object (str)
        ``str(video_id)`` when grouping by video, else ``"<video_id>@<block>"`` where blocks
        number a video's frames in time order, each block a run of consecutive frames (by
        ``frame_indices``) of about equal size.
    info : dict
        ``{"grouping": "video" | "time_block", "blocks": number of distinct groups,
        "guard_frames": guard or 0}``.

    Raises
    ------
    ValueError
        Fewer frames than ``min_groups``, or a negative ``guard``.
    """
    videos = np.asarray(video_ids)
    frames = np.asarray(frame_indices, dtype=np.int64)
    if videos.shape != frames.shape or videos.ndim != 1:
        raise ValueError("video_ids and frame_indices must be 1-D arrays of the same length")
    if guard < 0:
        raise ValueError(f"guard must be >= 0, got {guard}")
    names, inverse, sizes = np.unique(videos.astype(str), return_inverse=True, return_counts=True)
    if len(names) >= min_groups:
        groups = names[inverse].astype(object)
        return groups, {"grouping": "video", "blocks": len(names), "guard_frames": 0}
    wanted = max(min_groups, n_blocks or min_groups)
    if len(frames) < min_groups:
        raise ValueError(
            f"{len(frames)} frame(s) cannot make {min_groups} groups: label more frames"
        )
    alloc = _allocate(sizes, min(wanted, len(frames)))
    groups = np.empty(len(frames), dtype=object)
    for v, name in enumerate(names):
        rows = np.flatnonzero(inverse == v)
        rows = rows[np.argsort(frames[rows], kind="stable")]
        for b, chunk in enumerate(np.array_split(rows, alloc[v])):
            groups[chunk] = f"{name}@{b}"
    return groups, {
        "grouping": "time_block",
        "blocks": int(alloc.sum()),
        "guard_frames": int(guard),
    }


def near(
    video_ids: np.ndarray, frame_indices: np.ndarray, reference: np.ndarray, *, guard: int
) -> np.ndarray:
    """Which frames lie within ``guard`` frames of a reference frame of the same video.

    Parameters
    ----------
    video_ids : np.ndarray of shape (N,)
    frame_indices : np.ndarray of shape (N,), int
    reference : np.ndarray of shape (N,), bool
        The frames on the other side (e.g. a fold's held-out frames, or the test split).
    guard : int
        Maximum distance ``|frame_a - frame_b|`` that counts as near (0: same frame only).

    Returns
    -------
    np.ndarray of shape (N,), bool
        True for a frame that is not itself a reference frame and has a reference frame of its
        video at most ``guard`` frames away. Callers drop these frames (a split) or leave them
        out of training (a fold) so near-duplicates never sit on both sides.
    """
    videos = np.asarray(video_ids).astype(str)
    frames = np.asarray(frame_indices, dtype=np.int64)
    ref = np.asarray(reference, dtype=bool)
    out = np.zeros(len(frames), dtype=bool)
    for v in np.unique(videos[ref]):
        mine = videos == v
        anchors = np.sort(frames[mine & ref])
        cand = np.flatnonzero(mine & ~ref)
        pos = np.searchsorted(anchors, frames[cand])
        left = np.abs(frames[cand] - anchors[np.clip(pos - 1, 0, len(anchors) - 1)])
        right = np.abs(anchors[np.clip(pos, 0, len(anchors) - 1)] - frames[cand])
        out[cand] = np.minimum(left, right) <= guard
    return out

"""Leakage-free grouping of frames for cross-validation folds and train/val/test splits.

Frames of one video are near-duplicates of their neighbours, so a video is the natural unit
that must never sit on both sides of a split. With enough videos, :func:`group_ids` groups by
video. With too few (one long recording per line or shift is the common case) it cuts each
video into contiguous *time blocks* instead, and :func:`near` finds the frames that lie within
a guard gap of a frame on the other side, which the caller drops (splits) or leaves out of
training (folds). The mode is returned so it can be recorded::

    groups, info = group_ids(videos, frames, min_groups=3, guard=15)
    info == {"grouping": "time_block", "blocks": 7, "guard_frames": 15}

Whether the guard protects anything is measurable: :func:`guard_near_share` says how often
labelled frames within the guard of each other are more alike than either is to any frame
outside it (near-duplicates: an item filmed in consecutive frames). Where that never happens
(independent snapshots that merely sit in a video) the caller may fold frame by frame instead
of holding out whole videos or time blocks, which otherwise hide whole stretches of conditions
from every fold model.

No Dagster, no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["group_ids", "guard_near_share", "near", "shift_invariant_features"]

MIN_PAIRS = 20
"""Fewer frame pairs within the guard than this: too little evidence, :func:`guard_near_share` gives None."""
MIN_CANDIDATES = 100
"""Fewer frames outside a frame's guard than this: chance alone (1 / (m + 1)) blurs the share."""


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


def shift_invariant_features(
    images: np.ndarray, video_ids: np.ndarray, *, side: int = 32
) -> np.ndarray:
    """Per-frame vectors that stay put when an item moves: |FFT| of the frame minus its video's median.

    Parameters
    ----------
    images : np.ndarray of shape (N, S, S, 3), uint8
        Model images (RGB).
    video_ids : np.ndarray of shape (N,)
        Video of each frame; the per-video median frame (the static background of a fixed
        camera) is subtracted first, so what remains is what moves.
    side : int
        Frames are turned gray and resized to ``side`` x ``side`` first.

    Returns
    -------
    np.ndarray of shape (N, side * (side // 2 + 1)), float32
        ``log1p`` of the 2-D Fourier magnitude: a translated item gives (nearly) the same vector,
        unlike raw pixels, where an item shifted by a few pixels is farther from itself than from
        another item of the same look at the same place.
    """
    import cv2

    gray = np.empty((len(images), side, side), np.float32)
    for i, im in enumerate(images):
        g = cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY)
        gray[i] = cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA)
    videos = np.asarray(video_ids).astype(str)
    for v in np.unique(videos):
        mine = videos == v
        gray[mine] -= np.median(gray[mine], axis=0)
    return np.log1p(np.abs(np.fft.rfft2(gray))).reshape(len(images), -1).astype(np.float32)


def guard_near_share(
    features: np.ndarray,
    video_ids: np.ndarray,
    frame_indices: np.ndarray,
    *,
    guard: int,
    max_queries: int = 1500,
    max_candidates: int = 4000,
    seed: int = 0,
) -> float | None:
    """How often frames within ``guard`` of each other are near-duplicates; None if unknowable.

    A pair of frames of one video at most ``guard`` frames apart counts as near-duplicate when
    they are closer to each other (Euclidean, in ``features``) than the first is to every frame
    outside its guard window (other videos, or more than ``guard`` frames away). For unrelated
    frames that happens by chance with probability about ``1 / (m + 1)`` (m frames outside);
    for consecutive frames of one item it is the rule.

    Parameters
    ----------
    features : np.ndarray of shape (N, D), float
        E.g. :func:`shift_invariant_features` of the model images.
    video_ids, frame_indices : np.ndarray of shape (N,)
        Video and frame number of each frame.
    guard : int
        The window, in frames (>= 1).
    max_queries, max_candidates : int
        Frames drawn (seeded) as first members of pairs, and as the frames outside the window
        their nearest one is searched among (fewer candidates overstate the share: safe side).
    seed : int

    Returns
    -------
    float or None
        The largest share of near-duplicate pairs at any one lag (lags with at least
        :data:`MIN_PAIRS` pairs) and over all lags together; None when fewer than
        :data:`MIN_PAIRS` pairs lie within the guard or fewer than :data:`MIN_CANDIDATES`
        frames outside it.
    """
    x = np.asarray(features, dtype=np.float32)
    videos = np.asarray(video_ids).astype(str)
    frames = np.asarray(frame_indices, dtype=np.int64)
    n = len(frames)
    if guard < 1 or n < 2:
        return None
    order = np.lexsort((frames, videos))
    x, videos, frames = x[order], videos[order], frames[order]
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, min(max_queries, n), replace=False))
    cand = rng.choice(n, min(max_candidates, n), replace=False)
    sq = (x.astype(np.float64) ** 2).sum(axis=1)
    dist = sq[queries, None] + sq[None, cand] - 2.0 * (x[queries] @ x[cand].T)
    inside = (videos[queries, None] == videos[None, cand]) & (
        np.abs(frames[queries, None] - frames[None, cand]) <= guard
    )
    if (~inside).sum(axis=1).min() < MIN_CANDIDATES:
        return None
    far = np.where(inside, np.inf, dist).min(axis=1)
    lags, close = [], []
    for offset in range(1, guard + 1):  # frames are distinct, so a partner is <= guard rows on
        partner = queries + offset
        ok = partner < n
        q, p = queries[ok], partner[ok]
        ok = (videos[q] == videos[p]) & (frames[p] - frames[q] <= guard)
        q, p = q[ok], p[ok]
        d = sq[q] + sq[p] - 2.0 * np.einsum("ij,ij->i", x[q], x[p])
        lags.append(frames[p] - frames[q])
        close.append(d < far[np.searchsorted(queries, q)])
    lag, near_pair = np.concatenate(lags), np.concatenate(close)
    if len(lag) < MIN_PAIRS:
        return None
    shares = [near_pair.mean()]
    for value in np.unique(lag):
        at = lag == value
        if at.sum() >= MIN_PAIRS:
            shares.append(near_pair[at].mean())
    return float(max(shares))

"""Whether a sampled frame shows an item: its foreground against the video's background.

Ingestion (:func:`data_quality.ingest.sample_video`) keeps a small thumbnail of every sampled
frame (:func:`thumbnail`, taken on the JPEG workers) and scores them once the decode is done
(:func:`presence_scores`): the background is the per-pixel median of the video's thumbnails
(items pass, the belt stays), a pixel is foreground where any channel differs from it by more
than :data:`DIFF_LEVEL`, and the frame's score is the area of the largest foreground blob whose
centre lies in the central window (:data:`WINDOW`, where an item is inspected and labelled)
against :data:`MIN_ITEM_AREA`. The ``frames`` table stores the score (``item_presence``) and
the verdict (``item_present``); the labelling queues skip frames without an item.

Measured on the drift scenario's videos (``benchmarks/presence.py``, docs/drift.md "Item
presence"): precision 0.957, recall 1.000 against the demo renderer's ground truth; sampling
takes about 3 % longer (thumbnails ~0.06-0.09 ms a frame, scores ~5 ms a video of 57 frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "DIFF_LEVEL",
    "MAX_PRESENT_SHARE",
    "MIN_FRAMES",
    "MIN_ITEM_AREA",
    "PRESENT",
    "THUMB_WIDTH",
    "WINDOW",
    "item_present",
    "presence_scores",
    "thumbnail",
]

THUMB_WIDTH = 80
"""Thumbnails are this many pixels wide (height in proportion): presence needs blobs, not detail."""
DIFF_LEVEL = 25
"""A thumbnail pixel is foreground when a channel differs from the background by more (0..255)."""
MIN_ITEM_AREA = 0.01
"""An item's blob covers at least this share of the frame (demo items: ~0.045; specks, belt
texture and flicker leave none; an arm reaching in from the edge has its centre outside)."""
WINDOW = (0.20, 0.25)
"""Half-size (x, y) of the central window, as fractions of (width, height): a blob counts when
its centre is inside (the demo labels an item while its centre is in the same window)."""
PRESENT = 0.5
"""``item_present`` is ``item_presence >= PRESENT``: a blob of :data:`MIN_ITEM_AREA` or more."""
MIN_FRAMES = 5
"""Fewer thumbnails give no background: every score is unknown (NaN, stored as null)."""
MAX_PRESENT_SHARE = 0.6
"""More of the background's frames scored present than this: the median is not the empty belt
(most frames show an item in the same place: a crowded belt, a capture of inspected items), so
every score is unknown rather than wrong (an empty frame then differs from it where the item
was). The demo's videos: 0.2-0.3."""
_MAX_BACKGROUND = 21  # thumbnails the median is taken over (an even stride beyond): ~2.7 ms


def thumbnail(bgr: np.ndarray, *, width: int = THUMB_WIDTH) -> np.ndarray:
    """``bgr`` (H, W, 3) uint8 BGR, shrunk to ``width`` x ``round(H * width / W)`` (at least 1);
    a frame no wider than ``width`` is kept as is.

    A wider frame is first sampled down (``INTER_NEAREST``) to ``4 * width``, then halved
    twice with ``INTER_LINEAR`` (at exactly half size it averages 2 x 2 pixels: together a 4 x 4
    box filter over the samples, which evens out sensor noise). Measured on a shared 2-core
    machine: ~0.04-0.08 ms for 320 x 240 and ~0.1-0.2 ms for 1920 x 1080, against ~0.2-0.5 and
    ~5-8 ms for the frame's JPEG (``INTER_AREA`` took ~0.15 and ~1.5-3.8 ms).
    """
    import cv2

    h, w = bgr.shape[:2]
    if w <= width:
        return np.ascontiguousarray(bgr)
    if w > 4 * width:
        w, h = 4 * width, max(1, round(h * 4 * width / w))
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_NEAREST)
    while w >= 4 * width:
        w, h = w // 2, max(1, h // 2)
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    if w == width:
        return bgr
    return cv2.resize(bgr, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_LINEAR)


def presence_scores(
    thumbs: Sequence[np.ndarray],
    *,
    background_from: Sequence[int] | None = None,
    diff_level: float = DIFF_LEVEL,
    min_item_area: float = MIN_ITEM_AREA,
    window: tuple[float, float] = WINDOW,
) -> np.ndarray:
    """Each thumbnail's item presence score: ``min(1, area / (2 * min_item_area))``.

    Parameters
    ----------
    thumbs : sequence of np.ndarray
        (h, w, 3) uint8 BGR thumbnails of one video's sampled frames, all the same shape
        (:func:`thumbnail`).
    background_from : sequence of int, optional
        Indices of the thumbnails the background median is taken over (e.g. the frames on the
        sampling grid, not those kept because a label names them: they cluster on items); all
        when None or when fewer than :data:`MIN_FRAMES` are given.
    diff_level, min_item_area, window : float, float, tuple of float
        See :data:`DIFF_LEVEL`, :data:`MIN_ITEM_AREA` and :data:`WINDOW`.

    Returns
    -------
    np.ndarray
        float64 (N,) in [0, 1]: ``area`` is the share of the thumbnail covered by the largest
        foreground blob centred in the window (0 when none); >= :data:`PRESENT` means an item.
        All NaN (unknown) when there are fewer than :data:`MIN_FRAMES` thumbnails, their
        shapes differ, or more than :data:`MAX_PRESENT_SHARE` of the background's frames score
        present.
    """
    import cv2

    if len(thumbs) < MIN_FRAMES or len({t.shape for t in thumbs}) != 1:
        return np.full(len(thumbs), np.nan)
    pool = list(background_from) if background_from is not None else []
    if len(pool) < MIN_FRAMES:
        pool = list(range(len(thumbs)))
    stack = np.stack(thumbs)  # (N, h, w, 3)
    background = _median(stack[np.asarray(pool)])
    n, h, w = stack.shape[:3]
    # one foreground mask per frame, stacked into one tall image with blank rows between the
    # frames (an opening and 8-connectivity reach one row each way): one opening and one
    # labelling for the whole video instead of one per frame
    gap = 3
    tall = np.zeros((n, h + gap, w), np.uint8)
    rows = stack.reshape(n * h, w * 3)  # OpenCV's kernels: ~15x numpy's here
    diff = cv2.absdiff(rows, np.tile(background.reshape(h, w * 3), (n, 1))).reshape(n * h, w, 3)
    blue, green, red = cv2.split(diff)
    tall[:, :h] = (cv2.max(cv2.max(blue, green), red) > diff_level).reshape(n, h, w)
    tall = cv2.morphologyEx(
        tall.reshape(n * (h + gap), w), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
    )
    count, _, stats, centres = cv2.connectedComponentsWithStats(tall)
    frame = stats[1:, cv2.CC_STAT_TOP] // (h + gap)
    cx, cy = centres[1:, 0], centres[1:, 1] - frame * (h + gap)
    centred = (np.abs(cx - w / 2) <= window[0] * w) & (np.abs(cy - h / 2) <= window[1] * h)
    area = np.zeros(n)
    np.maximum.at(area, frame[centred], stats[1:, cv2.CC_STAT_AREA][centred] / float(h * w))
    scores = np.minimum(1.0, area / (2.0 * min_item_area))
    if np.mean(scores[np.asarray(pool)] >= PRESENT) > MAX_PRESENT_SHARE:
        return np.full(n, np.nan)
    return scores


def _median(stack: np.ndarray) -> np.ndarray:
    """Per-pixel median (the lower of the two middle values) of at most :data:`_MAX_BACKGROUND`
    evenly strided images of ``stack`` (N, h, w, 3) uint8."""
    if len(stack) > _MAX_BACKGROUND:
        stack = stack[np.linspace(0, len(stack) - 1, _MAX_BACKGROUND).round().astype(int)]
    k = (len(stack) - 1) // 2
    return np.partition(stack, k, axis=0)[k]


def item_present(scores: np.ndarray) -> list[bool | None]:
    """``score >= PRESENT`` per score; None where the score is unknown (NaN)."""
    return [None if np.isnan(s) else bool(s >= PRESENT) for s in np.asarray(scores, float)]

"""Region of interest: find the inspected item in a conveyor frame and crop around it.

Defects are a few pixels wide; a model that sees the whole 320x240 frame squashed to 96 px
cannot see them. Every consumer (embeddings, training, evaluation, the edge runner) crops
the same way, so the crop is part of the model's preprocessing contract.
"""

from __future__ import annotations

import numpy as np

__all__ = ["crop_item", "load_item_crops", "locate_item"]


def locate_item(bgr: np.ndarray) -> tuple[float, float]:
    """Centre (x, y) of the inspected item: the largest bright, unsaturated, compact blob.

    Parameters
    ----------
    bgr
        Shape (H, W, 3), uint8, BGR.

    Rails (long bands touching both sides), gloves (saturated) and specks are ignored; with no
    candidate the frame centre is returned.
    """
    import cv2

    h, w = bgr.shape[:2]
    hsv = cv2.cvtColor(cv2.GaussianBlur(bgr, (7, 7), 0), cv2.COLOR_BGR2HSV)
    value, sat = hsv[..., 2], hsv[..., 1]
    thresh = max(float(np.percentile(value, 75)), 60.0)
    raw = ((value > thresh) & (sat < 90)).astype(np.uint8)
    opened = cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    n, _, stats, centroids = cv2.connectedComponentsWithStats(closed)
    best, best_area = None, 0.002 * h * w
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if bw > 0.6 * w or bh > 0.8 * h or max(bw, bh) > 3.0 * max(1, min(bw, bh)):
            continue  # rails, belt edges, glare streaks
        if area > best_area:
            best, best_area = i, area
    if best is None:
        return w / 2.0, h / 2.0
    return float(centroids[best][0]), float(centroids[best][1])


def crop_item(bgr: np.ndarray, *, side: int = 112) -> np.ndarray:
    """A ``side`` x ``side`` crop centred on :func:`locate_item` (shifted to stay inside the frame)."""
    h, w = bgr.shape[:2]
    side = min(side, h, w)
    cx, cy = locate_item(bgr)
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return bgr[y0 : y0 + side, x0 : x0 + side]


def load_item_crops(paths: list, size: int, *, side: int = 112) -> np.ndarray:
    """Decode frames, crop the item, resize: RGB uint8 of shape (N, size, size, 3).

    Parameters
    ----------
    paths
        Local image files (JPEG/PNG).
    size
        Output side in pixels (the model's ``image_size``).
    side
        Crop side in source pixels before resizing.
    """
    import cv2

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode image {path}")
        crop = crop_item(bgr, side=side)
        out[i] = cv2.cvtColor(
            cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
        )
    return out

"""Bootstrap frame embeddings that need no trained model: shape (HOG) + colour + layout.

Used by ``frame_embeddings`` until a champion model exists (then its penultimate layer is used).
No weights are downloaded; everything is computed from the pixels with scikit-image/OpenCV.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_features"]


def bootstrap_features(images: np.ndarray, *, size: tuple[int, int] = (128, 96)) -> np.ndarray:
    """Hand-crafted embeddings for frames.

    Parameters
    ----------
    images
        Shape (N, H, W, 3), uint8, RGB.
    size
        (width, height) the frames are resized to before description.

    Returns
    -------
    np.ndarray
        Shape (N, D), float32: HOG of the grey image (edges: scratches, dents), a hue/saturation
        histogram of the central region (discolouration) and a 16x12 grey thumbnail (layout).
    """
    import cv2
    from skimage.feature import hog

    out = []
    for img in images:
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        h = hog(
            gray,
            orientations=9,
            pixels_per_cell=(12, 12),
            cells_per_block=(2, 2),
            feature_vector=True,
        )
        hh, ww = small.shape[:2]
        center = small[hh // 6 : hh - hh // 6, ww // 4 : ww - ww // 4]
        hsv = cv2.cvtColor(center, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [12, 4], [0, 180, 0, 256]).ravel()
        hist = hist / max(hist.sum(), 1.0)
        thumb = cv2.resize(gray, (16, 12), interpolation=cv2.INTER_AREA).ravel() / 255.0
        out.append(np.concatenate([h, hist * 4.0, thumb]).astype(np.float32))
    return np.stack(out) if out else np.zeros((0, 0), np.float32)

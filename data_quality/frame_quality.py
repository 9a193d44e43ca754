"""Per-frame image quality statistics (OpenCV): brightness, contrast, sharpness."""

from __future__ import annotations

import numpy as np

__all__ = ["encode_frame", "frame_stats"]


def frame_stats(image: np.ndarray) -> dict[str, float]:
    """Cheap quality numbers for one frame.

    Parameters
    ----------
    image
        Shape (H, W, 3) uint8 BGR, or (H, W) uint8 gray.

    Returns
    -------
    dict
        ``brightness``: mean gray level in [0, 255]; ``contrast``: its standard deviation;
        ``sharpness``: variance of the Laplacian (low means blurry or a dirty lens).
    """
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    mean, std = cv2.meanStdDev(gray)
    lap = cv2.Laplacian(gray, cv2.CV_32F)
    return {
        "brightness": float(mean[0, 0]),
        "contrast": float(std[0, 0]),
        "sharpness": float(lap.var()),
    }


def encode_frame(image: np.ndarray, *, quality: int = 90) -> tuple[bytes, dict[str, float]]:
    """JPEG-encode one BGR frame (H, W, 3) uint8 and measure it: ``(jpeg_bytes, frame_stats)``."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {image.shape}")
    return buf.tobytes(), frame_stats(image)

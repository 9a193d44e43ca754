"""Per-frame image quality statistics (OpenCV): brightness, contrast, sharpness."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLURRY_RELATIVE",
    "BLURRY_SHARPNESS",
    "DARK_BRIGHTNESS",
    "OVEREXPOSED_BRIGHTNESS",
    "EncodedFrame",
    "FrameEncoder",
    "encode_frame",
    "frame_stats",
]

# The one home of Lensline's frame-quality limits (brightness: mean grey level 0..255;
# sharpness: variance of the Laplacian, see frame_stats). Absolute limits judge a frame alone:
# the ingest check ``frame_quality`` (assets/ingest.py) and, for cameras with too few frames
# for statistics, the dark/overexposed issue types. With enough frames the issue types judge a
# frame against its own camera instead (data_quality.label_issues), since a dark-background
# camera is not a dark frame.
DARK_BRIGHTNESS = 40.0
"""Absolute: a frame below this mean grey level is dark."""
OVEREXPOSED_BRIGHTNESS = 235.0
"""Absolute: a frame above this mean grey level is overexposed."""
BLURRY_SHARPNESS = 20.0
"""Absolute: a frame whose Laplacian variance is below this is blurry (ingest check)."""
BLURRY_RELATIVE = 0.25
"""Relative: blurry below this share of its camera's median sharpness (label issues)."""


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
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_32F))
    return {
        "brightness": float(mean[0, 0]),
        "contrast": float(std[0, 0]),
        "sharpness": float(lap_std[0, 0]) ** 2,
    }


def encode_frame(image: np.ndarray, *, quality: int = 90) -> tuple[bytes, dict[str, float]]:
    """JPEG-encode one BGR frame (H, W, 3) uint8 and measure it: ``(jpeg_bytes, frame_stats)``."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {image.shape}")
    return buf.tobytes(), frame_stats(image)


@dataclass(frozen=True)
class EncodedFrame:
    """One sampled frame, ready to store."""

    frame_index: int
    timestamp_s: float
    width: int
    height: int
    jpeg: bytes
    sha256: str
    stats: dict[str, float]


class FrameEncoder:
    """A ``scan_video`` sink that JPEG-encodes and measures frames on worker threads.

    OpenCV releases the GIL, so encoding overlaps with decoding; ``results()`` returns the
    frames in the order they were decoded.
    """

    def __init__(self, *, quality: int = 90, workers: int = 2) -> None:
        self.quality = quality
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lensline-jpeg")
        self._slots = threading.BoundedSemaphore(
            4 * workers
        )  # decoded frames waiting: bounded memory
        self._pending: list[tuple[int, float, tuple[int, ...], Future]] = []

    def __call__(self, index: int, timestamp_s: float, image) -> None:
        """``image``: (H, W, 3) uint8 BGR, or a decoded ``av.VideoFrame`` (converted on the worker)."""
        lazy = hasattr(image, "to_ndarray")
        shape = (image.height, image.width) if lazy else image.shape
        self._slots.acquire()  # decoding waits when encoding falls behind
        self._pending.append((index, timestamp_s, shape, self._pool.submit(self._encode, image)))

    def _encode(self, image) -> tuple[bytes, dict[str, float]]:
        try:
            if hasattr(image, "to_ndarray"):  # av.VideoFrame: PyAV converts without holding the GIL
                image = image.to_ndarray(format="bgr24")
            return encode_frame(image, quality=self.quality)
        finally:
            self._slots.release()

    def results(self) -> list[EncodedFrame]:
        out = []
        for index, ts, shape, future in self._pending:
            jpeg, stats = future.result()
            digest = hashlib.sha256(jpeg).hexdigest()
            out.append(EncodedFrame(index, ts, int(shape[1]), int(shape[0]), jpeg, digest, stats))
        self._pool.shutdown()
        return out

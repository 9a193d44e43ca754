"""Per-frame image quality for the lake: JPEG encoding of sampled frames and their statistics.

The statistics (brightness, contrast, sharpness) and the dark/overexposed/blurry limits are
:mod:`edge_export.quality`'s, shared with the edge runner's alarm rules.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from edge_export.preprocess import LAKE_JPEG_QUALITY
from edge_export.quality import (
    BLURRY_RELATIVE,
    BLURRY_SHARPNESS,
    DARK_BRIGHTNESS,
    OVEREXPOSED_BRIGHTNESS,
    frame_stats,
)

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

# The limits and the statistic live in edge_export.quality (one place, beside the edge's own
# limits and the reason they differ); re-exported here for the lake's checks and issue types.


def encode_frame(
    image: np.ndarray, *, quality: int = LAKE_JPEG_QUALITY
) -> tuple[bytes, dict[str, float]]:
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
    thumb: np.ndarray | None = None
    """A small BGR copy for :mod:`data_quality.presence` (with ``FrameEncoder(thumb_width=)``)."""


class FrameEncoder:
    """A ``scan_video`` sink that JPEG-encodes and measures frames on worker threads.

    OpenCV releases the GIL, so encoding overlaps with decoding; ``results()`` returns the
    frames in the order they were decoded. With ``thumb_width`` each frame also keeps a
    thumbnail that wide (:func:`data_quality.presence.thumbnail`).
    """

    def __init__(
        self, *, quality: int = LAKE_JPEG_QUALITY, workers: int = 2, thumb_width: int | None = None
    ) -> None:
        self.quality = quality
        self.thumb_width = thumb_width
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

    def _encode(self, image) -> tuple[bytes, dict[str, float], np.ndarray | None]:
        try:
            if hasattr(image, "to_ndarray"):  # av.VideoFrame: PyAV converts without holding the GIL
                image = image.to_ndarray(format="bgr24")
            jpeg, stats = encode_frame(image, quality=self.quality)
            if self.thumb_width is None:
                return jpeg, stats, None
            from data_quality.presence import thumbnail

            return jpeg, stats, thumbnail(image, width=self.thumb_width)
        finally:
            self._slots.release()

    def results(self) -> list[EncodedFrame]:
        out = []
        for index, ts, shape, future in self._pending:
            jpeg, stats, thumb = future.result()
            digest = hashlib.sha256(jpeg).hexdigest()
            out.append(
                EncodedFrame(index, ts, int(shape[1]), int(shape[0]), jpeg, digest, stats, thumb)
            )
        self._pool.shutdown()
        return out

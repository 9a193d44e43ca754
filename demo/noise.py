"""Seeded helpers shared by the scene, the items and the annotators."""

from __future__ import annotations

import zlib

import cv2
import numpy as np

__all__ = ["crc", "smooth_noise"]


def crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], sx: float, sy: float
) -> np.ndarray:
    """Zero-mean unit-std noise, blurred, periodic in x (shape is (rows, cols))."""
    h, w = shape
    pad = int(3 * max(sx, 1.0)) + 1
    raw = np.pad(rng.standard_normal((h, w)).astype(np.float32), ((0, 0), (pad, pad)), mode="wrap")
    n = np.asarray(cv2.GaussianBlur(raw, (0, 0), sigmaX=max(sx, 0.3), sigmaY=max(sy, 0.3)))
    n = n[:, pad:-pad]
    return (n - n.mean()) / (n.std() + 1e-6)

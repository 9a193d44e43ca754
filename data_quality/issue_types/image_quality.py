"""Image-quality issue types: a frame judged against the frames of its own camera.

Limits (absolute fallbacks and the relative blur share) come from
:mod:`data_quality.frame_quality`, their one home.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl

from data_quality.frame_quality import BLURRY_RELATIVE, DARK_BRIGHTNESS, OVEREXPOSED_BRIGHTNESS
from data_quality.issue_types.base import IssueContext, IssueType

__all__ = ["BlurryIssue", "DarkIssue", "OverexposedIssue", "camera_stats"]


def _ratio_score(margin: np.ndarray, threshold: float) -> np.ndarray:
    """Map ``margin >= 0`` to 0..1 with 0.5 exactly at ``threshold`` (lower = worse)."""
    margin = np.clip(margin, 0.0, None)
    return margin / (margin + max(threshold, 1e-9))


def camera_stats(
    values: np.ndarray, cameras: np.ndarray, *, min_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each frame's camera median and robust spread of ``values``.

    Parameters
    ----------
    values : np.ndarray of shape (N,), float
        A per-frame statistic (NaN where unknown; NaNs are ignored).
    cameras : np.ndarray of shape (N,)
        Camera of each frame.
    min_frames : int
        Cameras with fewer finite values are marked not ``enough``.

    Returns
    -------
    median : np.ndarray of shape (N,), float
        Median of the frame's camera.
    scale : np.ndarray of shape (N,), float
        1.4826 x the median absolute deviation of the frame's camera (the standard deviation
        of a normal distribution; robust to the outliers being looked for).
    enough : np.ndarray of shape (N,), bool
        The camera has at least ``min_frames`` finite values.
    """
    median = np.full(len(values), np.nan)
    scale = np.full(len(values), np.nan)
    enough = np.zeros(len(values), bool)
    cams = np.asarray(cameras).astype(str)
    for cam in np.unique(cams):
        rows = cams == cam
        finite = values[rows][np.isfinite(values[rows])]
        if not len(finite):
            continue
        med = float(np.median(finite))
        median[rows] = med
        scale[rows] = 1.4826 * float(np.median(np.abs(finite - med)))
        enough[rows] = len(finite) >= min_frames
    return median, scale, enough


def _z_score(z: np.ndarray, z_threshold: float) -> np.ndarray:
    """0..1 from a robust z-score (lower = worse): 0.5 at ``-z_threshold``, 2/3 at the median."""
    return _ratio_score(z + 2 * z_threshold, z_threshold)


def _nullable(flag: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Object array of ``flag`` with ``None`` where the statistic is ``missing`` (NaN)."""
    out = np.asarray(flag).astype(object)
    out[missing] = None
    return out


class _CameraRelative(IssueType):
    """Judges a frame against the frames of its own camera (robust z-score).

    A frame is flagged when its robust z-score ``(x - camera median) / max(1.4826 MAD,
    min_scale)`` is beyond ``z_threshold`` *and* it differs from the camera median by a
    material amount (``min_change``), so a camera whose every frame is dark (bright parts on
    black, back-lit or X-ray inspection) keeps its frames, while a frame much darker than its
    camera's usual is flagged. Cameras with fewer than ``min_frames`` frames (whose normal
    cannot be estimated) fall back to the absolute ``threshold``.
    """

    needs = ("brightness",)
    stat = "brightness"

    def __init__(
        self,
        *,
        threshold: float | None = None,
        z_threshold: float = 3.5,
        min_change: float = 0.3,
        min_scale: float = 2.0,
        min_frames: int = 10,
    ) -> None:
        self.threshold = self.default_threshold if threshold is None else threshold
        self.z_threshold, self.min_change = z_threshold, min_change
        self.min_scale, self.min_frames = min_scale, min_frames

    default_threshold: ClassVar[float]

    def _inputs(self, ctx: IssueContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(values (N,), camera median (N,), robust z (N,), camera has enough frames (N,))."""
        x = ctx.quality[self.stat].cast(pl.Float64).fill_null(np.nan).to_numpy()
        med, scale, enough = camera_stats(x, ctx.cameras, min_frames=self.min_frames)
        z = (x - med) / np.maximum(np.nan_to_num(scale), self.min_scale)
        return x, med, z, enough


class DarkIssue(_CameraRelative):
    """Underexposed frame: much darker than its camera's usual ``brightness`` (0..255 mean gray).

    Flagged when the robust z-score of brightness against the frame's camera is below
    ``-z_threshold`` and the brightness is at least ``min_change`` (30%) below the camera's
    median; see :class:`_CameraRelative`. ``threshold`` (absolute, default 40) applies to
    cameras with fewer than ``min_frames`` frames. ``dark_score`` is 0.5 at the z threshold.
    """

    issue_name = "dark"
    default_threshold = DARK_BRIGHTNESS
    columns: ClassVar[dict[str, Any]] = {"is_dark": pl.Boolean, "dark_score": pl.Float64}

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        b, med, z, enough = self._inputs(ctx)
        relative = (z < -self.z_threshold) & (b < (1.0 - self.min_change) * med)
        flag = np.where(enough, relative, b < self.threshold)
        score = np.where(enough, _z_score(z, self.z_threshold), _ratio_score(b, self.threshold))
        return {"is_dark": _nullable(flag, np.isnan(b)), "dark_score": score}


class OverexposedIssue(_CameraRelative):
    """Washed-out frame (glare): much brighter than its camera's usual ``brightness``.

    Flagged when the robust z-score is above ``z_threshold`` and the headroom ``255 -
    brightness`` is at least ``min_change`` (30%) below the camera's median headroom; cameras
    with fewer than ``min_frames`` frames use the absolute ``threshold`` (default 235).
    """

    issue_name = "overexposed"
    default_threshold = OVEREXPOSED_BRIGHTNESS
    columns: ClassVar[dict[str, Any]] = {
        "is_overexposed": pl.Boolean,
        "overexposed_score": pl.Float64,
    }

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        b, med, z, enough = self._inputs(ctx)
        relative = (z > self.z_threshold) & (255.0 - b < (1.0 - self.min_change) * (255.0 - med))
        flag = np.where(enough, relative, b > self.threshold)
        score = np.where(
            enough,
            _z_score(-z, self.z_threshold),
            _ratio_score(255.0 - b, 255.0 - self.threshold),
        )
        return {"is_overexposed": _nullable(flag, np.isnan(b)), "overexposed_score": score}


class BlurryIssue(_CameraRelative):
    """Out-of-focus or motion-blurred frame: low variance of the Laplacian for its camera.

    Sharpness depends on resolution and scene (a black background has little texture), so a
    frame is judged against its camera: flagged when the robust z-score of ``log1p(sharpness)``
    is below ``-z_threshold`` and the sharpness is below ``relative`` x the camera's median.
    Cameras with fewer than ``min_frames`` frames use ``threshold`` when given, else
    ``relative`` x the median of every frame checked together.
    """

    issue_name = "blurry"
    needs = ("sharpness",)
    stat = "sharpness"
    default_threshold = float("nan")
    columns: ClassVar[dict[str, Any]] = {"is_blurry": pl.Boolean, "blurry_score": pl.Float64}

    def __init__(
        self,
        *,
        threshold: float | None = None,
        relative: float = BLURRY_RELATIVE,
        z_threshold: float = 3.5,
        min_scale: float = 0.1,
        min_frames: int = 10,
    ) -> None:
        super().__init__(
            threshold=threshold,
            z_threshold=z_threshold,
            min_change=1.0 - relative,
            min_scale=min_scale,
            min_frames=min_frames,
        )
        self.relative = relative

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        s = ctx.quality["sharpness"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        log_s = np.log1p(np.clip(s, 0.0, None))
        med_log, scale, enough = camera_stats(log_s, ctx.cameras, min_frames=self.min_frames)
        z = (log_s - med_log) / np.maximum(np.nan_to_num(scale), self.min_scale)
        camera_median = np.expm1(med_log)
        relative = (z < -self.z_threshold) & (s < self.relative * camera_median)
        thr = self.threshold
        if np.isnan(thr):
            finite = s[np.isfinite(s)]
            thr = self.relative * float(np.median(finite)) if len(finite) else 0.0
        flag = np.where(enough, relative, s < thr)
        score = np.where(enough, _z_score(z, self.z_threshold), _ratio_score(s, thr))
        return {"is_blurry": _nullable(flag, np.isnan(s)), "blurry_score": score}

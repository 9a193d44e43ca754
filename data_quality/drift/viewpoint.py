"""Camera shift between two static-scene backgrounds: translation (px) and rotation (degrees).

Both backgrounds are medians of frames (:func:`data_quality.drift.reference.median_background`),
so moving items and the belt texture are gone and the rails, bolts and belt edges remain.
Illumination (vignetting, a darker light, lens haze) is removed with a high-pass filter
and a per-image normalisation, so a lighting change does not read as a moved camera.
Phase correlation gives a robust translation; an ECC Euclidean alignment started from it
refines the translation and adds the rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CameraShift", "estimate_shift"]


@dataclass(frozen=True)
class CameraShift:
    """How the new background is displaced relative to the reference.

    Attributes
    ----------
    dx, dy : float
        Translation in pixels of the new image relative to the reference (x right, y down).
    angle_deg : float
        Rotation in degrees (counter-clockwise positive); 0.0 when ECC did not converge.
    response : float
        Phase-correlation peak (0..1); low means little common structure.
    refined : bool
        Whether the ECC refinement converged.
    """

    dx: float
    dy: float
    angle_deg: float
    response: float
    refined: bool

    @property
    def shift_px(self) -> float:
        """Length of the translation in pixels."""
        return math.hypot(self.dx, self.dy)


def _prepare(gray: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    g = gray.astype(np.float32)
    hp = g - cv2.GaussianBlur(g, (0, 0), sigma)
    return (hp - hp.mean()) / (hp.std() + 1e-6)


def estimate_shift(
    reference: np.ndarray, new: np.ndarray, *, highpass_sigma: float = 6.0
) -> CameraShift:
    """Estimate the camera shift between two backgrounds.

    Parameters
    ----------
    reference, new : np.ndarray
        (H, W) uint8 grey backgrounds of the same size.
    highpass_sigma : float
        Gaussian sigma (px) of the illumination removed before matching.

    Returns
    -------
    CameraShift
    """
    import cv2

    if reference.shape != new.shape:
        raise ValueError(f"background sizes differ: {reference.shape} vs {new.shape}")
    a, b = _prepare(reference, highpass_sigma), _prepare(new, highpass_sigma)
    win = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, win)
    # ECC: find warp W with new(W(x)) ~ reference(x); W = [R | t] maps reference to new.
    warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    try:
        _, warp = cv2.findTransformECC(
            cv2.GaussianBlur(a, (0, 0), 1.0),
            cv2.GaussianBlur(b, (0, 0), 1.0),
            warp,
            cv2.MOTION_EUCLIDEAN,
            criteria,
            None,
            5,
        )
    except cv2.error:
        return CameraShift(float(dx), float(dy), 0.0, float(response), False)
    angle = math.degrees(math.atan2(float(warp[1, 0]), float(warp[0, 0])))
    centre = np.array([a.shape[1] / 2.0, a.shape[0] / 2.0, 1.0], np.float32)
    ex, ey = (warp @ centre - centre[:2]).tolist()  # displacement of the image centre
    if math.hypot(ex - dx, ey - dy) > 3.0 + 0.05 * max(a.shape):  # ECC wandered off: keep phase
        return CameraShift(float(dx), float(dy), 0.0, float(response), False)
    return CameraShift(ex, ey, -angle, float(response), True)

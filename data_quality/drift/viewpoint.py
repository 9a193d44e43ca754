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
        Displacement in pixels of the image centre's content, new relative to the
        reference (x right, y down).
    angle_deg : float
        Rotation in degrees (counter-clockwise positive, as ``cv2.getRotationMatrix2D``);
        0.0 when ECC did not converge.
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
    reference: np.ndarray, new: np.ndarray, *, highpass_sigma: float | None = None
) -> CameraShift:
    """Estimate the camera shift between two backgrounds.

    Parameters
    ----------
    reference, new : np.ndarray
        (H, W) uint8 grey backgrounds of the same size.
    highpass_sigma : float, optional
        Gaussian sigma (px) of the illumination removed before matching; default 2.5 % of
        the image height (6 px at 240 rows).

    Returns
    -------
    CameraShift
    """
    import cv2

    if reference.shape != new.shape:
        raise ValueError(f"background sizes differ: {reference.shape} vs {new.shape}")
    sigma = highpass_sigma if highpass_sigma is not None else 0.025 * reference.shape[0]
    a, b = _prepare(reference, sigma), _prepare(new, sigma)
    win = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, win)
    # ECC: find warp W with new(W(x)) ~ reference(x); W = [R | t] maps reference to new.
    # Started from the phase-correlation translation, kept when it agrees with it (within
    # 3 px); otherwise (phase correlation is unreliable under rotation) also started from
    # the identity, and the better-correlated fit wins.
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    sa, sb = cv2.GaussianBlur(a, (0, 0), 1.0), cv2.GaussianBlur(b, (0, 0), 1.0)
    best: tuple[float, np.ndarray] | None = None
    for init in ((dx, dy), (0.0, 0.0)):
        warp = np.array([[1, 0, init[0]], [0, 1, init[1]]], np.float32)
        try:
            cc, warp = cv2.findTransformECC(  # type: ignore[call-overload]
                sa, sb, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 5
            )
        except cv2.error:
            continue
        if abs(math.degrees(math.atan2(float(warp[1, 0]), float(warp[0, 0])))) > 30.0:
            continue  # not a plausible camera knock
        if init != (0.0, 0.0) and math.hypot(warp[0, 2] - dx, warp[1, 2] - dy) <= 3.0:
            best = (float(cc), warp)
            break
        if best is None or cc > best[0]:
            best = (float(cc), warp)
    if best is None:
        return CameraShift(float(dx), float(dy), 0.0, float(response), False)
    warp = best[1]
    angle = math.degrees(math.atan2(float(warp[1, 0]), float(warp[0, 0])))
    centre = np.array([a.shape[1] / 2.0, a.shape[0] / 2.0, 1.0], np.float32)
    ex, ey = (warp @ centre - centre[:2]).tolist()  # displacement of the image centre
    return CameraShift(ex, ey, -angle, float(response), True)

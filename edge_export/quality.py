"""Frame quality: the statistics and every dark/blurry limit Lensline uses, in one place.

:func:`frame_stats` measures one decoded frame (brightness, contrast, sharpness); the limits
below say what "dark", "overexposed" and "blurry" mean. Two uses need two sets of limits, and
both are named here with the reason:

- **the lake** (``data_quality.frame_quality``: the ingest check ``frame_quality``, the
  dark/overexposed/blurry label issues) *flags* frames for curation: a false flag costs a
  reviewer a glance, so the limits are generous (:data:`DARK_BRIGHTNESS`,
  :data:`BLURRY_SHARPNESS`);
- **the edge** (the alarm rules' defaults, :class:`edge_export.postprocess.AlarmRules`)
  *ignores* frames for alarms: an ignored frame cannot raise an alarm, so a false ignore can
  hide a defect; only frames too poor to judge at all are skipped
  (:data:`EDGE_DARK_BRIGHTNESS`, :data:`EDGE_BLURRY_SHARPNESS`). The values a bundle uses are
  written into its ``postprocess.json`` (``min_brightness``, ``min_sharpness``).

Both measure the raw decoded frame (before any crop or JPEG round trip). numpy + OpenCV only:
the standalone edge runner imports it.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLURRY_RELATIVE",
    "BLURRY_SHARPNESS",
    "DARK_BRIGHTNESS",
    "EDGE_BLURRY_SHARPNESS",
    "EDGE_DARK_BRIGHTNESS",
    "OVEREXPOSED_BRIGHTNESS",
    "frame_stats",
]

# brightness: mean grey level 0..255; sharpness: variance of the Laplacian (see frame_stats).
# The lake's absolute limits judge a frame alone: the ingest check ``frame_quality``
# (assets/ingest.py) and, for cameras with too few frames for statistics, the dark/overexposed
# issue types. With enough frames the issue types judge a frame against its own camera instead
# (data_quality.label_issues), since a dark-background camera is not a dark frame.
DARK_BRIGHTNESS = 40.0
"""Lake, absolute: a frame below this mean grey level is dark (flagged for curation)."""
OVEREXPOSED_BRIGHTNESS = 235.0
"""Lake, absolute: a frame above this mean grey level is overexposed."""
BLURRY_SHARPNESS = 20.0
"""Lake, absolute: a frame whose Laplacian variance is below this is blurry (ingest check)."""
BLURRY_RELATIVE = 0.25
"""Lake, relative: blurry below this share of its camera's median sharpness (label issues)."""
EDGE_DARK_BRIGHTNESS = 20.0
"""Edge alarms: a frame below this mean grey level is ignored (too dark to judge at all)."""
EDGE_BLURRY_SHARPNESS = 5.0
"""Edge alarms: a frame whose Laplacian variance is below this is ignored (0 disables)."""


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

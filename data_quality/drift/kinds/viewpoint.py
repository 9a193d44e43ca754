"""Viewpoint drift: the camera moved (shift and rotation of the static scene)."""

from __future__ import annotations

from data_quality.drift.kinds.base import DEFAULT_CONFIG, NAN, DriftConfig, DriftKind, DriftTest
from data_quality.drift.reference import CameraReference
from data_quality.drift.viewpoint import estimate_shift

__all__ = ["VIEWPOINT_STATISTICS", "ViewpointDrift", "viewpoint_tests"]

VIEWPOINT_STATISTICS: tuple[str, ...] = ("shift_px", "rotation_deg")


class ViewpointDrift(DriftKind):
    """``viewpoint``: shift and rotation against ``max_shift_px`` and ``max_rotation_deg``."""

    kind = "viewpoint"
    statistics = VIEWPOINT_STATISTICS

    def thresholds(self, config: DriftConfig) -> tuple[float, ...]:
        return (config.max_shift_px, config.max_rotation_deg)

    def run(
        self, reference: CameraReference, new: CameraReference, config: DriftConfig
    ) -> list[DriftTest]:
        return viewpoint_tests(reference, new, config=config)


def viewpoint_tests(
    reference: CameraReference, new: CameraReference, *, config: DriftConfig = DEFAULT_CONFIG
) -> list[DriftTest]:
    """Camera shift of the new video's static scene against the reference background.

    Returns
    -------
    list of DriftTest
        ``shift_px`` and ``rotation_deg`` rows (value compared with the thresholds).
    """
    limits = (config.max_shift_px, config.max_rotation_deg)
    if reference.background is None or new.background is None:
        status = "no_images"
    elif reference.background.shape != new.background.shape:
        status = "size_mismatch"
    else:
        status = "ok"
    if status != "ok":
        return ViewpointDrift().skipped(status, config)
    assert reference.background is not None and new.background is not None
    shift = estimate_shift(reference.background, new.background)
    values = (shift.shift_px, abs(shift.angle_deg))
    return [
        DriftTest("viewpoint", s, float(v), NAN, t, bool(v > t), "ok")
        for s, v, t in zip(VIEWPOINT_STATISTICS, values, limits, strict=True)
    ]

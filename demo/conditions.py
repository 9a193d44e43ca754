"""Shooting conditions of a demo video: the knobs that drift scenarios turn."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONDITIONS", "Conditions", "resolve_conditions"]


@dataclass(frozen=True)
class Conditions:
    """Shooting conditions of a video: the knobs that drift scenarios turn.

    Attributes
    ----------
    name : str
        Stable name, recorded in the ground truth.
    brightness : float
        Scene illumination gain (1.0 nominal).
    glove_color : tuple[int, int, int]
        BGR colour of the operator's gloves.
    camera_offset : tuple[float, float]
        (dx, dy) shift of the scene in the image, in pixels at 320x240 (scaled with size).
    lens_dirt : float
        0..1: smudges that blur and haze parts of the image, plus extra vignetting.
    noise_sigma : float
        Standard deviation of additive sensor noise, in 8-bit grey levels.
    flicker : float
        Relative amplitude of the per-frame lighting gain wobble.
    blur : float
        Gaussian defocus sigma in pixels at 320x240 (0 = sharp).
    light_tint : tuple[float, float, float]
        Per-channel (BGR) gain of the illumination colour.
    hand_rate : float
        Expected number of gloved-hand appearances per second.
    """

    name: str = "nominal"
    brightness: float = 1.0
    glove_color: tuple[int, int, int] = (205, 120, 55)  # blue nitrile
    camera_offset: tuple[float, float] = (0.0, 0.0)
    lens_dirt: float = 0.0
    noise_sigma: float = 2.5
    flicker: float = 0.03
    blur: float = 0.0
    light_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    hand_rate: float = 0.1


CONDITIONS: dict[str, Conditions] = {
    c.name: c
    for c in (
        Conditions(),
        Conditions(name="dark", brightness=0.45, noise_sigma=4.0, flicker=0.05),
        Conditions(name="gray_gloves", glove_color=(128, 130, 132)),
        Conditions(name="moved_camera", camera_offset=(22.0, 14.0)),
        Conditions(name="dirty_lens", lens_dirt=0.7, blur=1.0),
        Conditions(name="noisy", noise_sigma=9.0),
        Conditions(name="warm_light", light_tint=(0.80, 0.97, 1.18)),
    )
}
"""Named conditions: ``nominal`` plus shifted ones for drift work."""


def resolve_conditions(conditions: Conditions | str) -> Conditions:
    if isinstance(conditions, Conditions):
        return conditions
    try:
        return CONDITIONS[conditions]
    except KeyError:
        raise ValueError(
            f"unknown conditions {conditions!r}; known: {sorted(CONDITIONS)}"
        ) from None

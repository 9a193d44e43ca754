"""The parts on the belt: classes, their priors and one pre-rendered sprite per item."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from demo.noise import smooth_noise

__all__ = ["CLASSES", "CLASS_PROBS", "Item", "Sprite", "render_sprite"]

CLASSES: tuple[str, ...] = ("good", "scratch", "dent", "discoloration")
"""Item classes; the index of a class in this tuple is its integer id."""

CLASS_PROBS: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)
"""Prior probability of each class in ``CLASSES`` order."""


@dataclass
class Item:
    item_id: int
    cls: int
    t_enter: float
    radius: float  # image px
    y: float  # image px
    seed: int
    sprite: Sprite | None = None


@dataclass
class Sprite:
    prem: np.ndarray  # (S, S, 3) float32, colour premultiplied by alpha
    alpha: np.ndarray  # (S, S) float32
    shadow: np.ndarray  # (S, S) float32, darkening factor of the belt
    area: float = field(default=0.0)


def _rounded_square(c: float, half: float, corner: float, angle: float) -> np.ndarray:
    """Polygon (x16 fixed point) of a rounded square centred at (c, c), rotated by angle (rad)."""
    pts = []
    for sx, sy, a0 in ((1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)):
        ox, oy = sx * (half - corner), sy * (half - corner)
        for a in np.radians(np.arange(a0, a0 + 91, 10)):
            pts.append((ox + corner * math.cos(a), oy + corner * math.sin(a)))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return np.round((np.array(pts) @ rot.T + c) * 16).astype(np.int32)


def render_sprite(item: Item, s: float) -> Sprite:
    """Draw one item (with its defect) once; frames then only blend the sprite.

    The item is drawn already rotated and lit in image coordinates, so shading (lit from
    the upper left) stays consistent with the scene whatever the rotation.
    """
    rng = np.random.default_rng(item.seed)
    angle = float(rng.uniform(0, 2 * math.pi))
    R = item.radius
    margin = int(math.ceil(7 * s)) + 2
    S = 2 * (int(math.ceil(1.1 * R)) + margin)
    c = S / 2.0
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    u, v = (xx - c) / R, (yy - c) / R

    mask = np.zeros((S, S), np.uint8)
    if rng.random() < 0.5:  # washer-like disc
        cv2.circle(mask, (int(c * 16), int(c * 16)), int(R * 16), 255, -1, cv2.LINE_AA, 4)
    else:  # rounded square plate
        cv2.fillPoly(mask, [_rounded_square(c, 0.84 * R, 0.32 * R, angle)], 255, cv2.LINE_AA, 4)
    cv2.circle(mask, (int(c * 16), int(c * 16)), int(0.16 * R * 16), 0, -1, cv2.LINE_AA, 4)
    m = mask.astype(np.float32) / 255.0

    if rng.random() < 0.6:  # brushed metal
        base = np.array([4, 1, 0], np.float32) + rng.uniform(158, 188)
        brushed = 5.0 * smooth_noise(rng, (S, S), 3.0 * s, 0.4)  # along the item's x axis
        rot = cv2.getRotationMatrix2D((c, c), -math.degrees(angle), 1.0)
        grain = np.asarray(cv2.warpAffine(brushed, rot, (S, S), borderMode=cv2.BORDER_REFLECT))
        spec = 40.0
    else:  # light plastic, near-neutral
        base = rng.uniform(-5, 5, 3).astype(np.float32) + rng.uniform(192, 212)
        grain = 2.0 * smooth_noise(rng, (S, S), 0.8, 0.8)
        spec = 22.0
    shade = 1.0 - 0.10 * (0.6 * u + 0.8 * v)  # lit from the upper left
    mb = cv2.GaussianBlur(m, (0, 0), 1.2 * s)
    k = max(1, int(round(s)))
    emboss = np.zeros_like(mb)
    emboss[:-k, :-k] = mb[k:, k:] - mb[:-k, :-k]
    shade += 0.9 * emboss
    hl = np.exp(-(((u + 0.35) / 0.38) ** 2 + ((v + 0.35) / 0.22) ** 2))
    img = base[None, None, :] * shade[..., None] + (grain + spec * hl)[..., None]

    cls = CLASSES[item.cls]
    if cls == "scratch":
        layer = np.zeros((S, S), np.float32)
        glint = np.zeros((S, S), np.float32)
        thick = max(1, int(round(1.6 * s)))
        for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))):
            ang = rng.uniform(0, math.pi)
            d = np.array([math.cos(ang), math.sin(ang)])
            p0 = np.array([c, c]) + rng.uniform(-0.35, 0.35, 2) * R
            half = rng.uniform(0.55, 0.8) * R
            ts = np.linspace(-half, half, 5)
            pts = p0 + ts[:, None] * d + rng.normal(0, 0.6 * s, (5, 2))
            nrm = np.array([-d[1], d[0]]) * (thick + 0.5)
            cv2.polylines(
                layer, [np.round(pts * 16).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA, 4
            )
            cv2.polylines(
                glint, [np.round((pts + nrm) * 16).astype(np.int32)], False, 1.0, 1, cv2.LINE_AA, 4
            )
        img = img * (1.0 - 0.62 * layer[..., None]) + 55.0 * (glint * (1 - layer))[..., None]
    elif cls == "dent":
        rd = rng.uniform(0.27, 0.33) * R
        ang = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.48, 0.56) * R
        du, dv = (xx - c - dist * math.cos(ang)) / rd, (yy - c - dist * math.sin(ang)) / rd
        r = np.sqrt(du**2 + dv**2)
        inside = r < 1.0
        slope = np.where(inside, np.sin(np.pi * np.minimum(r, 1.0)), 0.0)
        delta = 0.75 * slope * (0.6 * du + 0.8 * dv) - 0.12 * inside
        delta -= 0.25 * np.exp(-(((r - 1.0) / 0.12) ** 2))
        img = img * (1.0 + delta.astype(np.float32))[..., None]
    elif cls == "discoloration":
        rb = rng.uniform(0.38, 0.5) * R
        ang = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.2, 0.45) * R
        bx, by = c + dist * math.cos(ang), c + dist * math.sin(ang)
        blot = np.zeros((S, S), np.float32)
        for _ in range(3):
            ox, oy = rng.normal(0, 0.35 * rb, 2)
            sg = rng.uniform(0.45, 0.65) * rb
            blot += np.exp(-(((xx - bx - ox) ** 2 + (yy - by - oy) ** 2) / (2 * sg * sg)))
        blot /= blot.max()
        a = np.clip((blot - 0.3) / 0.35, 0, 1) * rng.uniform(0.7, 0.85)
        a *= 1.0 + 0.15 * smooth_noise(rng, (S, S), 1.5 * s, 1.5 * s)
        tints = ((40, 95, 165), (70, 165, 205), (175, 90, 110))  # rust, straw, heat-blue (BGR)
        tint = np.array(tints[int(rng.integers(len(tints)))], np.float32)
        lum = img.mean(axis=2, keepdims=True) / 185.0
        img = img * (1 - a[..., None]) + tint[None, None, :] * lum * a[..., None]

    alpha = m
    prem = np.clip(img, 0, 255).astype(np.float32) * m[..., None]
    sh = cv2.GaussianBlur(alpha, (0, 0), 2.5 * s)
    shift = np.array([[1, 0, 3 * s], [0, 1, 4 * s]], np.float32)
    shadow = 0.5 * cv2.warpAffine(sh, shift, (S, S))
    return Sprite(prem=prem, alpha=alpha, shadow=shadow, area=float(alpha.sum()))

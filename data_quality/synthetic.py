"""Procedurally rendered conveyor-belt video: the demo set, test inputs and drift scenarios.

A dark textured belt seen from above carries light metal or plastic parts from left to
right, one roughly every 1.0-1.5 s. Each part is ``good`` or carries one defect
(``scratch``, ``dent``, ``discoloration``). Sensor noise, lighting flicker, per-item
jitter, an occasional gloved hand and a fixed per-camera look make it realistic enough
for ingestion, labelling, training and drift work. Everything is deterministic from a
seed; videos are real H.264 (libx264, yuv420p) in ``.mp4``.

Geometry
--------
Lengths are defined at a 320x240 reference and scale with the frame height. The belt
moves at 1.25 frame widths per second, so at 15 fps an item's centre lies inside the
central window (the middle 40 % of the width, the middle 50 % of the height) for 4-5
consecutive frames: those frames carry the item's label in the ground truth.

Examples
--------
>>> truth = render_video("/tmp/a.mp4", seed=1, camera_id="cam1", seconds=2)  # doctest: +SKIP
>>> demo = make_demo_set(Path("/tmp/landing"), seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import polars as pl
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from data_quality.video import video_id_for

__all__ = [
    "ANNOTATORS",
    "CLASSES",
    "CLASS_PROBS",
    "CONDITIONS",
    "Conditions",
    "DemoSet",
    "make_annotations",
    "make_demo_set",
    "render_video",
    "video_id_for",
    "write_bad_videos",
]

CLASSES: tuple[str, ...] = ("good", "scratch", "dent", "discoloration")
"""Item classes; the index of a class in this tuple is its integer id."""

CLASS_PROBS: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)
"""Prior probability of each class in ``CLASSES`` order."""

ANNOTATORS: dict[str, float] = {"alice": 0.03, "bob": 0.06, "sloppy_sam": 0.30}
"""Default annotators and their per-frame label-flip rate."""

SYSTEMATIC_RATE = 0.2
"""Annotators with a flip rate at or above this make partly systematic errors."""

SYSTEMATIC_SHARE = 0.7
"""Share of a systematic annotator's errors that go to the class's look-alike."""

_LOOK_ALIKE = {
    "good": "discoloration",
    "discoloration": "good",
    "dent": "scratch",
    "scratch": "dent",
}

_REF_H = 240.0  # reference frame height for all lengths below
_BELT_SPEED = 1.25  # frame widths per second
_WINDOW = (0.20, 0.25)  # half-size of the central label window, as fractions of (W, H)
_ITEM_GAP_S = (1.0, 1.5)
_ITEM_RADIUS = 36.0  # reference px
_AUDIO_RATE = 16_000


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


# --------------------------------------------------------------------------- scene model


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True)
class _Camera:
    """Fixed per-camera look, derived from the camera id alone."""

    offset: tuple[float, float]
    zoom: float
    tint: tuple[float, float, float]
    vignette: float
    dirt_seed: int

    @classmethod
    def for_id(cls, camera_id: str) -> _Camera:
        rng = np.random.default_rng(_crc(camera_id))
        return cls(
            offset=(float(rng.uniform(-6, 6)), float(rng.uniform(-5, 5))),
            zoom=float(rng.uniform(0.94, 1.06)),
            tint=tuple(float(x) for x in 1.0 + rng.uniform(-0.05, 0.05, 3)),  # type: ignore[arg-type]
            vignette=float(rng.uniform(0.10, 0.22)),
            dirt_seed=int(rng.integers(2**32)),
        )


@dataclass
class _Item:
    item_id: int
    cls: int
    t_enter: float
    radius: float  # image px
    y: float  # image px
    seed: int
    sprite: _Sprite | None = None


@dataclass
class _Sprite:
    prem: np.ndarray  # (S, S, 3) float32, colour premultiplied by alpha
    alpha: np.ndarray  # (S, S) float32
    shadow: np.ndarray  # (S, S) float32, darkening factor of the belt
    area: float = field(default=0.0)


@dataclass(frozen=True)
class _Hand:
    start: int  # first frame
    frames: int
    from_top: bool
    x: float  # image px where the arm crosses the edge
    tilt: float  # radians
    reach: float  # image px, fingertip depth at the peak


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], sx: float, sy: float
) -> np.ndarray:
    """Zero-mean unit-std noise, blurred, periodic in x (shape is (rows, cols))."""
    h, w = shape
    pad = int(3 * max(sx, 1.0)) + 1
    raw = np.pad(rng.standard_normal((h, w)).astype(np.float32), ((0, 0), (pad, pad)), mode="wrap")
    n = np.asarray(cv2.GaussianBlur(raw, (0, 0), sigmaX=max(sx, 0.3), sigmaY=max(sy, 0.3)))
    n = n[:, pad:-pad]
    return (n - n.mean()) / (n.std() + 1e-6)


def _rounded_square(c: float, half: float, corner: float, angle: float) -> np.ndarray:
    """Polygon (x16 fixed point) of a rounded square centred at (c, c), rotated by angle (rad)."""
    pts = []
    for sx, sy, a0 in ((1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)):
        ox, oy = sx * (half - corner), sy * (half - corner)
        for a in np.radians(np.arange(a0, a0 + 91, 10)):
            pts.append((ox + corner * math.cos(a), oy + corner * math.sin(a)))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return np.round((np.array(pts) @ rot.T + c) * 16).astype(np.int32)


def _render_sprite(item: _Item, s: float) -> _Sprite:
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
        brushed = 5.0 * _smooth_noise(rng, (S, S), 3.0 * s, 0.4)  # along the item's x axis
        rot = cv2.getRotationMatrix2D((c, c), -math.degrees(angle), 1.0)
        grain = np.asarray(cv2.warpAffine(brushed, rot, (S, S), borderMode=cv2.BORDER_REFLECT))
        spec = 40.0
    else:  # light plastic, near-neutral
        base = rng.uniform(-5, 5, 3).astype(np.float32) + rng.uniform(192, 212)
        grain = 2.0 * _smooth_noise(rng, (S, S), 0.8, 0.8)
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
        a *= 1.0 + 0.15 * _smooth_noise(rng, (S, S), 1.5 * s, 1.5 * s)
        tints = ((40, 95, 165), (70, 165, 205), (175, 90, 110))  # rust, straw, heat-blue (BGR)
        tint = np.array(tints[int(rng.integers(len(tints)))], np.float32)
        lum = img.mean(axis=2, keepdims=True) / 185.0
        img = img * (1 - a[..., None]) + tint[None, None, :] * lum * a[..., None]

    alpha = m
    prem = np.clip(img, 0, 255).astype(np.float32) * m[..., None]
    sh = cv2.GaussianBlur(alpha, (0, 0), 2.5 * s)
    shift = np.array([[1, 0, 3 * s], [0, 1, 4 * s]], np.float32)
    shadow = 0.5 * cv2.warpAffine(sh, shift, (S, S))
    return _Sprite(prem=prem, alpha=alpha, shadow=shadow, area=float(alpha.sum()))


class _Scene:
    """Everything about one video that is fixed before the first frame."""

    def __init__(
        self,
        *,
        seed: int,
        camera_id: str,
        seconds: float,
        fps: int,
        size: tuple[int, int],
        cond: Conditions,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        W, H = size
        self.W, self.H, self.fps, self.cond = W, H, fps, cond
        self.n_frames = max(1, int(round(seconds * fps)))
        cam = _Camera.for_id(camera_id)
        unit = H / _REF_H
        z = cam.zoom
        self.s = unit * z
        self.cx = W / 2 + (cam.offset[0] + cond.camera_offset[0]) * unit
        self.cy = H / 2 + (cam.offset[1] + cond.camera_offset[1]) * unit
        self.v = _BELT_SPEED * W * z  # image px / s
        r_sched, r_tex, r_noise, r_hand = (
            np.random.default_rng(x)
            for x in np.random.SeedSequence([seed, _crc(camera_id)]).spawn(4)
        )

        # items: one enters every 1.0-1.5 s; none centred at the same time
        self.items: list[_Item] = []
        t = float(r_sched.uniform(-0.7, 0.2))
        while t < seconds:
            cls = int(r_sched.choice(len(CLASSES), p=CLASS_PROBS))
            radius = _ITEM_RADIUS * unit * r_sched.uniform(0.92, 1.08)
            y_off = float(np.clip(r_sched.normal(0, 6), -14, 14)) * unit
            self.items.append(
                _Item(
                    len(self.items),
                    cls,
                    t,
                    radius * z,
                    self.cy + z * y_off,
                    int(r_sched.integers(2**32)),
                )
            )
            t += float(r_sched.uniform(*_ITEM_GAP_S))

        self._build_background(r_tex, cam)
        self._build_optics(cam)
        self.noise_bank = r_noise.standard_normal((6, H + 16, W + 16, 3), dtype=np.float32)
        self.noise_pick = r_noise.integers(0, [6, 16, 16], size=(self.n_frames, 3))
        phase = r_noise.uniform(0, 2 * np.pi)
        tt = np.arange(self.n_frames) / fps
        wob = 0.6 * np.sin(2 * np.pi * 1.3 * tt + phase) + 0.4 * np.clip(
            r_noise.standard_normal(self.n_frames), -2, 2
        )
        self.gain = (1.0 + cond.flicker * wob).astype(np.float32)
        self.hands = self._schedule_hands(r_hand, seconds)

    # ----------------------------------------------------------------- static layers
    def _build_background(self, rng: np.random.Generator, cam: _Camera) -> None:
        W, H, s = self.W, self.H, self.s
        half_belt, rail = 0.40 * H * cam.zoom, 0.06 * H * cam.zoom
        self.by0 = int(np.clip(round(self.cy - half_belt), 0, H))
        self.by1 = int(np.clip(round(self.cy + half_belt), 0, H))
        rows = np.arange(H, dtype=np.float32)[:, None]

        bg = np.empty((H, W, 3), np.float32)
        bg[:] = (
            np.array([26, 24, 22], np.float32)
            + 4 * _smooth_noise(rng, (H, W), 2 * s, 2 * s)[..., None]
        )
        for top, bot, sign in (
            (self.cy - half_belt - rail, self.cy - half_belt, 1),
            (self.cy + half_belt, self.cy + half_belt + rail, -1),
        ):
            y = (rows[:, 0] - top) / max(bot - top, 1)
            inside = (y >= 0) & (y < 1)
            if not inside.any():  # rail outside the frame (large camera offset)
                continue
            prof = 105 + 70 * np.exp(-(((y - (0.35 if sign > 0 else 0.65)) / 0.22) ** 2))
            bg[inside] = prof[inside, None, None] * np.array([1.03, 1.0, 0.97], np.float32)
            bg[inside] += 3 * _smooth_noise(rng, (int(inside.sum()), W), 6 * s, 0.5)[..., None]
            step = 0.25 * W * cam.zoom
            y_bolt = (top + bot) / 2
            for k in range(-8, 9):
                xb = self.cx + k * step
                if -10 < xb < W + 10:
                    cv2.circle(
                        bg,
                        (int(xb * 16), int(y_bolt * 16)),
                        int(2.2 * s * 16),
                        (70, 70, 72),
                        -1,
                        cv2.LINE_AA,
                        4,
                    )
                    cv2.circle(
                        bg,
                        (int((xb - 0.6 * s) * 16), int((y_bolt - 0.6 * s) * 16)),
                        int(0.9 * s * 16),
                        (170, 170, 172),
                        -1,
                        cv2.LINE_AA,
                        4,
                    )
        self.bg = bg

        # periodic belt texture in image px; shifted by the belt position each frame
        period = max(8, int(round(64 * s)))
        K = period * int(math.ceil(2 * W / period))
        hb = max(self.by1 - self.by0, 1)
        tex = (
            40
            + 5 * _smooth_noise(rng, (hb, K), 3 * s, 0.6 * s)
            + 2.5 * _smooth_noise(rng, (hb, K), 0.5, 0.5)
        )
        xs = np.arange(K) % period
        seam = np.where(xs < max(1, int(2.5 * s)), -11.0, 0.0) + np.where(
            xs == max(1, int(2.5 * s)), 7.0, 0.0
        )
        tex += seam[None, :].astype(np.float32)
        scuffs = np.zeros((hb, K), np.float32)
        for _ in range(K // max(period // 2, 1)):
            cx, cy = int(rng.integers(K)), int(rng.integers(hb))
            ax, ay = int(rng.uniform(2, 7) * s) + 1, int(rng.uniform(1, 3) * s) + 1
            cv2.ellipse(
                scuffs,
                (cx, cy),
                (ax, ay),
                float(rng.uniform(-20, 20)),
                0,
                360,
                float(rng.uniform(6, 14)),
                -1,
            )
        scuffs_wrapped = np.pad(scuffs, ((0, 0), (16, 16)), mode="wrap")
        tex += cv2.GaussianBlur(scuffs_wrapped, (0, 0), 1.0 * s)[:, 16:-16]
        yb = (np.arange(self.by0, self.by0 + hb, dtype=np.float32) - self.cy) / max(half_belt, 1)
        tex *= (1.0 - 0.18 * yb**4)[:, None]  # belt darker towards the rails
        tex = np.concatenate([tex, tex[:, :W]], axis=1)  # wrap-padded: any W-wide window is a slice
        self.tex = np.ascontiguousarray(
            np.repeat(tex[..., None], 3, axis=2) * np.array([1.02, 1.0, 0.98], np.float32)
        )
        self.tex_k = K

    def _build_optics(self, cam: _Camera) -> None:
        W, H, cond = self.W, self.H, self.cond
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        r2 = ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / ((W / 2) ** 2 + (H / 2) ** 2)
        illum = (1.0 - cam.vignette * r2 - 0.3 * cond.lens_dirt * r2**1.5) * (1.04 - 0.08 * yy / H)
        tint = (
            np.array(cam.tint, np.float32) * np.array(cond.light_tint, np.float32) * cond.brightness
        )
        self.illum = (illum[..., None] * tint[None, None, :]).astype(np.float32)
        self.dirt: np.ndarray | None = None
        if cond.lens_dirt > 0:
            rng = np.random.default_rng(cam.dirt_seed)
            smudge = np.zeros((H, W), np.float32)
            for _ in range(5):
                c = (int(rng.uniform(0.1, 0.9) * W), int(rng.uniform(0.1, 0.9) * H))
                ax = (int(rng.uniform(0.12, 0.3) * W), int(rng.uniform(0.1, 0.25) * H))
                cv2.ellipse(smudge, c, ax, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            soft = np.asarray(cv2.GaussianBlur(smudge, (0, 0), 0.08 * W), np.float32)
            soft = soft / max(float(soft.max()), 1e-6)
            self.dirt = (cond.lens_dirt * (0.45 + 0.55 * soft))[..., None].astype(np.float32)

    def _schedule_hands(self, rng: np.random.Generator, seconds: float) -> list[_Hand]:
        candidates: list[_Hand] = []
        for _ in range(int(rng.poisson(self.cond.hand_rate * seconds))):
            dur = max(3, int(round(rng.uniform(0.35, 0.6) * self.fps)))
            if self.items and rng.random() < 0.6:  # reach for an item as it passes the centre
                it = self.items[int(rng.integers(len(self.items)))]
                t_mid = it.t_enter + (self.W / 2 + it.radius) / self.v + rng.normal(0, 0.08)
                start = int(round(t_mid * self.fps)) - dur // 2
            else:
                start = int(rng.integers(0, self.n_frames))
            hand = _Hand(
                start=start,
                frames=dur,
                from_top=bool(rng.random() < 0.5),
                x=self.W / 2 + rng.normal(0, 0.1 * self.W),
                tilt=float(rng.uniform(-0.3, 0.3)),
                reach=float(rng.uniform(0.42, 0.58) * self.H),
            )
            if 0 <= start < self.n_frames:
                candidates.append(hand)
        hands: list[_Hand] = []
        for hand in sorted(candidates, key=lambda h: h.start):
            if not hands or hand.start >= hands[-1].start + hands[-1].frames:
                hands.append(hand)
        return hands

    # ----------------------------------------------------------------- per frame
    def item_x(self, item: _Item, t: float) -> float:
        return self.cx - self.W / 2 - item.radius + self.v * (t - item.t_enter)

    def _hand_layer(self, hand: _Hand, f: int) -> tuple[np.ndarray, np.ndarray] | None:
        p = (f - hand.start + 0.5) / hand.frames
        if not 0.0 < p < 1.0:
            return None
        W, H, s = self.W, self.H, self.s
        depth = hand.reach * math.sin(math.pi * p) ** 0.6
        d = np.array([math.sin(hand.tilt), 1.0 if hand.from_top else -1.0])
        d[1] *= math.cos(hand.tilt)
        side = np.array([-d[1], d[0]])
        edge = np.array([hand.x, 0.0 if hand.from_top else float(H)])
        tip = edge + d * depth
        hs = 58 * s
        palm = tip - d * 0.62 * hs
        glove = np.zeros((H, W), np.uint8)
        sleeve = np.zeros((H, W), np.uint8)

        def P(q: np.ndarray) -> tuple[int, int]:
            return int(round(q[0] * 16)), int(round(q[1] * 16))

        def line(img: np.ndarray, a: np.ndarray, b: np.ndarray, th: float) -> None:
            cv2.line(img, P(a), P(b), 255, max(1, int(th)), cv2.LINE_AA, 4)

        ang = math.degrees(math.atan2(d[1], d[0]))
        cv2.ellipse(
            glove,
            P(palm),
            (int(0.42 * hs * 16), int(0.36 * hs * 16)),
            ang,
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
            4,
        )
        for k, length in zip((-1.5, -0.5, 0.5, 1.5), (0.78, 0.95, 0.92, 0.75), strict=True):
            base = palm + side * k * 0.19 * hs + d * 0.2 * hs
            line(glove, base, base + d * length * 0.6 * hs, 0.13 * hs)
        thumb = palm - side * 0.38 * hs
        line(glove, palm - side * 0.2 * hs, thumb + (d * 0.35 - side * 0.25) * hs, 0.17 * hs)
        wrist = palm - d * 0.45 * hs
        line(glove, palm, wrist, 0.62 * hs)
        line(sleeve, wrist - d * 0.1 * hs, edge - d * 30 * s, 0.75 * hs)
        sleeve[glove > 0] = 0
        a_g = glove.astype(np.float32) / 255.0
        a_s = sleeve.astype(np.float32) / 255.0
        body = cv2.GaussianBlur(a_g, (0, 0), 5 * s)
        k = max(1, int(round(s)))
        emb = np.zeros_like(body)
        emb[:-k, :-k] = body[k:, k:] - body[:-k, :-k]
        shade = 0.72 + 0.35 * body + 1.2 * emb
        color = (
            np.array(self.cond.glove_color, np.float32)[None, None, :]
            * shade[..., None]
            * a_g[..., None]
        )
        color += (
            np.array([70, 55, 50], np.float32)
            * (0.8 + 0.3 * cv2.GaussianBlur(a_s, (0, 0), 4 * s))[..., None]
            * a_s[..., None]
        )
        return color, np.clip(a_g + a_s, 0, 1)

    def frames(self) -> Iterator[tuple[np.ndarray, dict]]:
        """Yield (BGR uint8 frame, truth row) for every frame."""
        W, H = self.W, self.H
        win_x, win_y = _WINDOW[0] * W, _WINDOW[1] * H
        hands = iter(self.hands)
        hand = next(hands, None)
        first = 0
        for f in range(self.n_frames):
            t = f / self.fps
            frame = self.bg.copy()
            shift = int(round(self.v * t))
            start = -shift % self.tex_k  # texture moves right with the belt
            frame[self.by0 : self.by1] = self.tex[:, start : start + W]

            visible = []
            while (
                first < len(self.items)
                and self.item_x(self.items[first], t) - self._half(self.items[first]) > W
            ):
                self.items[first].sprite = None  # passed: free the sprite
                first += 1
            for item in self.items[first:]:
                x = self.item_x(item, t)
                if x + self._half(item) < 0:
                    break
                if item.sprite is None:
                    item.sprite = _render_sprite(item, self.s)
                visible.append((item, self._blend(frame, item.sprite, x, item.y)))

            occluded = False
            while hand is not None and f >= hand.start + hand.frames:
                hand = next(hands, None)
            layer = self._hand_layer(hand, f) if hand is not None else None
            if layer is not None:
                color, a = layer
                move = np.array([[1, 0, 5 * self.s], [0, 1, 6 * self.s]], np.float32)
                sh = cv2.warpAffine(cv2.GaussianBlur(a, (0, 0), 4 * self.s), move, (W, H))
                frame *= (1.0 - 0.4 * sh)[..., None]
                frame *= (1.0 - a)[..., None]
                frame += color
                for item, region in visible:
                    if region is None or item.sprite is None:
                        continue
                    (y0, y1, x0, x1), (sy0, sy1, sx0, sx1) = region
                    sp = item.sprite
                    cover = float((a[y0:y1, x0:x1] * sp.alpha[sy0:sy1, sx0:sx1]).sum())
                    if cover > 0.05 * sp.area:
                        occluded = True

            label, item_id = None, None
            for item, _ in visible:
                x = self.item_x(item, t)
                if abs(x - W / 2) <= win_x and abs(item.y - H / 2) <= win_y:
                    label, item_id = CLASSES[item.cls], item.item_id
            yield (
                self._sensor(frame, f),
                {
                    "frame_index": f,
                    "timestamp_s": t,
                    "label": label,
                    "item_id": item_id,
                    "occluded": occluded,
                },
            )

    def _half(self, item: _Item) -> float:
        """Half the sprite size: beyond this distance an item leaves no trace."""
        return 1.1 * item.radius + 7 * self.s + 4

    def _blend(self, frame: np.ndarray, sp: _Sprite, x: float, y: float):
        S = sp.alpha.shape[0]
        x0, y0 = int(round(x)) - S // 2, int(round(y)) - S // 2
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + S, self.W), min(y0 + S, self.H)
        if fx0 >= fx1 or fy0 >= fy1:
            return None
        sx0, sy0 = fx0 - x0, fy0 - y0
        sx1, sy1 = sx0 + fx1 - fx0, sy0 + fy1 - fy0
        roi = frame[fy0:fy1, fx0:fx1]
        roi *= (1.0 - sp.shadow[sy0:sy1, sx0:sx1])[..., None]
        roi *= (1.0 - sp.alpha[sy0:sy1, sx0:sx1])[..., None]
        roi += sp.prem[sy0:sy1, sx0:sx1]
        return (fy0, fy1, fx0, fx1), (sy0, sy1, sx0, sx1)

    def _sensor(self, frame: np.ndarray, f: int) -> np.ndarray:
        """Lighting, optics and sensor noise: float scene -> uint8 image."""
        cond, s = self.cond, self.H / _REF_H
        frame *= self.illum
        frame *= self.gain[f]
        if cond.blur > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), cond.blur * s)
        if self.dirt is not None:
            smeared = cv2.GaussianBlur(frame, (0, 0), 5.0 * s)
            frame += self.dirt * (smeared - frame + 22.0)
        k, oy, ox = self.noise_pick[f]
        frame += cond.noise_sigma * self.noise_bank[k, oy : oy + self.H, ox : ox + self.W]
        frame += 0.5
        np.clip(frame, 0, 255, out=frame)
        return frame.astype(np.uint8)


# --------------------------------------------------------------------------- encoding


def _resolve(conditions: Conditions | str) -> Conditions:
    if isinstance(conditions, Conditions):
        return conditions
    try:
        return CONDITIONS[conditions]
    except KeyError:
        raise ValueError(
            f"unknown conditions {conditions!r}; known: {sorted(CONDITIONS)}"
        ) from None


def _encode(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int,
    size: tuple[int, int],
    codec: str = "libx264",
    audio_seconds: float | None = None,
    container_options: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Encode BGR uint8 frames to ``path`` (mp4), byte-deterministically.

    libx264 is run single-threaded and with ``mbtree=0``: in this build, macroblock-tree
    rate control reads memory whose content depends on earlier heap activity, so the
    same frames encoded twice in one process could give different bitstreams.
    """
    W, H = size
    with av.open(str(path), mode="w", format="mp4", options=dict(container_options or {})) as out:
        for k, val in (metadata or {}).items():
            out.metadata[k] = val
        opts = (
            {"preset": "veryfast", "crf": "22", "x264-params": "mbtree=0"}
            if codec == "libx264"
            else {}
        )
        vs = out.add_stream(codec, rate=fps, options=opts)
        assert isinstance(vs, VideoStream)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.codec_context.thread_count = 1
        vs.codec_context.gop_size = 2 * fps
        ast = None
        if audio_seconds is not None:
            ast = out.add_stream("aac", rate=_AUDIO_RATE, layout="mono")
            assert isinstance(ast, AudioStream)
            ast.codec_context.thread_count = 1
        n_audio = int(round((audio_seconds or 0) * _AUDIO_RATE))
        sent = 0
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(vf))
            while ast is not None and sent < n_audio and sent <= (i + 1) * _AUDIO_RATE / fps:
                n = min(1024, n_audio - sent)
                t = (sent + np.arange(n)) / _AUDIO_RATE
                hum = 0.2 * np.sin(2 * np.pi * 120 * t) + 0.06 * np.sin(2 * np.pi * 240 * t)
                af = av.AudioFrame.from_ndarray(
                    hum.astype(np.float32)[None, :], format="fltp", layout="mono"
                )
                af.sample_rate, af.pts, af.time_base = _AUDIO_RATE, sent, Fraction(1, _AUDIO_RATE)
                out.mux(ast.encode(af))
                sent += n
        out.mux(vs.encode(None))
        if ast is not None:
            out.mux(ast.encode(None))


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def _publish(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` atomically, leaving ``path`` untouched if identical."""
    if (
        path.exists()
        and path.stat().st_size == tmp.stat().st_size
        and _sha256(path) == _sha256(tmp)
    ):
        tmp.unlink()
    else:
        os.replace(tmp, path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _truth_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "frame_index": pl.Int64,
            "timestamp_s": pl.Float64,
            "label": pl.Utf8,
            "item_id": pl.Int64,
            "occluded": pl.Boolean,
        },
    )


def render_video(
    path: str | os.PathLike[str],
    *,
    seed: int,
    camera_id: str,
    seconds: float = 20.0,
    fps: int = 15,
    size: tuple[int, int] = (320, 240),
    conditions: Conditions | str = "nominal",
    audio: bool = False,
) -> pl.DataFrame:
    """Render one conveyor-belt video to an H.264 ``.mp4`` and return its ground truth.

    Parameters
    ----------
    path : str or PathLike
        Output file; written atomically (temp file + rename) and left untouched when an
        identical file is already there, so reruns do not change its mtime.
    seed : int
        Non-negative seed; with ``camera_id`` it fixes the item sequence, textures and
        noise. ``conditions`` change only the look, never which items pass when.
    camera_id : str
        Camera name; fixes a small per-camera offset, zoom, colour tint and vignette.
    seconds, fps : float, int
        Duration and frame rate; the video has ``round(seconds * fps)`` frames (>= 1).
    size : tuple of int
        (width, height); both must be even (yuv420p H.264).
    conditions : Conditions or str
        A :class:`Conditions` or a key of ``CONDITIONS``.
    audio : bool
        Add a mono AAC track (a 120 Hz motor hum) of the same duration.

    Returns
    -------
    polars.DataFrame
        One row per frame: ``frame_index`` (Int64), ``timestamp_s`` (Float64), ``label``
        (Utf8, one of ``CLASSES``, null when no item centre is in the central window),
        ``item_id`` (Int64, null likewise; unique within the video) and ``occluded``
        (Boolean: a gloved hand covers at least 5 % of an item in the frame).
    """
    W, H = size
    if W % 2 or H % 2 or W < 16 or H < 16:
        raise ValueError(f"size must be even and at least 16x16 for yuv420p H.264, got {size}")
    if fps <= 0 or seconds <= 0:
        raise ValueError("fps and seconds must be positive")
    cond = _resolve(conditions)
    scene = _Scene(seed=seed, camera_id=camera_id, seconds=seconds, fps=fps, size=(W, H), cond=cond)
    rows: list[dict] = []

    def images() -> Iterator[np.ndarray]:
        for img, row in scene.frames():
            rows.append(row)
            yield img

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    meta = {"comment": f"lensline synthetic seed={seed} camera={camera_id} conditions={cond.name}"}
    try:
        _encode(
            tmp,
            images(),
            fps=fps,
            size=(W, H),
            audio_seconds=scene.n_frames / fps if audio else None,
            metadata=meta,
        )
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _truth_frame(rows)


# --------------------------------------------------------------------------- annotations


def make_annotations(
    truth: pl.DataFrame,
    *,
    video: str,
    seed: int,
    annotators: Mapping[str, float] = ANNOTATORS,
) -> pl.DataFrame:
    """Simulate annotators labelling every labelled frame of one video, with flips.

    Each annotator independently flips a frame's label with its rate. Errors go to
    another class chosen uniformly, except for annotators whose rate is at least
    ``SYSTEMATIC_RATE``: ``SYSTEMATIC_SHARE`` of their errors go to the class's
    look-alike (dent <-> scratch, good <-> discoloration).

    Parameters
    ----------
    truth : polars.DataFrame
        Needs ``frame_index`` and ``label`` (null rows are skipped).
    video : str
        Value of the ``video`` column (a video id or file name); also seeds the flips.
    seed : int
        Non-negative seed; same inputs give the same output.
    annotators : Mapping[str, float]
        Annotator name -> flip rate in [0, 1].

    Returns
    -------
    polars.DataFrame
        Columns ``video``, ``frame_index`` (Int64), ``label``, ``annotator``; sorted by
        frame then annotator (in mapping order); ``n_labelled * len(annotators)`` rows.
    """
    lab = truth.filter(pl.col("label").is_not_null()).sort("frame_index")
    frames = lab["frame_index"].cast(pl.Int64).to_numpy()
    idx = {c: i for i, c in enumerate(CLASSES)}
    y = np.array([idx[c] for c in lab["label"].to_list()], dtype=np.int64)
    n, k = len(y), len(CLASSES)
    names = list(annotators)
    given = np.empty((n, len(names)), dtype=np.int64)
    for j, name in enumerate(names):
        rate = float(annotators[name])
        conf = (np.ones((k, k)) - np.eye(k)) / (k - 1)
        if rate >= SYSTEMATIC_RATE:
            conf *= 1 - SYSTEMATIC_SHARE
            for a, b in _LOOK_ALIKE.items():
                conf[idx[a], idx[b]] += SYSTEMATIC_SHARE
        rng = np.random.default_rng(np.random.SeedSequence([seed, _crc(video), _crc(name)]))
        flip = rng.random(n) < rate
        u = rng.random(n)
        wrong = (u[:, None] > np.cumsum(conf[y], axis=1)).sum(axis=1).clip(max=k - 1)
        given[:, j] = np.where(flip, wrong, y)
    return pl.DataFrame(
        {
            "video": [video] * (n * len(names)),
            "frame_index": np.repeat(frames, len(names)),
            "label": [CLASSES[i] for i in given.reshape(-1)],
            "annotator": names * n,
        },
        schema={"video": pl.Utf8, "frame_index": pl.Int64, "label": pl.Utf8, "annotator": pl.Utf8},
    )


# --------------------------------------------------------------------------- demo set


@dataclass(frozen=True)
class DemoSet:
    """What :func:`make_demo_set` wrote.

    Attributes
    ----------
    videos : list[Path]
        The ``.mp4`` files, camera by camera.
    labels_csv : Path
        ``landing/labels/annotations.csv``.
    truth : polars.DataFrame
        Ground truth of all videos: ``video_id``, ``frame_index``, ``label``, ``item_id``,
        ``occluded``, ``camera_id``, ``file``, ``timestamp_s``, ``conditions``.
    """

    videos: list[Path]
    labels_csv: Path
    truth: pl.DataFrame


def _write_csv(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    try:
        df.write_csv(tmp)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_demo_set(
    landing: Path,
    *,
    seed: int = 0,
    cameras: int = 3,
    videos_per_camera: int = 2,
    seconds: float = 20.0,
    fps: int = 15,
    size: tuple[int, int] = (320, 240),
    conditions: Conditions | str = "nominal",
    truth_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoSet:
    """Write a small landing zone: videos from several cameras and noisy annotations.

    Layout: ``landing/videos/<camera_id>/line_NNNN.mp4`` (cameras ``cam1``, ``cam2``, ...)
    and ``landing/labels/annotations.csv`` (``video,frame_index,label,annotator`` with
    ``video`` = :func:`video_id_for`). Idempotent: a rerun with the same arguments leaves
    identical files untouched (same bytes, same mtime); nothing is ever deleted.

    Parameters
    ----------
    landing : Path
        Landing-zone root directory (created if missing).
    seed : int
        Base seed; each video gets its own seed derived from (seed, camera, video).
    cameras, videos_per_camera : int
        How many cameras and videos per camera.
    seconds, fps, size, conditions
        As in :func:`render_video`, for every video.
    truth_path : Path, optional
        Where to write the ground truth as CSV (nulls as empty fields).
    progress : callable, optional
        Called with one human-readable line per video written.

    Returns
    -------
    DemoSet
    """
    landing = Path(landing)
    cond = _resolve(conditions)
    videos: list[Path] = []
    truths, anns = [], []
    for c in range(cameras):
        camera_id = f"cam{c + 1}"
        for v in range(videos_per_camera):
            file = f"line_{v + 1:04d}.mp4"
            vseed = int(np.random.SeedSequence([seed, c, v]).generate_state(1)[0])
            path = landing / "videos" / camera_id / file
            truth = render_video(
                path,
                seed=vseed,
                camera_id=camera_id,
                seconds=seconds,
                fps=fps,
                size=size,
                conditions=cond,
            )
            vid = video_id_for(camera_id, file)
            videos.append(path)
            truths.append(
                truth.select(
                    pl.lit(vid).alias("video_id"),
                    "frame_index",
                    "label",
                    "item_id",
                    "occluded",
                    pl.lit(camera_id).alias("camera_id"),
                    pl.lit(file).alias("file"),
                    "timestamp_s",
                    pl.lit(cond.name).alias("conditions"),
                )
            )
            anns.append(make_annotations(truth, video=vid, seed=vseed))
            if progress is not None:
                n_lab = truth["label"].is_not_null().sum()
                progress(f"{camera_id}/{file}: {truth.height} frames, {n_lab} labelled")
    labels_csv = landing / "labels" / "annotations.csv"
    _write_csv(pl.concat(anns), labels_csv)
    truth_all = pl.concat(truths)
    if truth_path is not None:
        _write_csv(truth_all, Path(truth_path))
    return DemoSet(videos=videos, labels_csv=labels_csv, truth=truth_all)


# --------------------------------------------------------------------------- bad inputs


def write_bad_videos(dir: Path, *, seed: int) -> dict[str, Path]:
    """Write inputs that ingestion must survive; return name -> path.

    ==============  ====================================================================
    name            file and property
    ==============  ====================================================================
    zero_byte       ``zero_byte.mp4``: empty.
    truncated       ``truncated.mp4``: H.264 mp4 with ``moov`` at the front (faststart),
                    cut to 60 % of its bytes: opens, advertises 45 frames, decodes fewer.
    random          ``random.mp4``: 48 KiB of random bytes; FFmpeg cannot open it.
    text            ``text.mp4``: a short text file; FFmpeg cannot open it.
    unsupported     ``unsupported.mp4``: a valid mp4 whose video sample entry carries the
                    unknown fourcc ``LNSX`` (patched from ``avc1``): it demuxes (one video
                    stream, packets readable) but no decoder exists.
    one_frame       ``one_frame.mp4``: H.264, exactly one frame.
    odd_res         ``odd_res.mp4``: 333x197. libx264 refuses odd sizes in yuv420p, so this
                    is MPEG-4 Part 2 (``mpeg4``/mp4v) yuv420p, which allows them.
    with_audio      ``with_audio.mp4``: H.264 video (2 s, 30 frames) plus an AAC track.
    ==============  ====================================================================

    Parameters
    ----------
    dir : Path
        Output directory (created if missing).
    seed : int
        Non-negative seed; the files are byte-identical for the same seed.
    """
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    p = {
        k: out / f"{k}.mp4"
        for k in (
            "zero_byte",
            "truncated",
            "random",
            "text",
            "unsupported",
            "one_frame",
            "odd_res",
            "with_audio",
        )
    }
    rng = np.random.default_rng(np.random.SeedSequence([seed, _crc("bad_videos")]))
    small = (160, 120)

    p["zero_byte"].write_bytes(b"")
    p["random"].write_bytes(rng.bytes(48 * 1024))
    p["text"].write_text("This is not a video.\nframe_index,label\n0,good\n" * 20)

    scene = _Scene(
        seed=seed, camera_id="bad", seconds=3.0, fps=15, size=small, cond=CONDITIONS["nominal"]
    )
    full = _tmp_for(p["truncated"])
    try:
        _encode(
            full,
            (img for img, _ in scene.frames()),
            fps=15,
            size=small,
            container_options={"movflags": "faststart"},
        )
        data = full.read_bytes()
    finally:
        full.unlink(missing_ok=True)
    p["truncated"].write_bytes(data[: int(len(data) * 0.6)])

    scene = _Scene(
        seed=seed, camera_id="bad", seconds=1.0, fps=15, size=small, cond=CONDITIONS["nominal"]
    )
    tmp = _tmp_for(p["unsupported"])
    try:
        _encode(tmp, (img for img, _ in scene.frames()), fps=15, size=small)
        raw = bytearray(tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    at = raw.find(b"avc1", raw.find(b"stsd"))
    raw[at : at + 4] = b"LNSX"
    p["unsupported"].write_bytes(bytes(raw))

    render_video(p["one_frame"], seed=seed, camera_id="bad", seconds=1 / 15, fps=15, size=small)
    scene = _Scene(
        seed=seed, camera_id="bad", seconds=1.0, fps=15, size=(333, 197), cond=CONDITIONS["nominal"]
    )
    tmp = _tmp_for(p["odd_res"])
    try:
        _encode(tmp, (img for img, _ in scene.frames()), fps=15, size=(333, 197), codec="mpeg4")
        _publish(tmp, p["odd_res"])
    finally:
        tmp.unlink(missing_ok=True)
    render_video(
        p["with_audio"], seed=seed, camera_id="bad", seconds=2.0, fps=15, size=small, audio=True
    )
    return p

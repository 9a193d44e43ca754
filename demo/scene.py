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

The frame-by-frame scene lives here (:class:`Scene`); the items on the belt are in
:mod:`demo.items`, the operator's hand in :mod:`demo.hands`, encoding in :mod:`demo.encode`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from demo.conditions import Conditions
from demo.hands import hand_layer, schedule_hands
from demo.items import CLASS_PROBS, CLASSES, Item, Sprite, render_sprite
from demo.noise import crc, smooth_noise

__all__ = ["Scene"]

_REF_H = 240.0  # reference frame height for all lengths below
_BELT_SPEED = 1.25  # frame widths per second
_WINDOW = (0.20, 0.25)  # half-size of the central label window, as fractions of (W, H)
_ITEM_GAP_S = (1.0, 1.5)
_ITEM_RADIUS = 36.0  # reference px


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
        rng = np.random.default_rng(crc(camera_id))
        return cls(
            offset=(float(rng.uniform(-6, 6)), float(rng.uniform(-5, 5))),
            zoom=float(rng.uniform(0.94, 1.06)),
            tint=tuple(float(x) for x in 1.0 + rng.uniform(-0.05, 0.05, 3)),  # type: ignore[arg-type]
            vignette=float(rng.uniform(0.10, 0.22)),
            dirt_seed=int(rng.integers(2**32)),
        )


class Scene:
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
            for x in np.random.SeedSequence([seed, crc(camera_id)]).spawn(4)
        )

        # items: one enters every 1.0-1.5 s; none centred at the same time
        self.items: list[Item] = []
        t = float(r_sched.uniform(-0.7, 0.2))
        while t < seconds:
            cls = int(r_sched.choice(len(CLASSES), p=CLASS_PROBS))
            radius = _ITEM_RADIUS * unit * r_sched.uniform(0.92, 1.08)
            y_off = float(np.clip(r_sched.normal(0, 6), -14, 14)) * unit
            self.items.append(
                Item(
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
        self.hands = schedule_hands(
            r_hand,
            seconds=seconds,
            rate=cond.hand_rate,
            fps=fps,
            n_frames=self.n_frames,
            size=(W, H),
            centre_times=[it.t_enter + (W / 2 + it.radius) / self.v for it in self.items],
        )

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
            + 4 * smooth_noise(rng, (H, W), 2 * s, 2 * s)[..., None]
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
            bg[inside] += 3 * smooth_noise(rng, (int(inside.sum()), W), 6 * s, 0.5)[..., None]
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
            + 5 * smooth_noise(rng, (hb, K), 3 * s, 0.6 * s)
            + 2.5 * smooth_noise(rng, (hb, K), 0.5, 0.5)
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

    # ----------------------------------------------------------------- per frame
    def item_x(self, item: Item, t: float) -> float:
        return self.cx - self.W / 2 - item.radius + self.v * (t - item.t_enter)

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
                    item.sprite = render_sprite(item, self.s)
                visible.append((item, self._blend(frame, item.sprite, x, item.y)))

            occluded = False
            while hand is not None and f >= hand.start + hand.frames:
                hand = next(hands, None)
            layer = (
                hand_layer(
                    hand, f, size=(self.W, self.H), scale=self.s, glove_color=self.cond.glove_color
                )
                if hand is not None
                else None
            )
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

    def _half(self, item: Item) -> float:
        """Half the sprite size: beyond this distance an item leaves no trace."""
        return 1.1 * item.radius + 7 * self.s + 4

    def _blend(self, frame: np.ndarray, sp: Sprite, x: float, y: float):
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

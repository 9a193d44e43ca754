"""The operator's gloved hand: when it reaches into the picture and how it is drawn.

It knows nothing of :class:`demo.scene.Scene`: the scene passes what a hand needs (frame
size, scale, glove colour, when its items pass the centre), so the import runs one way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Hand", "hand_layer", "schedule_hands"]


@dataclass(frozen=True)
class Hand:
    start: int  # first frame
    frames: int
    from_top: bool
    x: float  # image px where the arm crosses the edge
    tilt: float  # radians
    reach: float  # image px, fingertip depth at the peak


def schedule_hands(
    rng: np.random.Generator,
    *,
    seconds: float,
    rate: float,
    fps: int,
    n_frames: int,
    size: tuple[int, int],
    centre_times: Sequence[float],
) -> list[Hand]:
    """Draw the hand appearances of one video (Poisson, ``rate`` per second).

    Most reach for an item as it passes the centre (``centre_times``: seconds, one per item
    on the belt); overlapping appearances are dropped, so at most one hand is in the picture
    at a time. ``size`` is the frame's (W, H) in pixels.
    """
    W, H = size
    candidates: list[Hand] = []
    for _ in range(int(rng.poisson(rate * seconds))):
        dur = max(3, int(round(rng.uniform(0.35, 0.6) * fps)))
        if centre_times and rng.random() < 0.6:  # reach for an item as it passes the centre
            t_mid = centre_times[int(rng.integers(len(centre_times)))] + rng.normal(0, 0.08)
            start = int(round(t_mid * fps)) - dur // 2
        else:
            start = int(rng.integers(0, n_frames))
        hand = Hand(
            start=start,
            frames=dur,
            from_top=bool(rng.random() < 0.5),
            x=W / 2 + rng.normal(0, 0.1 * W),
            tilt=float(rng.uniform(-0.3, 0.3)),
            reach=float(rng.uniform(0.42, 0.58) * H),
        )
        if 0 <= start < n_frames:
            candidates.append(hand)
    hands: list[Hand] = []
    for hand in sorted(candidates, key=lambda h: h.start):
        if not hands or hand.start >= hands[-1].start + hands[-1].frames:
            hands.append(hand)
    return hands


def hand_layer(
    hand: Hand,
    f: int,
    *,
    size: tuple[int, int],
    scale: float,
    glove_color: Sequence[float],
) -> tuple[np.ndarray, np.ndarray] | None:
    """The hand in frame ``f``: (premultiplied BGR float32 (H, W, 3), alpha (H, W)), or None.

    ``size`` is the frame's (W, H), ``scale`` image pixels per reference pixel, ``glove_color``
    BGR 0..255.
    """
    p = (f - hand.start + 0.5) / hand.frames
    if not 0.0 < p < 1.0:
        return None
    (W, H), s = size, scale
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
    color = np.array(glove_color, np.float32)[None, None, :] * shade[..., None] * a_g[..., None]
    color += (
        np.array([70, 55, 50], np.float32)
        * (0.8 + 0.3 * cv2.GaussianBlur(a_s, (0, 0), 4 * s))[..., None]
        * a_s[..., None]
    )
    return color, np.clip(a_g + a_s, 0, 1)

"""One demo video: render a :class:`~demo.scene.Scene`, encode it, return its ground truth."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from demo.conditions import Conditions, resolve_conditions
from demo.encode import encode_mp4, publish, tmp_for
from demo.scene import Scene

__all__ = ["render_video"]


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
    cond = resolve_conditions(conditions)
    scene = Scene(seed=seed, camera_id=camera_id, seconds=seconds, fps=fps, size=(W, H), cond=cond)
    rows: list[dict] = []

    def images() -> Iterator[np.ndarray]:
        for img, row in scene.frames():
            rows.append(row)
            yield img

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_for(path)
    meta = {"comment": f"lensline synthetic seed={seed} camera={camera_id} conditions={cond.name}"}
    try:
        encode_mp4(
            tmp,
            images(),
            fps=fps,
            size=(W, H),
            audio_seconds=scene.n_frames / fps if audio else None,
            metadata=meta,
        )
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _truth_frame(rows)

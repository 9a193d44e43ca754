"""The demo landing zone: videos from several cameras and their noisy annotations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from data_quality.video import video_id_for
from demo.annotators import make_annotations
from demo.conditions import Conditions, resolve_conditions
from demo.encode import write_csv
from demo.render import render_video

__all__ = ["DemoSet", "make_demo_set"]


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
    cond = resolve_conditions(conditions)
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
    write_csv(pl.concat(anns), labels_csv)
    truth_all = pl.concat(truths)
    if truth_path is not None:
        write_csv(truth_all, Path(truth_path))
    return DemoSet(videos=videos, labels_csv=labels_csv, truth=truth_all)

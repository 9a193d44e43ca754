"""Inputs of ``lensline-edge``: which streams an input path holds, and their decoded frames.

A file is one video; a folder holds videos (searched recursively; the camera id of a video is
its parent folder's name) or, failing that, images (one stream named after the folder;
``frame_index`` from the digits in ``000123.jpg``, else the sorted order). Videos are decoded
with PyAV through :mod:`edge_export.video`, the decode loop ingestion uses (FFmpeg frame
threads); :func:`prefetch` runs a frame iterator on a worker thread a
few items ahead of the consumer.

Imports numpy, OpenCV and PyAV (inside the functions that decode) only.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_export.preprocess import PreprocessError
from edge_export.video import VideoError, decode_frames, open_video, video_id_for, video_stream

__all__ = [
    "IMAGE_EXTS",
    "VIDEO_EXTS",
    "DecodeError",
    "InputError",
    "Source",
    "discover",
    "iter_images",
    "iter_video",
    "prefetch",
]

VIDEO_EXTS = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts", ".mpg", ".mpeg"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
_DIGITS = re.compile(r"(\d+)(?!.*\d)")


class InputError(ValueError):
    """The runner's input cannot be used at all (missing, empty, class maps disagree)."""


class DecodeError(RuntimeError):
    """One video or image could not be decoded (the run goes on with the others)."""


@dataclass(frozen=True)
class Source:
    """One stream to inspect: a video file, or an ordered folder of images."""

    kind: Literal["video", "images"]
    path: Path
    video: str
    camera_id: str | None
    images: tuple[tuple[int, Path], ...] = ()


def _video_id(camera_id: str | None, path: Path) -> str:
    return video_id_for(camera_id, path.name) if camera_id else path.stem


def _image_frames(paths: Sequence[Path]) -> tuple[tuple[int, Path], ...]:
    ordered = sorted(paths)
    numbers = [_DIGITS.search(p.stem) for p in ordered]
    if all(numbers):
        indices = [int(m.group(1)) for m in numbers if m]
        if len(set(indices)) == len(indices):
            return tuple(sorted(zip(indices, ordered, strict=True)))
    return tuple(enumerate(ordered))


def discover(input_path: str | os.PathLike, *, camera: str | None = None) -> list[Source]:
    """The streams in ``input_path``; :class:`InputError` when there is nothing to inspect.

    A file is one video. A folder: every video below it (recursive, sorted), else its images
    as one stream (video = folder name; camera = ``camera``, else the part of the folder name
    before ``__``, else the parent folder's name).
    """
    path = Path(input_path)
    if path.is_file():
        cam = camera or path.parent.name or None
        return [Source("video", path, _video_id(cam, path), cam)]
    if not path.is_dir():
        raise InputError(f"input {path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXTS]
    if videos:
        return [
            Source("video", p, _video_id(camera or p.parent.name, p), camera or p.parent.name)
            for p in videos
        ]
    images = [p for p in files if p.parent == path and p.suffix.lower() in IMAGE_EXTS]
    if not images:
        raise InputError(
            f"input folder {path} holds no videos ({', '.join(sorted(VIDEO_EXTS))}) and no "
            f"images ({', '.join(sorted(IMAGE_EXTS))})"
        )
    name = path.resolve().name
    cam = camera or (name.split("__", 1)[0] if "__" in name else path.resolve().parent.name)
    return [Source("images", path, name, cam or None, _image_frames(images))]


def iter_video(path: Path, *, every: int = 1) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """Decode ``path`` with PyAV: ``(frame_index, timestamp_s, bgr (H, W, 3) uint8)`` of every
    ``every``-th frame, through the decode loop ingestion uses (:mod:`edge_export.video`).
    :class:`DecodeError` naming the file when it cannot be decoded."""
    try:
        container = open_video(path)
    except VideoError as e:
        raise DecodeError(f"{path}: {e}") from None
    with container:
        stream = video_stream(container)
        if stream is None:
            raise DecodeError(f"{path}: no video stream")
        decoded = 0
        try:
            for index, ts, frame in decode_frames(container, stream):
                decoded = index + 1
                if index % every == 0:
                    yield index, round(ts, 6), frame.to_ndarray(format="bgr24")
        except VideoError as e:
            raise DecodeError(f"{path}: {e}") from None
        if decoded == 0:
            raise DecodeError(f"{path}: no decodable frames")


def iter_images(
    source: Source, *, every: int = 1, errors: list[str] | None = None
) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """Decode an image stream; undecodable files go to ``errors`` (named) and are skipped."""
    from edge_export.preprocess import decode_image

    for n, (index, path) in enumerate(source.images):
        if n % every:
            continue
        try:
            yield index, None, decode_image(path)
        except (PreprocessError, OSError) as e:
            if errors is None:
                raise DecodeError(str(e)) from None
            errors.append(f"{path}: cannot decode image ({e})")


_END = object()


def prefetch(make: Callable[[], Iterator[Any]], depth: int) -> Iterator[Any]:
    """Run the iterator ``make()`` on a worker thread, ``depth`` items ahead; re-raise its errors."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in make():
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(e)

    worker = threading.Thread(target=work, name="lensline-edge-decode", daemon=True)
    worker.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)

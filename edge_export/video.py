"""The one video decode loop (PyAV), shared by ingestion and the edge runner.

``data_quality.video.scan_video`` (the lake's integrity scan and frame sampling) and
``edge_export.runner.sources.iter_video`` (``lensline-edge``) both open a file with
:func:`open_video`, pick the stream with :func:`video_stream` and read it with
:func:`decode_frames`, so the frames a model is trained on and the frames it inspects on the
line come out of the same code. Also the video naming both sides share (:func:`video_id_for`).

Imports PyAV (inside the functions) and the standard library only: the standalone runner
imports it without torch, Dagster or polars.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoError",
    "decode_frames",
    "ffmpeg_reason",
    "open_video",
    "stream_fps",
    "video_id_for",
    "video_stream",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm")


class VideoError(RuntimeError):
    """A video that cannot be opened or decoded; ``frames``: frames decoded before the error."""

    def __init__(self, message: str, *, frames: int = 0):
        super().__init__(message)
        self.frames = frames


def video_id_for(camera_id: str, file_name: str) -> str:
    """Stable, injective partition key for a video: ``cam1`` + ``line_0001.mp4`` -> ``cam1__line_0001``.

    Characters outside ``[A-Za-z0-9_.-]`` become ``_``; whenever that changes the name, the
    first 8 hex digits of the sha256 of the original (NFC-normalised) ``camera__stem`` are
    appended, so ``line ü 1`` and ``line ä 1`` get different ids while already clean names keep
    the id they always had. Two files with one stem (``a.mp4``, ``a.mov``) still share an id:
    the landing zone reports that as a collision.

    Examples
    --------
    >>> video_id_for("cam1", "line_0001.mp4")
    'cam1__line_0001'
    >>> video_id_for("cam 1", "line #1.mp4")
    'cam_1__line__1-e1ddc256'
    """
    raw = unicodedata.normalize("NFC", f"{camera_id}__{Path(file_name).stem}")
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", raw)
    if clean == raw:
        return clean
    return f"{clean}-{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:8]}"


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's message for ``exc`` on one line."""
    text = getattr(exc, "strerror", None) or str(exc)
    return re.sub(r"\s+", " ", str(text)).strip() or type(exc).__name__


def open_video(path: str | Path) -> Any:
    """``av.open(path)`` (an input container, a context manager); :class:`VideoError` with
    FFmpeg's reason when it is not a readable container."""
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"not a readable video container ({ffmpeg_reason(exc)})") from None


def video_stream(container: Any, *, threads: bool = True) -> Any:
    """The first video stream of ``container`` (``None`` when it has none); ``threads`` lets
    FFmpeg decode it with frame and slice threads."""
    if not container.streams.video:
        return None
    stream = container.streams.video[0]
    if threads and stream.codec_context is not None:
        stream.thread_type = "AUTO"
    return stream


def stream_fps(stream: Any) -> float | None:
    """Frames per second of ``stream``: average, else guessed, else base rate; ``None`` unknown."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


def decode_frames(container: Any, stream: Any) -> Iterator[tuple[int, float, Any]]:
    """Decode every frame of ``stream``: ``(frame_index, timestamp_s, av.VideoFrame)``.

    ``timestamp_s`` is the frame's presentation time, or ``frame_index / fps`` when it has
    none. Frames are not converted: call ``frame.to_ndarray(format="bgr24")`` on the ones to
    keep (BGR uint8 (H, W, 3)), on any thread. Undecodable data raises :class:`VideoError`
    with ``frames`` decoded so far.
    """
    import av

    fps = stream_fps(stream)
    dt = 1.0 / fps if fps else 0.0
    index = 0
    try:
        for frame in container.decode(stream):
            time = frame.time
            yield index, float(time) if time is not None else index * dt, frame
            index += 1
    except av.FFmpegError as exc:
        raise VideoError(
            f"undecodable data after frame {index} ({ffmpeg_reason(exc)})", frames=index
        ) from None

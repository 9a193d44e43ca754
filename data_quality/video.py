"""Video integrity and frame sampling in one decode pass (PyAV).

``scan_video`` opens a file, checksums it, probes the container, decodes *every* frame to prove
the file is intact (truncation, undecodable packets, timestamp gaps) and hands the frames worth
keeping to a ``sink`` while it goes, so a video is decoded exactly once per ingestion. The
decode loop and the video naming are :mod:`edge_export.video`'s, the ones the edge runner uses.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_export.video import (
    VIDEO_SUFFIXES,
    VideoError,
    decode_frames,
    open_video,
    stream_fps,
    video_id_for,
    video_stream,
)

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoReport",
    "sample_stride",
    "scan_video",
    "sha256_file",
    "video_id_for",
]

#: A frame is kept when ``sink`` gets it: ``sink(frame_index, timestamp_s, bgr_image)``
#: (or the ``av.VideoFrame`` itself with ``lazy_sink=True``).
FrameSink = Callable[[int, float, Any], None]


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sample_stride(fps: float, *, sample_fps: float | None, stride: int | None) -> int:
    """Frames between kept frames: an explicit ``stride`` wins, else ``fps / sample_fps``."""
    if stride is not None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        return stride
    if not sample_fps or sample_fps <= 0 or not fps:
        return 1
    return max(1, round(fps / sample_fps))


@dataclass
class VideoReport:
    """What one scan found; ``status`` is ``ok``, ``empty``, ``unreadable``, ``unsupported`` or ``corrupt``."""

    file: str
    sha256: str
    size_bytes: int
    status: str = "ok"
    error: str | None = None
    container: str | None = None
    codec: str | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    frame_count: int = 0
    declared_frame_count: int | None = None
    duration_s: float | None = None
    has_audio: bool = False
    timestamp_gaps: int = 0
    max_gap_s: float = 0.0
    kept_frames: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, status: str, message: str) -> VideoReport:
        self.status = status
        self.problems.append(message)
        self.error = f"{self.file}: " + "; ".join(self.problems)
        return self

    def as_row(self) -> dict:
        row = asdict(self)
        row.pop("problems")
        return row


def scan_video(
    path: Path,
    *,
    name: str | None = None,
    sample_fps: float | None = 2.0,
    stride: int | None = None,
    keep_frames: Collection[int] = (),
    sink: FrameSink | None = None,
    threads: bool = True,
    lazy_sink: bool = False,
) -> VideoReport:
    """Checksum, probe and fully decode ``path``; pass sampled frames to ``sink``.

    Parameters
    ----------
    path
        Local video file.
    name
        How errors name the file (defaults to ``path``); use the landing-zone URI.
    sample_fps, stride
        Keep every ``stride``-th frame, or about ``sample_fps`` frames per second.
    keep_frames
        Frame indices always kept whatever the stride (frames that labels refer to).
    sink
        Called as ``sink(frame_index, timestamp_s, image)`` with ``image`` of shape (H, W, 3),
        uint8, BGR, for every kept frame, in order.
    threads
        Let FFmpeg decode with frame and slice threads.
    lazy_sink
        Hand ``sink`` the decoded ``av.VideoFrame`` instead of an array, so the colour
        conversion runs on the sink's worker threads (``FrameEncoder``), off the decode loop.

    Returns
    -------
    VideoReport
        Never raises for bad input: problems go to ``status`` and ``error``.
    """
    path = Path(path)
    label = name or str(path)
    size = path.stat().st_size if path.exists() else 0
    report = VideoReport(file=label, sha256="", size_bytes=size)
    if not path.exists():
        return report.fail("unreadable", "file does not exist")
    if size == 0:
        report.sha256 = sha256_file(path)
        return report.fail("empty", "zero-byte file")
    # the checksum reads the file on its own thread while it is decoded (hashlib releases the GIL)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lensline-sha256") as pool:
        digest = pool.submit(sha256_file, path)
        try:
            _decode_all(path, report, sample_fps, stride, keep_frames, sink, threads, lazy_sink)
        finally:
            report.sha256 = digest.result()
    return report


def _decode_all(
    path: Path,
    report: VideoReport,
    sample_fps: float | None,
    stride: int | None,
    keep_frames: Collection[int],
    sink: FrameSink | None,
    threads: bool,
    lazy_sink: bool,
) -> VideoReport:
    """Probe and decode every frame of ``path`` into ``report`` (``scan_video`` without the checksum)."""
    try:
        container = open_video(path)
    except VideoError as exc:
        return report.fail("unreadable", str(exc))

    with container:
        report.container = container.format.name
        if report.container.endswith("_pipe") or report.container == "image2":
            return report.fail(
                "unsupported", f"an image ({report.container}), not a video container"
            )
        report.has_audio = bool(container.streams.audio)
        stream = video_stream(container, threads=threads)
        if stream is None:
            kinds: list[str] = sorted({str(s.type) for s in container.streams}) or ["none"]
            return report.fail(
                "unsupported", f"no video stream (streams found: {', '.join(kinds)})"
            )
        ctx = stream.codec_context
        report.codec = ctx.name if ctx else None
        if ctx is None:
            return report.fail("unsupported", "video stream has a codec FFmpeg cannot decode")
        report.fps = stream_fps(stream)
        report.width, report.height = ctx.width or None, ctx.height or None
        report.declared_frame_count = int(stream.frames) or None
        if stream.duration is not None and stream.time_base is not None:
            report.duration_s = float(stream.duration * stream.time_base)
        elif container.duration:
            report.duration_s = container.duration / 1_000_000

        step = sample_stride(report.fps or 0.0, sample_fps=sample_fps, stride=stride)
        wanted = set(keep_frames)
        expected_dt = 1.0 / report.fps if report.fps else None
        last_ts: float | None = None
        decoded = 0
        try:
            for index, ts, frame in decode_frames(container, stream):
                if last_ts is not None and expected_dt and ts - last_ts > 1.5 * expected_dt:
                    report.timestamp_gaps += 1
                    report.max_gap_s = max(report.max_gap_s, ts - last_ts)
                last_ts = ts
                if sink is not None and (index % step == 0 or index in wanted):
                    sink(index, ts, frame if lazy_sink else frame.to_ndarray(format="bgr24"))
                    report.kept_frames += 1
                decoded = index + 1
        except VideoError as exc:
            report.frame_count = exc.frames
            return report.fail("corrupt", str(exc))
        report.frame_count = decoded

    if report.frame_count == 0:
        return report.fail("corrupt", "no decodable frames")
    declared = report.declared_frame_count
    if declared and report.frame_count < declared:
        return report.fail(
            "corrupt",
            f"truncated: decoded {report.frame_count} of {declared} frames the container declares",
        )
    if report.duration_s is None and report.fps:
        report.duration_s = report.frame_count / report.fps
    missing = sorted(f for f in wanted if f >= report.frame_count)
    if missing:
        report.problems.append(
            f"labels refer to frames {missing[:5]} beyond the last frame {report.frame_count - 1}"
        )
    return report

"""Frames where the champion and its shadow disagree, kept as evidence: at most ``per_hour`` per
camera and hour, encoded as one H.264 capture video per camera and hour.

A closed capture lands in the lake's ``landing/videos/<camera>/`` like any other video
(``new_video_sensor`` ingests it, so its frames reach FiftyOne and the labelling queues), with a
JSON sidecar (same name, ``.json``) that maps each capture frame to the live frame's ``seq``,
capture time and both models' answers. What comes back from the line is ordinary input.

Encoded as it goes (one frame in memory at a time); a capture is written as ``.part`` and
renamed when closed, so the landing zone never sees half a video. :class:`CaptureClip` is the
writer (H.264 from BGR frames here; MJPEG from already-encoded JPEGs for the capture requests of
:mod:`edge_export.service.requests`, whose byte budgets need each frame's size before it is
written). PyAV only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CaptureClip", "DisagreementCapture"]


class CaptureClip:
    """One capture video being written: ``<path>.part`` until :meth:`close` renames it and
    writes its JSON sidecar (same name, ``.json``).

    ``codec``: ``"h264"`` encodes BGR frames (:meth:`add_bgr`); ``"mjpeg"`` muxes JPEG bytes as
    they are (:meth:`add_jpeg`), so a frame's size is known before it is written. ``fps`` is
    the nominal rate written into the container (the sidecar holds each frame's real time).
    """

    def __init__(self, path: Path, *, width: int, height: int, fps: int = 2, codec: str = "h264"):
        import av

        self.path, self.codec = path, codec
        self.part = path.with_name(path.name + ".part")
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.part), "w", format="mp4")
        if codec == "mjpeg":
            self.stream = self.container.add_stream("mjpeg", rate=fps)
            self.stream.width, self.stream.height = width, height
            self.stream.pix_fmt = "yuvj420p"
        else:
            self.stream = self.container.add_stream("libx264", rate=fps)
            self.stream.width, self.stream.height = width - width % 2, height - height % 2
            self.stream.pix_fmt = "yuv420p"
        self.rows: list[dict[str, Any]] = []
        self.payload_bytes = 0  # JPEG bytes muxed (mjpeg)

    def add_bgr(self, bgr: np.ndarray, row: dict[str, Any]) -> None:
        """Encode one BGR uint8 (H, W, 3) frame (h264), cropped to the stream's even size."""
        import av

        h, w = self.stream.height, self.stream.width
        img = np.ascontiguousarray(bgr[:h, :w])
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
            self.container.mux(packet)
        self.rows.append({"capture_frame_index": len(self.rows), **row})

    def add_jpeg(self, data: bytes, row: dict[str, Any]) -> None:
        """Mux one JPEG of the stream's size as the next frame (mjpeg)."""
        import fractions

        import av

        packet = av.Packet(data)
        packet.stream = self.stream
        packet.pts = packet.dts = len(self.rows)
        packet.time_base = fractions.Fraction(1, int(self.stream.average_rate or 2))
        self.container.mux(packet)
        self.payload_bytes += len(data)
        self.rows.append({"capture_frame_index": len(self.rows), **row})

    def close(self, sidecar: dict[str, Any]) -> tuple[Path, Path]:
        """Finish the video, rename it into place, write ``sidecar`` (plus ``frames``: one row
        per capture frame) beside it; ``(video, sidecar)`` paths."""
        if self.codec != "mjpeg":
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        self.part.replace(self.path)
        side = self.path.with_suffix(".json")
        from edge_export.fsutil import atomic_write

        with atomic_write(side) as fh:
            fh.write(json.dumps({**sidecar, "frames": self.rows}, indent=1).encode())
        return self.path, side


@dataclass
class _Open:
    hour: str
    clip: CaptureClip


class DisagreementCapture:
    """Per-camera hourly capture videos of disagreeing frames (see the module docstring).

    ``on_close(video, sidecar)`` is called with each closed capture's local paths.
    """

    def __init__(
        self,
        root: Path,
        box: str,
        *,
        per_hour: int,
        fps: int = 2,
        on_close: Callable[[Path, Path], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.root, self.box, self.per_hour, self.fps = root, box, per_hour, fps
        self.on_close, self.clock = on_close, clock
        self.open: dict[str, _Open] = {}
        self.kept = 0
        self.skipped = 0  # over the hourly bound
        self.closed: list[Path] = []

    def add(self, camera: str, bgr: np.ndarray, row: dict[str, Any]) -> bool:
        """Keep one disagreeing frame (BGR uint8 (H, W, 3)); False when this hour is full."""
        if self.per_hour <= 0:
            return False
        hour = time.strftime("%Y%m%d%H", time.gmtime(self.clock()))
        current = self.open.get(camera)
        if current is not None and current.hour != hour:
            self._close(camera)
            current = None
        if current is not None and len(current.clip.rows) >= self.per_hour:
            self.skipped += 1
            return False
        if current is None:
            path = self.root / camera / f"shadow-{self.box}-{hour}.mp4"
            clip = CaptureClip(path, width=bgr.shape[1], height=bgr.shape[0], fps=self.fps)
            current = self.open[camera] = _Open(hour, clip)
        current.clip.add_bgr(bgr, row)
        self.kept += 1
        return True

    def _close(self, camera: str) -> None:
        current = self.open.pop(camera)
        video, sidecar = current.clip.close({"box": self.box, "camera": camera})
        self.closed.append(video)
        if self.on_close is not None:
            self.on_close(video, sidecar)

    def close(self) -> None:
        for camera in list(self.open):
            self._close(camera)

    def stats(self) -> dict[str, int]:
        return {"kept": self.kept, "over_hourly_bound": self.skipped}

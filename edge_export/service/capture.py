"""Frames where the champion and its shadow disagree, kept as evidence: at most ``per_hour`` per
camera and hour, encoded as one H.264 capture video per camera and hour.

A closed capture lands in the lake's ``landing/videos/<camera>/`` like any other video
(``new_video_sensor`` ingests it, so its frames reach FiftyOne and the labelling queues), with a
JSON sidecar (same name, ``.json``) that maps each capture frame to the live frame's ``seq``,
capture time and both models' answers. What comes back from the line is ordinary input.

Encoded as it goes (one frame in memory at a time); a capture is written as ``.part`` and
renamed when closed, so the landing zone never sees half a video. PyAV only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DisagreementCapture"]


@dataclass
class _Open:
    hour: str
    path: Path
    container: Any
    stream: Any
    rows: list[dict[str, Any]] = field(default_factory=list)


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
        if current is not None and len(current.rows) >= self.per_hour:
            self.skipped += 1
            return False
        if current is None:
            current = self._start(camera, hour, bgr.shape[1], bgr.shape[0])
        import av

        h, w = current.stream.height, current.stream.width
        img = np.ascontiguousarray(bgr[:h, :w])
        for packet in current.stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
            current.container.mux(packet)
        current.rows.append({"capture_frame_index": len(current.rows), **row})
        self.kept += 1
        return True

    def _start(self, camera: str, hour: str, width: int, height: int) -> _Open:
        import av

        name = f"shadow-{self.box}-{hour}.mp4"
        path = self.root / camera / f"{name}.part"
        path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(path), "w", format="mp4")
        stream = container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        self.open[camera] = _Open(hour, path, container, stream)
        return self.open[camera]

    def _close(self, camera: str) -> None:
        current = self.open.pop(camera)
        for packet in current.stream.encode():
            current.container.mux(packet)
        current.container.close()
        video = current.path.with_suffix("")  # drop .part
        current.path.replace(video)
        sidecar = video.with_suffix(".json")
        sidecar.write_text(
            json.dumps({"box": self.box, "camera": camera, "frames": current.rows}, indent=1)
        )
        self.closed.append(video)
        if self.on_close is not None:
            self.on_close(video, sidecar)

    def close(self) -> None:
        for camera in list(self.open):
            self._close(camera)

    def stats(self) -> dict[str, int]:
        return {"kept": self.kept, "over_hourly_bound": self.skipped}

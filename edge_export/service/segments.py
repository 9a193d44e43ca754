"""Rolling JSONL segments for ``lensline-edge serve`` (:mod:`edge_export.service.serve`).

Lines go to ``<root>/<camera>/<camera>__<start>.jsonl.part``; a segment is renamed to ``.jsonl``
when it closes (every ``segment_s``, or on :meth:`Segments.close`), so a reader never sees a
half-written one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["Segments"]


class Segments:
    """Rolling JSONL segments of one kind (results, shadow): one open file per camera, a new
    one every ``segment_s``; ``on_close(path)`` is called for each closed segment."""

    def __init__(
        self,
        root: Path,
        segment_s: float,
        *,
        on_close: Callable[[Path], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.root, self.segment_s, self.on_close, self.clock = root, segment_s, on_close, clock
        self.open: dict[str, tuple[float, Path, IO[str]]] = {}
        self.closed: list[Path] = []

    def write(self, camera: str, row: dict[str, Any]) -> None:
        now = self.clock()
        current = self.open.get(camera)
        if current is not None and now - current[0] >= self.segment_s:
            self._close(camera)
            current = None
        if current is None:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:]
            path = self.root / camera / f"{camera}__{stamp}.jsonl.part"
            path.parent.mkdir(parents=True, exist_ok=True)
            current = (now, path, path.open("w"))
            self.open[camera] = current
        current[2].write(json.dumps(row) + "\n")

    def flush(self) -> None:
        for _, _, fh in self.open.values():
            fh.flush()

    def _close(self, camera: str) -> None:
        _, path, fh = self.open.pop(camera)
        fh.flush()
        fh.close()
        final = path.with_suffix("")  # drop .part: a reader never sees a half-written segment
        path.replace(final)
        self.closed.append(final)
        if self.on_close is not None:
            self.on_close(final)

    def recover(self) -> list[Path]:
        """Close the segments a killed process left open (``*.jsonl.part``, none of them open
        here): a torn last line is cut off, the file renamed and handed to ``on_close`` (so a
        crash loses at most the line being written, and its segment is still published)."""
        recovered = []
        for path in sorted(self.root.glob("*/*.jsonl.part")):
            data = path.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]  # up to the last complete line
            if len(whole) != len(data):
                with path.open("r+b") as fh:
                    fh.truncate(len(whole))
            final = path.with_suffix("")
            if not whole:
                path.unlink()
                continue
            path.replace(final)
            self.closed.append(final)
            recovered.append(final)
            if self.on_close is not None:
                self.on_close(final)
        return recovered

    def close_camera(self, camera: str) -> None:
        """Close ``camera``'s open segment, if any (a camera removed from the box)."""
        if camera in self.open:
            self._close(camera)

    def close(self) -> None:
        for camera in list(self.open):
            self._close(camera)

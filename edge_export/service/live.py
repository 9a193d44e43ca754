"""Live camera sources of ``lensline-edge serve``: one decode thread per camera, a bounded queue.

(Over 400 lines: one class, a camera's decode thread, watchdog, reconnect policy and counters, which share one lock.)

A :class:`LiveSource` opens one camera with PyAV/FFmpeg and keeps it open until :meth:`stop`:

* **URLs.** ``rtsp://`` (``transport`` ``"tcp"`` or ``"udp"``), ``tcp://`` and ``udp://``
  (MPEG-TS), ``http://`` / ``https://`` streams, ``/dev/videoN`` (V4L2) and plain files (with
  ``loop=True`` reopened at their end, paced at their own frame rate unless ``realtime=False``;
  without ``loop`` a file ends the source: state ``stopped``).
* **States.** ``connecting`` (first open) → ``online`` (at the first frame) ⇄ ``stalled`` (no
  frame for ``stall_s`` seconds; a watchdog thread sets it even while a read blocks) → a lost
  or unopenable stream is ``reconnecting``, retried after a capped exponential backoff
  (``backoff=(first, cap)`` seconds, doubling, reset by a frame) → ``online`` again;
  ``stopped`` after :meth:`stop`. No error ever leaves the decode thread: it is counted, kept in
  ``last_error`` and reported through the state. ``on_state(camera, state, info)`` is told of
  every change (from the decode or watchdog thread: keep it quick).
* **Gaps.** Once a camera has delivered a frame, any interruption (a stall, a lost stream) is a
  gap from its last frame to the next one: ``(start wall time, length s)``, the latest
  :data:`MAX_GAPS` kept, their number and total length counted.
* **Bounded work.** Of the decoded frames, every ``every``-th (by ``seq``) is a candidate, and
  at most ``fps`` candidates per second of stream time are kept (the others are ``skipped``);
  kept frames go into a queue of ``queue_size``. When the consumer falls behind, the *oldest*
  frame still waiting is dropped for the new one and counted (``dropped``): memory is bounded by
  ``queue_size`` frames and never grows with time.
* **Timeouts.** PyAV's ``timeout=(open_timeout_s, read_timeout_s)`` interrupts a blocked open
  or read (plus FFmpeg's own ``timeout`` / ``rw_timeout`` for the network protocols); a read
  that times out is a lost stream. :meth:`stop` waits at most ``join_s`` for the decode thread:
  a thread still inside a blocked open is left to end at its timeout (it is a daemon and does
  nothing more).

``Frame.seq`` counts decoded frames per camera (0, 1, 2, ... across reconnects, never reused), so
holes in the delivered ``seq`` are the skipped and dropped frames.

Imports PyAV, numpy and the standard library only.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["MAX_GAPS", "STATES", "Frame", "LiveSource", "open_args", "source_kind"]

log = logging.getLogger(__name__)

STATES = ("connecting", "online", "stalled", "reconnecting", "stopped")
MAX_GAPS = 256
_V4L2 = re.compile(r"^/dev/video\d+$")
_NETWORK = ("rtsp", "rtsps", "tcp", "udp", "http", "https", "rtmp", "srt")

StateCallback = Callable[[str, str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded camera frame.

    ``seq``: this camera's decoded-frame counter (monotonic across reconnects, never reused);
    ``pts``: the stream's presentation time in seconds (``None`` when the stream has none; it
    restarts with a new connection or a file's loop); ``captured_at``: ``time.time()`` when it
    was decoded; ``bgr``: the image, uint8 (H, W, 3), BGR colour order.
    """

    camera_id: str
    seq: int
    pts: float | None
    captured_at: float
    bgr: np.ndarray


def source_kind(source: str) -> Literal["rtsp", "network", "v4l2", "file"]:
    """What ``source`` is: an RTSP URL, another network URL, a V4L2 device, or a file."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    if scheme in _NETWORK:
        return "network"
    if _V4L2.match(source):
        return "v4l2"
    return "file"


def open_args(
    source: str,
    *,
    transport: str = "tcp",
    read_timeout_s: float = 10.0,
    options: Mapping[str, str] | None = None,
) -> tuple[str, str | None, dict[str, str]]:
    """``(url, format, options)`` for ``av.open``: RTSP transport and socket timeout, FFmpeg's
    ``rw_timeout`` and a 1 s probe for the other network URLs, ``v4l2`` for ``/dev/videoN``;
    ``options`` (FFmpeg's, as strings) override these."""
    kind = source_kind(source)
    micros = str(int(read_timeout_s * 1e6))
    fmt: str | None = None
    opts: dict[str, str] = {}
    if kind == "rtsp":
        opts = {"rtsp_transport": transport, "timeout": micros, "analyzeduration": "1000000"}
    elif kind == "network":
        opts = {"rw_timeout": micros, "analyzeduration": "1000000"}
        if source.lower().startswith("udp://"):
            opts["overrun_nonfatal"] = "1"
    elif kind == "v4l2":
        fmt = "v4l2"
    url = source[len("file://") :] if source.startswith("file://") else source
    return url, fmt, {**opts, **dict(options or {})}


class LiveSource:
    """One camera: a decode thread, a watchdog thread and a bounded frame queue.

    Parameters
    ----------
    camera_id
        The camera's id (in every :class:`Frame`, callback and ``stats()``).
    source
        A URL or path (see the module docstring).
    transport
        RTSP transport, ``"tcp"`` or ``"udp"``.
    fps
        Inspection rate cap: at most this many frames per second of stream time are queued
        (``None``: no cap).
    every
        Queue only every ``every``-th decoded frame (``seq % every == 0``).
    queue_size
        Frames waiting for the consumer; when full the oldest is dropped (counted).
    stall_s
        No frame for this long while online: state ``stalled``.
    backoff
        ``(first, cap)`` seconds between reconnect attempts, doubling up to ``cap``.
    loop
        Files: reopen at the end instead of stopping.
    realtime
        Files: deliver at the file's own frame rate (``False``: as fast as it decodes).
    open_timeout_s, read_timeout_s
        Give up an open, or a read with no data, after this long (a read timeout is a lost
        stream, reconnected). ``read_timeout_s`` defaults to ``max(10, 2 * stall_s)``, so a
        stall is reported before the connection is dropped.
    options
        Extra FFmpeg options for ``av.open`` (strings), e.g. V4L2's ``video_size``.
    on_state
        ``on_state(camera_id, state, info)`` at every state change.
    join_s
        The most :meth:`stop` waits for the threads.
    """

    def __init__(
        self,
        camera_id: str,
        source: str | os.PathLike[str],
        *,
        transport: Literal["tcp", "udp"] = "tcp",
        fps: float | None = None,
        every: int = 1,
        queue_size: int = 8,
        stall_s: float = 5.0,
        backoff: tuple[float, float] = (0.5, 10.0),
        loop: bool = False,
        realtime: bool = True,
        open_timeout_s: float = 10.0,
        read_timeout_s: float | None = None,
        options: Mapping[str, str] | None = None,
        on_state: StateCallback | None = None,
        join_s: float = 1.0,
    ) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
        if every < 1 or queue_size < 1 or stall_s <= 0 or (fps is not None and fps <= 0):
            raise ValueError("every and queue_size must be >= 1, stall_s and fps > 0")
        self.camera_id = camera_id
        self.source = os.fspath(source)
        self.kind = source_kind(self.source)
        self.transport = transport
        self.fps = fps
        self.every = every
        self.queue_size = queue_size
        self.stall_s = stall_s
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.loop = loop
        self.realtime = realtime
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s or max(10.0, 2 * stall_s)
        self.options = dict(options or {})
        self.on_state = on_state
        self.join_s = join_s

        self._lock = threading.Lock()  # counters, state, queue
        self._emit = threading.Lock()  # one state change (and its callback) at a time
        self._ready = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._queue: deque[Frame] = deque()
        self._threads: list[threading.Thread] = []
        self._state = "connecting"
        self._state_since = time.time()
        self._seq = 0
        self._counts = dict.fromkeys(("decoded", "queued", "delivered", "dropped", "skipped"), 0)
        self._reconnects = 0
        self._errors = 0
        self._last_error: str | None = None
        self._last_frame: float | None = None
        self._last_kept_pts: float | None = None
        self._gap_start: float | None = None
        self._gaps: deque[tuple[float, float]] = deque(maxlen=MAX_GAPS)
        self._gaps_total = 0
        self._gap_s_total = 0.0

    # -- public ------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """One of :data:`STATES`."""
        return self._state

    def start(self) -> LiveSource:
        """Start the decode and watchdog threads (once)."""
        if self._threads:
            raise RuntimeError(f"camera {self.camera_id}: already started")
        self._emit_state("connecting", {"source": self.source}, force=True)
        for name, target in (("decode", self._run), ("watchdog", self._watch)):
            thread = threading.Thread(
                target=target, name=f"lensline-{name}-{self.camera_id}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the threads, waiting at most ``join_s``; frames still queued stay readable."""
        self._stop.set()
        self._emit_state("stopped", {"reason": "stopped"})
        with self._ready:
            self._ready.notify_all()
        deadline = time.monotonic() + self.join_s
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest waiting frame; ``None`` after ``timeout`` seconds without one, or when
        stopped and empty (``timeout=None`` waits until a frame or :meth:`stop`)."""
        with self._ready:
            if not self._queue and not self._stop.is_set():
                self._ready.wait_for(lambda: self._queue or self._stop.is_set(), timeout)
            if not self._queue:
                return None
            self._counts["delivered"] += 1
            return self._queue.popleft()

    def stats(self) -> dict[str, Any]:
        """Counters and state (JSON-ready): ``camera, source, state, state_since, decoded,
        queued, delivered, dropped, skipped, queue_len, reconnects, errors, last_error,
        last_frame_at, gaps`` (``[start, length_s]``, the latest :data:`MAX_GAPS`),
        ``gaps_total, gap_s_total, gap_open_since`` (start of a gap still open, else None)."""
        with self._lock:
            return {
                "camera": self.camera_id,
                "source": self.source,
                "state": self._state,
                "state_since": self._state_since,
                **self._counts,
                "queue_len": len(self._queue),
                "reconnects": self._reconnects,
                "errors": self._errors,
                "last_error": self._last_error,
                "last_frame_at": self._last_frame,
                "gaps": [list(g) for g in self._gaps],
                "gaps_total": self._gaps_total,
                "gap_s_total": self._gap_s_total,
                "gap_open_since": self._gap_start,
            }

    # -- state -----------------------------------------------------------------------------
    def _emit_state(self, state: str, info: dict[str, Any], *, force: bool = False) -> None:
        with self._emit:
            with self._lock:
                if state == self._state and not force:
                    return
                if self._stop.is_set() and state != "stopped":
                    return
                self._state, self._state_since = state, time.time()
            if state in ("stalled", "reconnecting", "stopped") and info.get("reason"):
                log.info("camera %s: %s (%s)", self.camera_id, state, info["reason"])
            if self.on_state is not None:
                try:
                    self.on_state(self.camera_id, state, info)
                except Exception:  # a broken callback must not stop the camera
                    log.exception("camera %s: on_state callback failed", self.camera_id)

    def _open_gap(self) -> None:
        """Under ``_lock``: a gap starts at the last frame (if any frame came yet)."""
        if self._gap_start is None and self._last_frame is not None:
            self._gap_start = self._last_frame

    # -- threads ---------------------------------------------------------------------------
    def _watch(self) -> None:
        tick = min(0.25, self.stall_s / 4)
        while not self._stop.wait(tick):
            with self._lock:
                last = self._last_frame
                stalled = (
                    self._state == "online"
                    and last is not None
                    and time.time() - last > self.stall_s
                )
                if stalled:
                    self._open_gap()
            if stalled and last is not None:
                self._emit_state(
                    "stalled",
                    {"reason": f"no frame for {self.stall_s:g} s", "last_frame_at": last},
                )

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            frames = 0
            end = "lost"
            try:
                frames, end = self._session()
            except Exception as exc:  # FFmpeg/OS errors: the stream is lost, retry
                reason = _reason(exc)
                with self._lock:
                    self._errors += 1
                    self._last_error = reason
            else:
                reason = "end of stream" if end == "eof" else end
            if self._stop.is_set() or end == "stopped":
                return
            if end == "eof" and self.kind == "file":
                if not self.loop:
                    self._emit_state("stopped", {"reason": "end of file"})
                    self._stop.set()
                    with self._ready:
                        self._ready.notify_all()
                    return
                if frames:
                    continue  # a looping file: reopen at once, no gap
            failures = 0 if frames else failures + 1
            delay = min(self.backoff[1], self.backoff[0] * 2 ** max(0, failures - 1))
            with self._lock:
                self._reconnects += 1
                self._open_gap()
            self._emit_state(
                "reconnecting",
                {"reason": reason, "retry_in_s": delay, "attempt": self._reconnects},
            )
            self._stop.wait(delay)

    def _session(self) -> tuple[int, str]:
        """Open the source and decode until its end (``"eof"``) or :meth:`stop`
        (``"stopped"``); errors propagate. Returns ``(frames decoded, how it ended)``."""
        import av

        url, fmt, options = open_args(
            self.source,
            transport=self.transport,
            read_timeout_s=self.read_timeout_s,
            options=self.options,
        )
        container = av.open(
            url, format=fmt, options=options, timeout=(self.open_timeout_s, self.read_timeout_s)
        )
        frames = 0
        with container:
            if not container.streams.video:
                raise RuntimeError("no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            pace = self.kind == "file" and self.realtime
            t0: float | None = None
            pts0 = 0.0
            for av_frame in container.decode(stream):
                if self._stop.is_set():
                    return frames, "stopped"
                pts = float(av_frame.time) if av_frame.time is not None else None
                if pace:
                    at = pts if pts is not None else frames / float(rate or 25)
                    if t0 is None:
                        t0, pts0 = time.monotonic(), at
                    if self._stop.wait(max(0.0, t0 + (at - pts0) - time.monotonic())):
                        return frames, "stopped"
                frames += 1
                self._frame(av_frame, pts)
        return frames, "eof"

    def _frame(self, av_frame: Any, pts: float | None) -> None:
        now = time.time()
        with self._lock:
            seq = self._seq
            self._seq += 1
            self._counts["decoded"] += 1
            self._last_frame = now
            if self._gap_start is not None:
                gap = (self._gap_start, now - self._gap_start)
                self._gaps.append(gap)
                self._gaps_total += 1
                self._gap_s_total += gap[1]
                self._gap_start = None
            keep = seq % self.every == 0 and self._under_cap(pts)
            if not keep:
                self._counts["skipped"] += 1
            online = self._state == "online"
        if not online:
            self._emit_state("online", {"reason": "frames arriving", "seq": seq})
        if not keep:
            return
        frame = Frame(self.camera_id, seq, pts, now, av_frame.to_ndarray(format="bgr24"))
        with self._ready:
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self._counts["dropped"] += 1
            self._queue.append(frame)
            self._counts["queued"] += 1
            self._ready.notify()

    def _under_cap(self, pts: float | None) -> bool:
        """Under ``_lock``: whether the ``fps`` cap lets this frame through (stream time; wall
        time when the stream has none; a jump back in time restarts the count)."""
        if self.fps is None:
            return True
        t = pts if pts is not None else time.time()
        last = self._last_kept_pts
        if last is not None and last <= t < last + 0.95 / self.fps:
            return False
        self._last_kept_pts = t
        return True


def _reason(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(getattr(exc, "strerror", None) or exc)).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

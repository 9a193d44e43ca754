"""Data on demand: the box sends back frames only when the lake asks, and never over budget.

The lake publishes ``<root>/capture_requests.json`` (:mod:`lake.capture_requests`), signed like
``deployments/<box>.json``; its payload::

    {"seq": 12, "requests": [{"request_id": "cr-00012", "camera": "cam1", "policy": "uncertain",
      "margin": 0.2, "every_n": null, "before_s": null, "after_s": null, "per_hour": 60,
      "max_bytes": 52428800, "expires_at": ISO, "created_at": ISO, "reason": "drift"}, ...]}

:class:`RequestsWatcher` polls and verifies it (:func:`edge_export.service.deploy.verified_payload`
with the box's trusted key): a refused document (tampered, unsigned while a key is pinned, older
than the one in force, malformed) changes nothing, the running requests keep going.

:class:`CaptureEngine` decides per scored frame, for each request of that frame's camera:

- ``uncertain``: the champion's top-1 minus top-2 probability is below ``margin``;
- ``shadow_disagree``: the shadow's label differs from the champion's;
- ``random``: 1 frame in ``every_n`` (a hash of request id, camera and frame ``seq``: the same
  frames are chosen on every run);
- ``alarm_clip``: when an alarm is raised, the frames of the last ``before_s`` seconds (a ring
  buffer of at most ``ring_frames`` frames per camera, kept only while such a request exists)
  and those of the next ``after_s`` seconds, as one clip.

**Budgets.** ``per_hour`` caps frames (clips for ``alarm_clip``) in any sliding hour;
``max_bytes`` caps the bytes of all the request's capture videos. A frame is charged its JPEG's
size plus :data:`FRAME_OVERHEAD`, a new video :data:`CLIP_OVERHEAD` (an MP4 of MJPEG frames
measures below both), and trued up to the real file size when the video closes; a frame that
would go over either cap is not written and counts as ``skipped_budget``. What a request has
sent survives a restart (``<out>/state.json``). An expired or cancelled request stops at the
next frame: its open video is closed (it is within budget) and nothing more is written.

**Output.** JPEG frames muxed into short MP4 videos (:class:`edge_export.service.capture.CaptureClip`,
at most ``max_clip_s`` long), named ``req-<request>-<box>-<camera>-<time>-<n>.mp4`` under
``<out>/<camera>/``, each with a sidecar JSON (box, camera, request_id, policy, reason,
model_versions, frame_count, bytes, the request's totals so far and one row per frame). A
closed video and its sidecar go to ``on_close`` (the service publishes them to the lake's
``landing/videos/<camera>/`` and ``landing/captures/<box>/<camera>/``: the sidecar is the
report of what was sent). :meth:`CaptureEngine.stats` gives the counters for the heartbeat.

Standard library, numpy, OpenCV and PyAV only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.service.capture import CaptureClip

__all__ = [
    "CLIP_OVERHEAD",
    "DOCUMENT",
    "FORMAT",
    "FRAME_OVERHEAD",
    "CaptureEngine",
    "CaptureSettings",
    "Request",
    "RequestsWatcher",
    "parse_settings",
]

FORMAT = "lensline.capture_requests/1"
DOCUMENT = "capture_requests.json"
POLICIES = ("uncertain", "shadow_disagree", "random", "alarm_clip")
#: Bytes charged per video and per frame on top of the JPEGs (MP4 container; measured ~0.8 KiB
#: per file and ~5-20 bytes per frame).
CLIP_OVERHEAD = 4096
FRAME_OVERHEAD = 64
_HOUR = 3600.0


# ---- settings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptureSettings:
    """The ``capture_requests:`` section of the service config."""

    poll_s: float = 10.0  # how often capture_requests.json is read
    out: str | None = None  # local capture folder (default: <out>/requests)
    max_clip_s: float = 60.0  # a capture video is closed after this long (and alarm clips cut)
    ring_frames: int = 64  # frames kept per camera for alarm clips' "before"
    jpeg_quality: int = 90
    fps: int = 2  # nominal rate of capture videos (ingestion keeps every frame at 2 fps)


_SETTINGS = {"poll_s": (0.1, float), "out": None, "max_clip_s": (1.0, float),
             "ring_frames": (1, int), "jpeg_quality": (10, int), "fps": (1, int)}  # fmt: skip


def parse_settings(section: Any, problems: list[str]) -> CaptureSettings:
    """``capture_requests: {poll_s, out, max_clip_s, ring_frames, jpeg_quality, fps}`` (all
    optional); every bad field is appended to ``problems`` as ``capture_requests.<field>: ...``."""
    if section is None:
        return CaptureSettings()
    if not isinstance(section, dict):
        problems.append("capture_requests: must be a mapping (poll_s:, out:, max_clip_s:, ...)")
        return CaptureSettings()
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in _SETTINGS:
            problems.append(
                f"capture_requests.{key}: unknown key (known: {', '.join(sorted(_SETTINGS))})"
            )
        elif key == "out":
            if not isinstance(value, str) or not value:
                problems.append(f"capture_requests.out: must be a folder path, got {value!r}")
            else:
                values[key] = value
        else:
            minimum, cast = _SETTINGS[key]  # type: ignore[misc]
            ok = not isinstance(value, bool) and isinstance(value, int | float)
            if not ok or value < minimum or (cast is int and int(value) != value):
                kind = "a whole number" if cast is int else "a number"
                problems.append(
                    f"capture_requests.{key}: must be {kind} >= {minimum:g}, got {value!r}"
                )
            else:
                values[key] = cast(value)
    if values.get("jpeg_quality", 90) > 100:
        problems.append("capture_requests.jpeg_quality: must be <= 100")
    return CaptureSettings(**values)


# ---- the document ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One capture request as a box reads it (``expires_at`` in epoch seconds)."""

    request_id: str
    camera: str
    policy: str
    reason: str
    per_hour: int
    max_bytes: int
    expires_at: float
    margin: float | None = None
    every_n: int | None = None
    before_s: float | None = None
    after_s: float | None = None

    @classmethod
    def from_entry(cls, entry: Any, where: str) -> Request:
        """A request from a document entry; ValueError naming the field at fault."""
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not an object")
        for key in ("request_id", "camera", "policy", "reason", "expires_at"):
            if not isinstance(entry.get(key), str):
                raise ValueError(f"{where}.{key}: missing or not a string")
        for key in ("per_hour", "max_bytes"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}.{key}: must be a whole number >= 1")
        policy = entry["policy"]
        needs = {"uncertain": ("margin",), "random": ("every_n",),
                 "alarm_clip": ("before_s", "after_s")}.get(policy)  # fmt: skip
        if policy not in POLICIES:
            raise ValueError(f"{where}.policy: unknown policy {policy!r}")
        for key in needs or ():
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{where}.{key}: {policy} needs a number >= 0")
        if policy == "random" and int(entry["every_n"]) < 1:
            raise ValueError(f"{where}.every_n: must be >= 1")
        try:
            expires = datetime.fromisoformat(entry["expires_at"]).timestamp()
        except ValueError:
            raise ValueError(f"{where}.expires_at: not an ISO time") from None

        def opt(key: str, cast: Callable[[Any], Any]) -> Any:
            return cast(entry[key]) if entry.get(key) is not None else None

        return cls(
            entry["request_id"], entry["camera"], policy, entry["reason"], entry["per_hour"],
            entry["max_bytes"], expires, opt("margin", float), opt("every_n", int),
            opt("before_s", float), opt("after_s", float),
        )  # fmt: skip


class RequestsWatcher:
    """Poll the signed requests document and keep the verified requests of this box's cameras.

    ``read()`` returns the document's bytes (FileNotFoundError: none published, which means no
    requests); ``trusted`` is the pinned signer (:class:`edge_export.bundle.TrustedKey`) or None.
    """

    def __init__(
        self,
        read: Callable[[], bytes],
        *,
        trusted: Any,
        cameras: Iterable[str],
        where: str = DOCUMENT,
    ):
        self.read, self.trusted, self.where = read, trusted, where
        self.cameras = set(cameras)
        self.current: list[Request] | None = None
        self.seq: int | None = None
        self.problems: list[str] = []
        self._seen: bytes | None = None

    def poll(self) -> list[Request] | None:
        """The requests for this box's cameras when the document changed (an empty list when
        it was withdrawn), None when nothing changed or it was refused (see :attr:`problems`)."""
        from edge_export.service.deploy import DocumentError, verified_payload

        try:
            data = self.read()
        except FileNotFoundError:
            if not self.current:
                return None
            self.current, self._seen = [], None
            return []
        except Exception as e:  # noqa: BLE001 - a source outage keeps the requests in force
            self._refuse(f"cannot read {self.where}: {e}", None)
            return None
        digest = hashlib.sha256(data).digest()
        if digest == self._seen:
            return None
        try:
            payload = verified_payload(data, trusted=self.trusted, where=self.where, format=FORMAT)
            seq, entries = payload.get("seq"), payload.get("requests")
            if not isinstance(seq, int) or not isinstance(entries, list):
                raise DocumentError(f"{self.where}: payload needs 'seq' (int) and 'requests'")
            if self.seq is not None and seq < self.seq:
                raise DocumentError(
                    f"{self.where}: seq {seq} is older than the requests in force ({self.seq}): "
                    "refused (replayed or stale document)"
                )
            requests = [
                Request.from_entry(e, f"{self.where}: requests[{i}]") for i, e in enumerate(entries)
            ]
        except (DocumentError, ValueError) as e:
            self._refuse(str(e), digest)
            return None
        self._seen, self.seq = digest, seq
        self.current = [r for r in requests if r.camera in self.cameras]
        return self.current

    def _refuse(self, problem: str, digest: bytes | None) -> None:
        if digest is not None:
            self._seen = digest  # reported once per distinct document
        self.problems.append(problem)
        del self.problems[:-10]


# ---- the engine ------------------------------------------------------------------------------
@dataclass
class _State:
    """One request on this box: its counters, sliding hour and the video being written."""

    request: Request
    sent_frames: int = 0
    sent_clips: int = 0
    spent_bytes: int = 0  # charged (frames written, videos closed: their real size)
    skipped_budget: int = 0
    window: deque[float] = field(default_factory=deque)  # times of frames/clips, last hour
    clip: CaptureClip | None = None
    clip_started: float = 0.0
    clip_charge: int = 0
    clip_versions: set[str] = field(default_factory=set)
    clip_shape: tuple[int, int] | None = None  # (H, W) of the video being written
    alarm_until: float | None = None  # alarm_clip: record frames up to this frame time
    active: bool = True
    ended: str | None = None  # why it stopped (expired, cancelled)

    def hour_full(self, now: float) -> bool:
        while self.window and self.window[0] <= now - _HOUR:
            self.window.popleft()
        return len(self.window) >= self.request.per_hour


class CaptureEngine:
    """Per scored frame: what each active request of its camera keeps (see the module docstring).

    ``offer`` is called on the inspection loop's thread; ``set_requests`` (or :meth:`poll`) may
    be called from another thread: the change is applied at the next ``offer``.
    """

    def __init__(
        self,
        root: Path,
        box: str,
        *,
        settings: CaptureSettings | None = None,
        watcher: RequestsWatcher | None = None,
        on_close: Callable[[Path, Path], None] | None = None,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = print,
    ):
        self.root, self.box = Path(root), box
        self.settings = settings or CaptureSettings()
        self.watcher, self.on_close, self.clock, self.log = watcher, on_close, clock, log
        self.states: dict[str, _State] = {}
        self.closed: list[Path] = []
        self._by_camera: dict[str, list[_State]] = {}
        self._rings: dict[str, deque[tuple[float, np.ndarray, dict[str, Any]]]] = {}
        self._pending: list[Request] | None = None
        self._lock = threading.Lock()
        self._saved = self._load()
        self._next_poll = 0.0  # time.monotonic() of the next read of the document
        # the line's caps (lines/<box>.json ``capture``: max_per_hour, max_mb_per_hour) bound
        # every request of a camera together: frames and bytes per camera in the last hour
        self.limits: Any = None
        self._camera_hour: dict[str, deque[tuple[float, int]]] = {}
        self.skipped_line_cap = 0

    @classmethod
    def for_service(cls, config: Any, deployments: Any, **kwargs: Any) -> CaptureEngine:
        """The engine of a :class:`edge_export.service.serve.Service`: requests read beside the
        desired state, with the same trusted key, for the config's cameras."""
        settings = getattr(config, "capture_requests", None) or CaptureSettings()
        watcher = None
        if hasattr(deployments, "read"):
            watcher = RequestsWatcher(
                lambda: deployments.read(DOCUMENT),
                trusted=getattr(deployments, "trusted", None),
                cameras=[c.id for c in config.cameras],
            )
        root = Path(settings.out) if settings.out else config.out / "requests"
        return cls(root, config.box, settings=settings, watcher=watcher, **kwargs)

    # -- requests ------------------------------------------------------------------------------
    def poll(self) -> None:
        """Read the requests document (on the poller thread); a change applies at the next
        frame. A refusal is logged once and changes nothing."""
        if self.watcher is None or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + self.settings.poll_s
        before = len(self.watcher.problems)
        requests = self.watcher.poll()
        for problem in self.watcher.problems[before:]:
            self.log(f"capture requests refused: {problem}")
        if requests is not None:
            self.set_requests(requests)

    def set_requests(self, requests: Iterable[Request]) -> None:
        """The requests in force from now on (thread-safe; applied at the next :meth:`offer`)."""
        with self._lock:
            self._pending = list(requests)

    def _apply(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        wanted = {r.request_id: r for r in pending}
        for rid, state in list(self.states.items()):
            if state.active and rid not in wanted:
                self._end(state, "cancelled")
        for rid, req in wanted.items():
            known = self.states.get(rid)
            if known is None:
                self.states[rid] = _State(req)
                self._restore(self.states[rid])
            elif known.active:
                known.request = req
        self._index()

    def _index(self) -> None:
        self._by_camera = {}
        for state in self.states.values():
            if state.active:
                self._by_camera.setdefault(state.request.camera, []).append(state)
        clips = {c for c, states in self._by_camera.items()
                 if any(s.request.policy == "alarm_clip" for s in states)}  # fmt: skip
        for camera in clips:
            self._rings.setdefault(camera, deque(maxlen=self.settings.ring_frames))
        for camera in set(self._rings) - clips:
            del self._rings[camera]  # the ring is kept only while an alarm_clip asks for it

    # -- frames --------------------------------------------------------------------------------
    def offer(
        self,
        frame: Any,
        row: dict[str, Any],
        model: Any = None,
        index: int = 0,
        *,
        margin: float | None = None,
    ) -> int:
        """Consider one scored frame (``frame.camera_id``, ``.bgr`` BGR uint8 (H, W, 3),
        ``.seq``; ``row``: its result line, with ``shadow_label`` and ``alarm_event``);
        ``margin`` (top-1 minus top-2 probability) or else ``model.last_margins[index]``.
        Returns how many requests kept it. Costs one dict lookup for a camera without requests."""
        if self._pending is not None:
            self._apply()
        camera = frame.camera_id
        states = self._by_camera.get(camera)
        if not states:
            return 0
        now = self.clock()
        t = float(row.get("captured_at") or now)
        if margin is None and model is not None:
            margins = getattr(model, "last_margins", None)
            if margins is not None and index < len(margins):
                margin = float(margins[index])
        kept, jpeg = 0, _LazyJpeg(frame.bgr, self.settings.jpeg_quality)
        for state in list(states):
            try:
                kept += self._consider(state, frame, row, t, now, margin, jpeg)
            except Exception as e:  # noqa: BLE001 - a capture never stops the inspection line
                self._fail(state, e)
        if camera in self._rings:
            self._rings[camera].append((t, frame.bgr, row))
        return kept

    def _consider(self, state: _State, frame, row, t: float, now: float, margin, jpeg) -> int:
        """Whether ``state``'s request keeps this frame; writes it if so (1) or not (0)."""
        req = state.request
        if now >= req.expires_at:
            self._end(state, "expired")
            return 0
        if state.clip is not None and now - state.clip_started >= self.settings.max_clip_s:
            self._close_clip(state)
        if req.policy == "alarm_clip":
            return self._alarm(state, frame, row, t, now, jpeg)
        if req.policy == "uncertain":
            wanted = margin is not None and margin < (req.margin or 0.0)
        elif req.policy == "shadow_disagree":
            shadow = row.get("shadow_label")
            wanted = shadow is not None and shadow != row.get("label")
        else:  # random
            wanted = _one_in(req.every_n or 1, req.request_id, frame.camera_id, frame.seq)
        if not wanted or self._budget_refuses(state, now, jpeg):
            return 0
        self._write(state, jpeg, row, t, now, margin)
        state.window.append(now)
        return 1

    def _fail(self, state: _State, error: Exception) -> None:
        """A capture that cannot be written (disk full, encoder error) ends its request on this
        box, logged; the video being written stays local (``.part``), never half-published."""
        clip, state.clip = state.clip, None
        if clip is not None:
            with contextlib.suppress(Exception):  # already failing; the .part is left behind
                clip.container.close()
        self._end(state, f"failed: {type(error).__name__}: {error}")

    def _alarm(self, state: _State, frame, row, t: float, now: float, jpeg) -> int:
        req = state.request
        if state.clip is not None and state.alarm_until is not None and t > state.alarm_until:
            self._close_clip(state)
        if state.clip is not None:  # within the "after" part of a clip
            if self._budget_refuses(state, now, jpeg, clip=False):
                return 0
            self._write(state, jpeg, row, t, now, None)
            return 1
        if row.get("alarm_event") != "raised":
            return 0
        if state.hour_full(now):
            state.skipped_budget += 1  # one clip skipped
            return 0
        state.window.append(now)
        written = 0
        ring = self._rings.get(frame.camera_id, ())
        for bt, bgr, brow in list(ring):
            if t - bt <= (req.before_s or 0.0) and bgr.shape == frame.bgr.shape:
                before = _LazyJpeg(bgr, self.settings.jpeg_quality)
                if not self._budget_refuses(state, now, before, clip=False):
                    self._write(state, before, brow, bt, now, None)
                    written += 1
        state.alarm_until = t + min(req.after_s or 0.0, self.settings.max_clip_s)
        if not self._budget_refuses(state, now, jpeg, clip=False):
            self._write(state, jpeg, row, t, now, None)
            written += 1
        if state.clip is not None:
            state.clip_started = now
        return written

    def _budget_refuses(self, state: _State, now: float, jpeg, *, clip: bool = True) -> bool:
        """Whether writing ``jpeg`` would exceed the hourly cap (``clip``: per-frame policies)
        or the byte budget; a refusal counts as ``skipped_budget``."""
        if clip and state.hour_full(now):
            state.skipped_budget += 1
            return True
        charge = len(jpeg.data) + FRAME_OVERHEAD + (CLIP_OVERHEAD if state.clip is None else 0)
        if state.clip is not None and jpeg.shape != state.clip_shape:
            charge += CLIP_OVERHEAD  # a new video for a new frame size
        if state.spent_bytes + charge > state.request.max_bytes:
            state.skipped_budget += 1
            return True
        if self._over_line_cap(state.request.camera, now, charge):
            state.skipped_budget += 1
            self.skipped_line_cap += 1
            return True
        return False

    def _over_line_cap(self, camera: str, now: float, charge: int) -> bool:
        """Whether the line's caps for ``camera`` (all its requests, the last hour) refuse a
        frame of ``charge`` bytes."""
        limits = self.limits
        if limits is None:
            return False
        window = self._camera_hour.setdefault(camera, deque())
        while window and window[0][0] <= now - _HOUR:
            window.popleft()
        spent = sum(b for _, b in window)
        return (
            len(window) >= limits.max_per_hour
            or spent + charge > limits.max_mb_per_hour * 1_000_000
        )

    def _write(self, state: _State, jpeg, row: dict[str, Any], t: float, now: float, margin):
        if state.clip is not None and jpeg.shape != state.clip_shape:
            self._close_clip(state)
        charge = len(jpeg.data) + FRAME_OVERHEAD
        if state.clip is None:
            h, w = jpeg.shape
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
            name = f"req-{state.request.request_id}-{self.box}-{state.request.camera}-{stamp}"
            path = self.root / state.request.camera / f"{name}-{state.sent_clips:04d}.mp4"
            state.clip = CaptureClip(path, width=w, height=h, fps=self.settings.fps,
                                     codec="mjpeg")  # fmt: skip
            state.clip_shape = jpeg.shape
            state.clip_started, state.clip_charge = now, CLIP_OVERHEAD
            state.clip_versions = set()
            state.spent_bytes += CLIP_OVERHEAD
        keep = {k: row.get(k) for k in ("frame_index", "captured_at", "model_version", "label",
                                        "confidence", "shadow_label", "alarm_event")}  # fmt: skip
        state.clip.add_jpeg(jpeg.data, {**keep, "frame_time": t, "margin": margin})
        state.clip_versions.add(str(row.get("model_version")))
        state.spent_bytes += charge
        if self.limits is not None:
            self._camera_hour.setdefault(state.request.camera, deque()).append((now, charge))
        state.clip_charge += charge
        state.sent_frames += 1

    def _close_clip(self, state: _State) -> None:
        clip, state.clip, state.alarm_until = state.clip, None, None
        if clip is None:
            return
        req = state.request
        clip.close({})  # the sidecar is rewritten below, with the video's real size
        size = clip.path.stat().st_size
        state.spent_bytes += size - state.clip_charge  # true-up: the charge covered the file
        state.sent_clips += 1
        sidecar = {
            "box": self.box, "camera": req.camera, "request_id": req.request_id,
            "policy": req.policy, "reason": req.reason,
            "model_versions": sorted(state.clip_versions), "frame_count": len(clip.rows),
            "bytes": size, "closed_at": self.clock(), "budget": {"per_hour": req.per_hour,
            "max_bytes": req.max_bytes}, "sent": self._totals(state),
        }  # fmt: skip
        side = clip.path.with_suffix(".json")
        from edge_export.fsutil import atomic_write

        with atomic_write(side) as fh:
            fh.write(json.dumps({**sidecar, "frames": clip.rows}, indent=1).encode())
        self.closed.append(clip.path)
        self._save()
        if self.on_close is not None:
            self.on_close(clip.path, side)

    def _end(self, state: _State, why: str) -> None:
        """Stop a request at once: close its video (within budget), write nothing more."""
        self._safe_close(state)
        state.active, state.ended = False, why
        self.log(f"capture request {state.request.request_id} {why}")
        self._index()

    def close(self) -> None:
        """Close every open video (on stop) and save the counters."""
        for state in self.states.values():
            self._safe_close(state)
        with contextlib.suppress(OSError):
            self._save()

    def _safe_close(self, state: _State) -> None:
        """:meth:`_close_clip`, a failure logged (the line and the other requests go on)."""
        try:
            self._close_clip(state)
        except Exception as e:  # noqa: BLE001 - a capture never stops the inspection line
            state.clip = None
            self.log(f"capture request {state.request.request_id}: video not closed ({e})")

    # -- counters ------------------------------------------------------------------------------
    @staticmethod
    def _totals(state: _State) -> dict[str, int]:
        return {"frames": state.sent_frames, "clips": state.sent_clips,
                "bytes": state.spent_bytes, "skipped_budget": state.skipped_budget}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Per request: camera, policy, whether it runs, what was sent and skipped (for the
        heartbeat); plus the last refused document, if any."""
        return {
            "requests": {
                rid: {
                    "camera": s.request.camera,
                    "policy": s.request.policy,
                    "active": s.active,
                    "ended": s.ended,
                    **self._totals(s),
                }  # fmt: skip
                for rid, s in sorted(self.states.items())
            },
            "refused": self.watcher.problems[-1]
            if self.watcher and self.watcher.problems
            else None,
            "skipped_line_cap": self.skipped_line_cap,
        }

    def _state_file(self) -> Path:
        return self.root / "state.json"

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self._state_file().read_text())
        except (OSError, ValueError):
            return {}

    def _restore(self, state: _State) -> None:
        """What this request sent before a restart (its budget is for its whole life)."""
        saved = self._saved.get(state.request.request_id)
        if not saved:
            return
        state.sent_frames, state.sent_clips = saved["frames"], saved["clips"]
        state.spent_bytes, state.skipped_budget = saved["bytes"], saved["skipped_budget"]
        state.window = deque(saved.get("window", []))

    def _save(self) -> None:
        from edge_export.fsutil import atomic_write

        for rid, s in self.states.items():  # an open video is not sent yet: not counted
            spent = s.spent_bytes - (s.clip_charge if s.clip is not None else 0)
            self._saved[rid] = {**self._totals(s), "bytes": spent, "window": list(s.window)}
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_write(self._state_file()) as fh:
            fh.write(json.dumps(self._saved, indent=1).encode())


class _LazyJpeg:
    """A frame's JPEG, encoded once on first use (shared by the requests that keep it)."""

    def __init__(self, bgr: np.ndarray, quality: int):
        self.bgr, self.quality = bgr, quality
        self._data: bytes | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.bgr.shape[0]), int(self.bgr.shape[1])

    @property
    def data(self) -> bytes:
        if self._data is None:
            import cv2

            ok, buf = cv2.imencode(".jpg", self.bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise ValueError("frame could not be encoded as JPEG")
            self._data = buf.tobytes()
        return self._data


def _one_in(n: int, request_id: str, camera: str, seq: int) -> bool:
    """Deterministic 1-in-``n`` choice of a frame for a request (the same on every run)."""
    if n <= 1:
        return True
    digest = hashlib.blake2b(f"{request_id}:{camera}:{seq}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n == 0

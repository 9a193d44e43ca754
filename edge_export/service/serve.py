"""``lensline-edge serve``: inspect live cameras until told to stop, on the deployed models.

One process per box. Each camera's frames are decoded on their own thread into a bounded queue
(:mod:`edge_export.service.live`: reconnect, stall and drop policy); this loop takes frames from
every camera in turn, scores them in batches across cameras with each camera's deployed champion
(and shadow), runs each camera's alarm state machine, writes one JSON line per frame to the
current result segment and tells the plant (:mod:`edge_export.signals`: MQTT, OPC UA).

**Desired state.** Every ``poll_s`` the watcher (:mod:`edge_export.service.deploy`) reads
``deployments/<box>.json``; a new bundle is downloaded, verified, loaded and warmed *before* it is
swapped in, and the swap happens between two batches: every frame is scored exactly once, by the
old model before the swap and the new one after (each line names its ``model_version``). A
bundle that fails verification or warm-up is refused and reported; the running one keeps going.

**Segments.** Result lines go to ``<out>/results/<camera>/<start>.jsonl``; with a shadow, the
champion-vs-shadow lines also to ``<out>/shadow/``; a closed segment is published to the lake's
``landing/shadow/`` (where ``shadow_sensor`` picks it up) when the deployments root is a lake.
On SIGTERM/SIGINT the loop finishes its batch, closes the segments and exits 0.

Imports nothing heavier than the runner (onnxruntime, PyAV, numpy, OpenCV).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_export.postprocess import AlarmStateMachine, quality_of
from edge_export.quality import frame_stats
from edge_export.service.capture import DisagreementCapture
from edge_export.service.config import ServiceConfig
from edge_export.service.requests import CaptureEngine
from edge_export.service.segments import Segments
from edge_export.service.telemetry import FrameStatsWindow, heartbeat_fields

__all__ = ["Deployed", "Service"]

_WAIT_SLICE_S = 0.002  # gather(): the longest one idle camera is waited on before the next


@dataclass
class Deployed:
    """What one camera runs now: its champion and optional shadow (loaded, warmed models)."""

    champion: Any  # edge_export.runner.pipeline.Model
    shadow: Any | None = None

    @property
    def versions(self) -> tuple[str, str | None]:
        return (
            self.champion.bundle.model_version,
            self.shadow.bundle.model_version if self.shadow is not None else None,
        )


def load_model(bundle: Any, target: str) -> Any:
    """A bundle's model on ``target``, warmed on one blank frame (raises if it cannot run)."""
    from edge_export.runner.pipeline import Model

    # one scoring thread, no spinning between calls: the cores go to the cameras' preprocessing
    model = Model(bundle, target, threads=1)
    size = int(bundle.preprocess.image_size)
    model.predict(np.zeros((1, size, size, 3), np.uint8))
    return model


@dataclass
class _Batch:
    """Frames of one deployment submitted together, with their preprocessing futures."""

    deployed: Deployed
    frames: list[Any] = field(default_factory=list)
    prepared: list[Future] = field(default_factory=list)


@dataclass
class CameraRun:
    """Per-camera state of the loop."""

    fsm: AlarmStateMachine
    frames: int = 0
    alarms: int = 0
    last_label: str | None = None
    last_confidence: float | None = None
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    window: FrameStatsWindow = field(default_factory=FrameStatsWindow)  # since the last beat
    shadow_frames: int = 0  # shadow-scored frames since the last beat
    shadow_agree: int = 0  # of those, where the shadow's label equals the champion's


class Service:
    """The serve loop (see the module docstring). ``sources`` maps camera id to a started or
    startable live source (``get(timeout)``, ``stats()``, ``start()``, ``stop()``); ``signals``
    is a :class:`edge_export.signals` fan-out (or None); ``watcher`` polls the desired state."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        sources: dict[str, Any],
        watcher: Any,
        signals: Any | None = None,
        publish: Callable[[Path], None] | None = None,
        publish_capture: Callable[[Path, Path], None] | None = None,
        publish_telemetry: Callable[[Path], None] | None = None,
        line: Any | None = None,
        make_source: Callable[[Any], Any] | None = None,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = print,
    ):
        self.config, self.sources, self.watcher, self.signals = config, sources, watcher, signals
        # line: true: lines/<box>.json (edge_export.service.line) names the cameras; a change is
        # reconciled between two batches, opening new sources with make_source(CameraConfig)
        self.line, self.make_source = line, make_source
        self._pending_line: tuple[Any, dict[str, Deployed]] | None = None
        self.line_changes: list[dict[str, Any]] = []
        self.clock, self.log = clock, log
        self.deployed: dict[str, Deployed] = {}
        self.cameras: dict[str, CameraRun] = {}
        self.results = Segments(config.out / "results", config.segment_s, clock=clock)
        self.shadow = Segments(
            config.out / "shadow", config.segment_s, on_close=publish, clock=clock
        )
        self.capture = DisagreementCapture(
            config.out / "captures", config.box,
            per_hour=config.shadow_disagreements_per_hour, on_close=publish_capture, clock=clock,
        )  # fmt: skip
        self.requested = CaptureEngine.for_service(  # capture requests (.requests: data on demand)
            config, watcher, on_close=publish_capture, clock=clock, log=log
        )
        self.telemetry = Segments(  # heartbeats (edge_export.service.telemetry)
            config.out / "telemetry", config.telemetry_segment_s, on_close=publish_telemetry,
            clock=clock,
        )  # fmt: skip
        self.stop_event = threading.Event()
        self.swaps: list[dict[str, Any]] = []
        self.refusals: list[str] = []
        self._next_poll = 0.0
        self._next_heartbeat = 0.0
        self._cursor = 0
        self._models: dict[str, Any] = {}
        self._pending: dict[str, Deployed] | None = None
        self._pending_lock = threading.Lock()
        self._poller_thread: threading.Thread | None = None
        # crop, resize, JPEG round trip and frame quality per frame: OpenCV, off the GIL
        self.pool = ThreadPoolExecutor(
            max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="lensline-prep"
        )
        self._beats: dict[str, tuple[float, int]] = {}
        self._inflight: list[_Batch] = []
        self.out_lock: Any = None  # cli.claim_out's lock on config.out, released by run()

    # -- desired state ---------------------------------------------------------------------
    def poll(self) -> None:
        """Read the desired state and apply a change at once (load and warm, then swap)."""
        loaded = self.prepare_change()
        if loaded:
            self.apply(loaded)

    def prepare_change(self) -> dict[str, Deployed] | None:
        """What a change of the desired state asks each camera to run, its models loaded and
        warmed (off the inspection loop: :meth:`run` calls this on the poller thread); None when
        nothing changed or it was refused (reported; what runs keeps running)."""
        change = self.watcher.poll()
        if change is None:
            return None
        for problem in change.problems:
            self._refuse(problem)
        if not change.ok:
            return None
        loaded = self._load(change, [c.id for c in self.config.cameras])
        for key in [k for k in self._models if not Path(k.rsplit(":", 1)[0]).exists()]:
            del self._models[key]  # its bundle left the watcher's cache (pruned): not kept warm
        return loaded

    def _load(self, change: Any, camera_ids: list[str]) -> dict[str, Deployed]:
        """Each camera's models under ``change`` (the desired state), loaded and warmed."""
        loaded: dict[str, Deployed] = {}
        cache = self._models  # loaded, warmed models stay: a rollback swaps at once
        for camera_id in camera_ids:
            roles = change.for_camera(camera_id)
            if "champion" not in roles:
                continue
            try:
                models = {}
                for role, bundle in roles.items():
                    key = f"{bundle.path}:{self.config.target}"
                    if key not in cache:
                        cache[key] = load_model(bundle, self.config.target)
                    models[role] = cache[key]
            except Exception as e:  # noqa: BLE001 - any failure to load is a refusal, never a stop
                self._refuse(f"{camera_id}: bundle cannot run here ({type(e).__name__}: {e})")
                continue
            loaded[camera_id] = Deployed(models["champion"], models.get("shadow"))
        return loaded

    def _refuse(self, problem: str) -> None:
        self.refusals.append(problem)
        self.log(f"refused: {problem}")
        if self.signals is not None:
            self.signals.heartbeat(self.config.box, {"refused": problem})

    def apply(self, loaded: dict[str, Deployed]) -> None:
        """The swap, between two batches: a pointer per camera (models are warm already)."""
        started, swapped = time.perf_counter(), []
        for camera_id, deployed in loaded.items():
            before = self.deployed.get(camera_id)
            self.deployed[camera_id] = deployed
            if before is None or before.versions != deployed.versions:
                swapped.append(
                    {
                        "camera": camera_id,
                        "from": before.versions if before else None,
                        "to": deployed.versions,
                        "at": self.clock(),
                    }  # fmt: skip
                )
                self.log(f"{camera_id} now runs {deployed.versions}")
        pause = time.perf_counter() - started
        self.swaps += [{**s, "pause_s": pause} for s in swapped]

    def _poller(self) -> None:
        """Every ``poll_s``: read the desired state and hand a loaded change to the loop."""
        while not self.stop_event.is_set():
            self.requested.poll()  # capture_requests.json; applied at the next frame
            self._poll_line()
            loaded = self.prepare_change()
            if loaded:
                with self._pending_lock:
                    self._pending = {**(self._pending or {}), **loaded}
            self.stop_event.wait(self.config.poll_s)

    # -- the line's cameras (line: true) ---------------------------------------------------
    def _poll_line(self) -> None:
        """A new verified ``lines/<box>.json``: hand its cameras to the loop, with the models of
        cameras new to this box loaded first (a refusal is reported; the cameras keep running)."""
        if self.line is None:
            return
        before = len(self.line.problems)
        doc = self.line.poll()
        for problem in self.line.problems[before:]:
            self._refuse(f"line: {problem}")
        if doc is None:
            return
        from edge_export.service.line import camera_configs

        running = {c.id for c in self.config.cameras}
        new = [c.id for c in camera_configs(doc) if c.id not in running]
        current = getattr(self.watcher, "current", None)
        loaded = self._load(current, new) if current is not None and current.ok else {}
        with self._pending_lock:
            self._pending_line = (doc, loaded)

    def reconcile(self, doc: Any, loaded: dict[str, Deployed]) -> None:
        """Between two batches: open the cameras the line added, close the ones it removed,
        reopen the ones whose source changed; every other camera keeps running untouched."""
        import dataclasses

        from edge_export.service.line import camera_configs, diff_cameras

        cameras = camera_configs(doc)
        diff = diff_cameras(self.config.cameras, cameras)
        self.drain()  # frames already taken are scored under the cameras they came from
        for camera_id in diff.removed + diff.changed:
            self.sources.pop(camera_id).stop()
            self.results.close_camera(camera_id)
            self.shadow.close_camera(camera_id)
            if camera_id in diff.removed:
                self.deployed.pop(camera_id, None)
                if self.signals is not None:
                    self.signals.camera_state(
                        camera_id, "offline", reason=f"removed from line {doc.line} v{doc.version}"
                    )
        self.config = dataclasses.replace(self.config, cameras=cameras)
        if self.make_source is not None:
            for camera in cameras:
                if camera.id in diff.added + diff.changed:
                    self.sources[camera.id] = self.make_source(camera)
                    self.sources[camera.id].start()
        self.apply(loaded)
        self.requested.limits = doc.capture  # the line's caps bound every capture request
        watcher = getattr(self.requested, "watcher", None)
        if watcher is not None:  # capture requests of the cameras now on this box
            watcher.cameras, watcher._seen = {c.id for c in cameras}, None
            self.requested._next_poll = 0.0
        self.line_changes.append(
            {"line": doc.line, "version": doc.version, "at": self.clock(),
             "added": diff.added, "removed": diff.removed, "reopened": diff.changed}
        )  # fmt: skip
        self.log(f"line {doc.line} v{doc.version}: {diff.describe()}")

    # -- frames ----------------------------------------------------------------------------
    def gather(self, timeout: float = 0.05) -> list[Any]:
        """Up to ``batch`` frames, taken from the cameras in turn (fair under load)."""
        ids = [c.id for c in self.config.cameras if c.id in self.deployed]
        out: list[Any] = []
        if not ids:
            time.sleep(timeout)
            return out
        idle = 0
        while len(out) < self.config.batch and idle < len(ids):
            camera = ids[self._cursor % len(ids)]
            self._cursor += 1
            frame = self.sources[camera].get(0)
            if frame is None:
                idle += 1
                continue
            idle = 0
            out.append(frame)
        # Nothing waiting anywhere: wait for the first frame of *any* camera. Blocking on one
        # camera for the whole timeout held the others' frames back by up to a frame interval
        # (benchmarks/edge_serve.py); with several cameras, wait in slices of _WAIT_SLICE_S.
        deadline = time.monotonic() + timeout
        slice_s = timeout if len(ids) == 1 else _WAIT_SLICE_S
        while not out and (left := deadline - time.monotonic()) > 0:
            camera = ids[self._cursor % len(ids)]
            self._cursor += 1
            frame = self.sources[camera].get(min(slice_s, left))
            if frame is not None:
                out.append(frame)
        return out

    def submit(self, frames: list[Any]) -> list[_Batch]:
        """Start preprocessing a batch on the pool, grouped by the model each camera runs *now*:
        a frame is scored by the deployment that was live when it was taken from its queue,
        even if a swap lands while it is being prepared (the swap's frame boundary)."""
        groups: dict[int, _Batch] = {}
        for f in frames:
            deployed = self.deployed[f.camera_id]
            batch = groups.setdefault(id(deployed), _Batch(deployed))
            batch.frames.append(f)
            batch.prepared.append(self.pool.submit(_prepare, deployed, f))
        return list(groups.values())

    def finish(self, batches: list[_Batch]) -> None:
        """Score submitted batches (the model once per group), then alarms, lines, signals."""
        for batch in batches:
            deployed = batch.deployed
            prepared = [p.result() for p in batch.prepared]
            labels, confs = deployed.champion.predict(np.stack([p[0] for p in prepared]))
            shadow_out = None
            if deployed.shadow is not None:
                shadow_out = deployed.shadow.predict(
                    np.stack([p[1] for p in prepared if p[1] is not None])
                )
            for i, f in enumerate(batch.frames):
                self._emit(f, deployed, labels[i], float(confs[i]), shadow_out, i, prepared[i][2])
            self._observe(batch.frames, prepared, labels, shadow_out)

    def _observe(self, frames: list[Any], prepared: list[tuple], labels, shadow_out) -> None:
        """Telemetry of a scored batch: frame statistics and shadow agreement per camera."""
        for i, f in enumerate(frames):
            run = self.cameras[f.camera_id]
            run.window.add(prepared[i][3])
            if shadow_out is not None:
                run.shadow_frames += 1
                run.shadow_agree += int(shadow_out[0][i] == labels[i])

    def score(self, frames: list[Any]) -> None:
        """Prepare and score one batch now (no pipelining; tests and single passes)."""
        self.finish(self.submit(frames))

    def _emit(
        self, f: Any, deployed: Deployed, label: str, conf: float, shadow_out, i: int, quality
    ) -> None:
        rules = deployed.champion.bundle.postprocess
        run = self.cameras.setdefault(f.camera_id, CameraRun(AlarmStateMachine(rules)))
        if run.fsm.rules is not rules:  # a new champion brings its own rules: a fresh machine
            run.fsm = AlarmStateMachine(rules)
        event = run.fsm.step(label, conf, quality in (None, "ok"))
        row: dict[str, Any] = {
            "video": f.camera_id,
            "frame_index": f.seq,
            "timestamp_s": f.pts,
            "label": label,
            "confidence": round(conf, 6),
            "alarm": event.alarm,
            "model_version": deployed.champion.bundle.model_version,
            "camera_id": f.camera_id,
            "quality": quality,
            "alarm_event": "raised" if event.raised else "cleared" if event.cleared else None,
            "captured_at": f.captured_at,
        }
        run.frames += 1
        run.last_label, run.last_confidence = label, conf
        run.latencies.append(self.clock() - f.captured_at)
        if shadow_out is not None and deployed.shadow is not None:
            row["shadow_label"] = shadow_out[0][i]
            row["shadow_confidence"] = round(float(shadow_out[1][i]), 6)
            row["shadow_model_version"] = deployed.shadow.bundle.model_version
            self.shadow.write(f.camera_id, row)
            if row["shadow_label"] != label:  # evidence for the promotion decision and labels
                keep = ("frame_index", "captured_at", "model_version", "label", "confidence",
                        "shadow_model_version", "shadow_label", "shadow_confidence")  # fmt: skip
                self.capture.add(f.camera_id, f.bgr, {k: row[k] for k in keep})
        self.requested.offer(f, row, deployed.champion, i)  # what capture requests keep
        self.results.write(f.camera_id, row)
        if self.signals is not None:
            self.signals.result(f.camera_id, row)  # published when the sink's `results` is on
            if event.raised or event.cleared:
                run.alarms += int(event.raised)
                self.signals.alarm(f.camera_id, {
                    "state": "raised" if event.raised else "cleared", "class": label,
                    "confidence": round(conf, 6), "frame_index": f.seq, "frame_time": f.captured_at,
                    "model_version": row["model_version"],
                })  # fmt: skip

    # -- health ----------------------------------------------------------------------------
    def heartbeat(self) -> dict[str, Any]:
        """One heartbeat per camera (fps, latency, drops, stream state and gaps, alarms, models,
        shadow agreement, frame statistics: :mod:`edge_export.service.telemetry`), written to
        the telemetry segment and sent to the plant signals."""
        beats = {}
        # box-wide counters, read once per heartbeat
        captures, requested = self.capture.stats(), self.requested.stats()
        signals = self.signals.stats() if self.signals is not None else {}
        for camera in self.config.cameras:
            run = self.cameras.get(camera.id)
            stats = self.sources[camera.id].stats()
            lat = np.asarray(run.latencies if run else [], float)
            deployed = self.deployed.get(camera.id)
            beats[camera.id] = {
                "box": self.config.box,
                "camera": camera.id,
                "at": self.clock(),
                **heartbeat_fields(
                    deployed,
                    stats,
                    shadow_frames=run.shadow_frames if run else 0,
                    shadow_agree=run.shadow_agree if run else 0,
                ),
                "heartbeat_s": self.config.heartbeat_s,
                "segment_s": self.config.telemetry_segment_s,
                "frames": run.frames if run else 0,
                "fps": self._fps(camera.id, run.frames if run else 0),
                "alarms": run.alarms if run else 0,
                "latency_p50_s": float(np.percentile(lat, 50)) if lat.size else None,
                "latency_p95_s": float(np.percentile(lat, 95)) if lat.size else None,
                "stream": stats,
                "refused": self.refusals[-3:],
                "shadow_captures": captures,
                "capture_requests": _of_camera(requested, camera.id),
                "signals": signals,
                "frame_stats": (run.window if run else FrameStatsWindow()).take(),
            }
            if run is not None:
                run.shadow_frames = run.shadow_agree = 0
            self.telemetry.write(camera.id, beats[camera.id])
            if self.signals is not None:
                self.signals.heartbeat(camera.id, beats[camera.id])
        return beats

    def _fps(self, camera: str, frames: int) -> float:
        """Inspected frames per second since the previous heartbeat."""
        now = self.clock()
        before = self._beats.get(camera)
        self._beats[camera] = (now, frames)
        if before is None or now <= before[0]:
            return 0.0
        return round((frames - before[1]) / (now - before[0]), 2)

    # -- loop ------------------------------------------------------------------------------
    def step(self) -> int:
        """One pass: poll if due, gather and score one batch, heartbeat if due; frames scored."""
        now = self.clock()
        if self._pending_line is not None:
            with self._pending_lock:
                (doc, loaded), self._pending_line = self._pending_line, None
            self.reconcile(doc, loaded)
        if self._pending is not None:
            with self._pending_lock:
                loaded, self._pending = self._pending, None
            self.apply(loaded)
        elif self._poller_thread is None and now >= self._next_poll:
            self._next_poll = now + self.config.poll_s  # stepped by hand (no poller thread)
            self._poll_line()  # a line change is reconciled at the next step
            self.poll()
        # Two batches in flight: the next one is prepared on the pool while this thread scores
        # and emits the previous one (prep was ~95 % of the loop's wait at 8 cameras). With a
        # batch in flight, gather() does not block: the waiting batch is finished at once.
        frames = self.gather(0.0 if self._inflight else 0.05)
        submitted = self.submit(frames) if frames else []
        inflight, self._inflight = self._inflight, submitted
        if inflight:
            self.finish(inflight)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            self.heartbeat()
            self.results.flush()
            self.telemetry.flush()
        return len(frames)

    def run(self) -> int:
        """Until :attr:`stop_event` is set (SIGTERM/SIGINT): then flush, close, exit code 0."""
        for segments in (self.results, self.shadow, self.telemetry):
            for path in segments.recover():  # left open by a killed run: closed and published
                self.log(f"recovered {path} (left open by a previous run)")
        for source in self.sources.values():
            source.start()
        self.poll()  # the first desired state before the first frame
        self._poller_thread = threading.Thread(
            target=self._poller, name="lensline-poll", daemon=True
        )
        self._poller_thread.start()
        try:
            while not self.stop_event.is_set():
                self.step()
            self.drain()
        finally:
            self._poller_thread.join(timeout=5)
            self.pool.shutdown(wait=True)
            for source in self.sources.values():
                source.stop()
            self.results.close()
            self.shadow.close()
            self.capture.close()
            self.requested.close()
            self.heartbeat()  # the last beat: to the telemetry segment (and the plant)
            self.telemetry.close()
            if self.signals is not None:
                self.signals.close()
            if self.out_lock is not None:
                self.out_lock.close()
        return 0

    def drain(self) -> None:
        """Score the batch still in flight (on stop: every frame taken is scored and written)."""
        inflight, self._inflight = self._inflight, []
        if inflight:
            self.finish(inflight)

    def install_signal_handlers(self) -> None:
        def stop(signum, _frame) -> None:
            self.log(f"{signal.Signals(signum).name}: finishing")
            self.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def _of_camera(requested: dict[str, Any], camera: str) -> dict[str, Any]:
    """What ``camera``'s capture requests sent and skipped, from the engine's ``stats()``."""
    mine = {k: v for k, v in requested["requests"].items() if v["camera"] == camera}
    return {**requested, "requests": mine}


def _prepare(
    deployed: Deployed, f: Any
) -> tuple[np.ndarray, np.ndarray | None, str | None, dict[str, float]]:
    """One frame's champion input, shadow input (None without a shadow), quality and
    :func:`edge_export.quality.frame_stats`."""
    spec = deployed.champion.bundle.preprocess
    img = spec.image(spec.source(f.bgr), f.camera_id)
    other = None
    if deployed.shadow is not None:
        sspec = deployed.shadow.bundle.preprocess
        other = img if sspec == spec else sspec.image(sspec.source(f.bgr), f.camera_id)
    rules = deployed.champion.bundle.postprocess
    stats = frame_stats(f.bgr)  # for the alarm rules and the telemetry (same statistic as drift)
    quality = quality_of(stats, rules) if rules.ignore_quality else None
    return img, other, quality, stats

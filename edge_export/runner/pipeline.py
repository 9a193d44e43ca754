"""The inspection pipeline of ``lensline-edge``: decode, preprocess, score, alarm, JSON lines.

Frames of each stream are decoded on a worker thread (:func:`.sources.prefetch`)
and preprocessed on a thread pool (the source pixels the model was trained on -- a video frame
goes through the spec's JPEG round trip --, crop + resize per model, frame quality; OpenCV runs
off the GIL) while the model scores the previous batch. Each stream has its own alarm state machine;
each inspected frame becomes one JSON line::

    {"video": "cam1__line_0001", "frame_index": 12, "timestamp_s": 0.8, "label": "scratch",
     "confidence": 0.97, "alarm": false, "model_version": "m-003", "camera_id": "cam1",
     "quality": "ok", "alarm_event": null}

With a shadow bundle each line adds ``shadow_label``, ``shadow_confidence`` and
``shadow_model_version``; only the champion's rules raise alarms. :class:`RunStats` sums up
a run.

Imports numpy, OpenCV and onnxruntime (through :mod:`edge_export.runtime`) only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from edge_export.bundle import Bundle, BundleError
from edge_export.postprocess import AlarmStateMachine, frame_quality
from edge_export.preprocess import PreprocessError
from edge_export.runner.sources import (
    DecodeError,
    InputError,
    Source,
    iter_images,
    iter_video,
    prefetch,
)
from edge_export.shadow import compare_shadow

__all__ = ["Model", "Prepared", "Progress", "RunStats", "run"]


# ------------------------------------------------------------------------------- models


class Model:
    """A bundle's model on one target: float32 NCHW in, (labels, confidences) out."""

    def __init__(self, bundle: Bundle, target: str, *, threads: int | None = None):
        from edge_export.runtime import Predictor

        self.bundle = bundle
        runtime_target = "openvino" if target == "openvino_int8" else target
        self.predictor = Predictor(bundle.model_path(target), runtime_target, threads=threads)
        self.classes = np.asarray(bundle.classes, dtype=object)
        self.last_margins: np.ndarray = np.zeros(0, np.float32)  # of the latest predict() call

    def predict(self, images: np.ndarray) -> tuple[list[str], np.ndarray]:
        """RGB uint8 (N, S, S, 3) from ``spec.image`` -> top-1 labels, float32 confidences (N,)."""
        probs = self.predictor.probs(self.bundle.preprocess.normalize(images))
        if probs.shape[1] != len(self.classes):
            raise BundleError(
                self.bundle.path,
                f"model outputs {probs.shape[1]} classes but classes.json lists "
                f"{len(self.classes)} ({', '.join(self.classes)})",
            )
        top = probs.argmax(axis=1)
        # top-1 minus top-2 probability of this call's images (capture requests' `uncertain`
        # policy reads it right after the call, on the same thread; 1.0 with one class)
        ranked = np.sort(probs, axis=1)
        self.last_margins = ranked[:, -1] - (ranked[:, -2] if probs.shape[1] > 1 else 0.0)
        return list(self.classes[top]), probs[np.arange(len(top)), top]


# ------------------------------------------------------------------------------- run


@dataclass
class RunStats:
    """What a run did; ``errors`` name each file that could not be decoded."""

    streams: int = 0
    frames: int = 0
    alarms: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    shadow: dict[str, Any] | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Progress:
    """Progress on stderr: a live line on a TTY, else one line every ``every_s`` seconds."""

    def __init__(self, stream: IO[str], *, every_s: float = 10.0, enabled: bool = True):
        self.stream, self.enabled = stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.every_s = 0.5 if self.tty else every_s
        self.start = self.last = time.perf_counter()

    def update(self, stats: RunStats, where: str, total: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.start
        line = (
            f"[{elapsed:6.1f}s] stream {stats.streams}/{total} {where}: {stats.frames} frames, "
            f"{stats.frames / elapsed:.1f} fps, {sum(stats.alarms.values())} alarms"
        )
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self.last != self.start:
            self.stream.write("\n")


Prepared = tuple[int, float | None, np.ndarray, np.ndarray, str | None]
"""(frame_index, timestamp_s, champion input image, shadow input image, quality)."""


class _Inspection:
    """One run: decode on a thread, preprocess on a pool, score in batches, alarms, JSON lines."""

    def __init__(
        self,
        champion: Bundle,
        shadow: Bundle | None,
        out: IO[str],
        *,
        target: str,
        every: int,
        batch_size: int,
        threads: int | None,
        workers: int | None,
    ):
        self.champion, self.shadow, self.out = champion, shadow, out
        self.every, self.batch_size = every, batch_size
        self.model = Model(champion, target, threads=threads)
        self.shadow_model = Model(shadow, target, threads=threads) if shadow else None
        self.same_spec = shadow is None or shadow.preprocess == champion.preprocess
        self.rules = champion.postprocess
        self.stats = RunStats()
        self.rows: list[dict[str, Any]] = []
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lensline-edge-prep")

    def frames(self, src: Source) -> Iterator[tuple[int, float | None, np.ndarray]]:
        if src.kind == "video":
            return iter_video(src.path, every=self.every)
        return iter_images(src, every=self.every, errors=self.stats.errors)

    def prepare(self, src: Source, index: int, ts: float | None, bgr: np.ndarray) -> Prepared:
        """Source pixels, crop + resize for each model; quality on the raw frame (OpenCV: off
        the GIL). A video frame first gets the JPEG round trip its model was trained on
        (``PreprocessSpec.source``: the lake's quality-90 JPEGs); image files are used as stored."""
        spec = self.champion.preprocess
        video = src.kind == "video"
        pixels = spec.source(bgr) if video else bgr
        img = spec.image(pixels, src.camera_id)
        other = img
        if self.shadow is not None and not self.same_spec:
            shadow_spec = self.shadow.preprocess
            if video and shadow_spec.jpeg_quality != spec.jpeg_quality:
                pixels = shadow_spec.source(bgr)
            other = shadow_spec.image(pixels, src.camera_id)
        quality = frame_quality(bgr, self.rules) if self.rules.ignore_quality else None
        return index, ts, img, other, quality

    def inspect(self, src: Source, progress: Progress | None, total: int, start: float) -> None:
        """Decode on one thread, preprocess on the pool, score batches here, in frame order."""
        stats = self.stats
        stats.streams += 1
        stats.alarms.setdefault(src.video, 0)
        fsm = AlarmStateMachine(self.rules)
        batch: list[Prepared] = []

        def submitted() -> Iterator[Future[Prepared]]:
            for index, ts, bgr in self.frames(src):
                yield self.pool.submit(self.prepare, src, index, ts, bgr)

        depth = self.batch_size + 2 * self.workers
        try:
            for future in prefetch(submitted, depth=depth):
                batch.append(future.result())
                if len(batch) >= self.batch_size:
                    self.score(src, fsm, batch)
                    batch = []
                    if progress is not None:
                        stats.seconds = time.perf_counter() - start
                        progress.update(stats, src.video, total)
        except DecodeError as e:
            stats.errors.append(str(e))
        except PreprocessError as e:
            stats.errors.append(f"{src.path}: cannot preprocess ({e})")
        if batch:
            self.score(src, fsm, batch)

    def score(self, src: Source, fsm: AlarmStateMachine, batch: list[Prepared]) -> None:
        labels, confs = self.model.predict(np.stack([b[2] for b in batch]))
        shadow_out = None
        if self.shadow_model is not None:
            shadow_out = self.shadow_model.predict(np.stack([b[3] for b in batch]))
        for i, (index, ts, _, _, quality) in enumerate(batch):
            event = fsm.step(labels[i], float(confs[i]), quality in (None, "ok"))
            row: dict[str, Any] = {
                "video": src.video,
                "frame_index": index,
                "timestamp_s": ts,
                "label": labels[i],
                "confidence": round(float(confs[i]), 6),
                "alarm": event.alarm,
                "model_version": self.champion.model_version,
                "camera_id": src.camera_id,
                "quality": quality,
                "alarm_event": "raised" if event.raised else "cleared" if event.cleared else None,
            }
            if event.raised:
                self.stats.alarms[src.video] += 1
            if shadow_out is not None and self.shadow is not None:
                row["shadow_label"] = shadow_out[0][i]
                row["shadow_confidence"] = round(float(shadow_out[1][i]), 6)
                row["shadow_model_version"] = self.shadow.model_version
                self.rows.append(row)
            self.out.write(json.dumps(row) + "\n")
        self.stats.frames += len(batch)


def run(
    champion: Bundle,
    sources: Sequence[Source],
    out: IO[str],
    *,
    target: str = "onnx",
    shadow: Bundle | None = None,
    every: int = 1,
    batch_size: int = 16,
    threads: int | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> RunStats:
    """Inspect ``sources`` with ``champion`` (and ``shadow``), writing one JSON line per frame.

    ``threads``: inference threads (runtime default when ``None``); ``workers``: preprocessing
    threads (default ``min(4, cpu_count)``). Raises :class:`BundleError` / :class:`InputError`
    for unusable bundles; a stream that cannot be decoded is recorded in ``RunStats.errors``
    and the run goes on.
    """
    if shadow is not None and list(shadow.classes) != list(champion.classes):
        raise InputError(
            f"class map of shadow bundle {shadow.path} {shadow.classes} differs from the "
            f"champion {champion.path} {champion.classes}"
        )
    job = _Inspection(
        champion,
        shadow,
        out,
        target=target,
        every=every,
        batch_size=batch_size,
        threads=threads,
        workers=workers,
    )
    start = time.perf_counter()
    try:
        for src in sources:
            job.inspect(src, progress, len(sources), start)
    finally:
        job.pool.shutdown(wait=True, cancel_futures=True)
    job.stats.seconds = time.perf_counter() - start
    if shadow is not None:
        job.stats.shadow = compare_shadow(job.rows)
    if progress is not None:
        progress.done()
    return job.stats

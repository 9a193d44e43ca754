"""``lensline-edge``: run a verified edge bundle on video or images, on a box without Dagster or torch.

::

    lensline-edge run BUNDLE INPUT --out OUT.jsonl [--target onnx|int8|openvino|openvino_int8]
                      [--shadow OTHER_BUNDLE] [--every N] [--trusted-key PUB] [--camera ID]
    lensline-edge verify BUNDLE [--trusted-key PUB]

``INPUT`` is a video file, a folder of videos (searched recursively; the camera id of a video
is its parent folder's name, as in ``landing/videos/<camera_id>/``) or a folder of images (one
stream named after the folder; ``frame_index`` from the digits in ``000123.jpg``, else the sorted
order). Each inspected frame becomes one JSON line of ``OUT.jsonl``::

    {"video": "cam1__line_0001", "frame_index": 12, "timestamp_s": 0.8, "label": "scratch",
     "confidence": 0.97, "alarm": false, "model_version": "m-003", "camera_id": "cam1",
     "quality": "ok", "alarm_event": null}

``video`` is the Lensline video id (``<camera_id>__<stem>``, as the ``predictions`` table
keys it); ``timestamp_s`` is ``null`` for images; ``quality`` is ``ok`` / ``dark`` / ``blurry``
(``null`` when the rules do not look at quality); ``alarm_event`` is ``raised`` / ``cleared`` /
``null``. With ``--shadow`` each line adds ``shadow_label``, ``shadow_confidence`` and
``shadow_model_version``; only the champion's rules raise alarms.

The output is written to a hidden temp file beside ``OUT.jsonl`` and moved into place at the
end (fsync + ``os.replace``), so a sensor watching ``landing/shadow/`` never sees half a file.
Frames are decoded (PyAV, FFmpeg frame threads) and preprocessed on a worker thread while the
model scores the previous batch.

Exit codes: 0 ok; 1 a video or image could not be decoded (the others are still processed) or
the target's runtime is missing; 2 usage error; 3 input rejected (bundle tampered, unsigned
while a key is pinned, unknown format, class maps disagree; input missing or empty).

Imports numpy, OpenCV, PyAV, onnxruntime and ``cryptography`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from edge_export.bundle import ENV_TRUSTED, Bundle, BundleError, SigningKeyError, open_bundle
from edge_export.bundle import load_trusted_key as _load_trusted_key
from edge_export.postprocess import AlarmStateMachine, frame_quality
from edge_export.shadow import compare_shadow, format_summary
from training.preprocess import PreprocessError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "InputError",
    "RunStats",
    "Source",
    "discover",
    "main",
    "run",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3
VIDEO_EXTS = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts", ".mpg", ".mpeg"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
_DIGITS = re.compile(r"(\d+)(?!.*\d)")


class InputError(ValueError):
    """The runner's input cannot be used at all (missing, empty, class maps disagree)."""


class DecodeError(RuntimeError):
    """One video or image could not be decoded (the run goes on with the others)."""


# ------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Source:
    """One stream to inspect: a video file, or an ordered folder of images."""

    kind: Literal["video", "images"]
    path: Path
    video: str
    camera_id: str | None
    images: tuple[tuple[int, Path], ...] = ()


def _video_id(camera_id: str | None, path: Path) -> str:
    from data_quality.video import video_id_for

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
    ``every``-th frame. :class:`DecodeError` naming the file when it cannot be decoded."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise DecodeError(f"{path}: not a readable video ({_reason(e)})") from None
    with container:
        if not container.streams.video:
            raise DecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        dt = 1.0 / float(rate) if rate else 0.0
        index = 0
        try:
            for frame in container.decode(stream):
                if index % every == 0:
                    ts = float(frame.time) if frame.time is not None else index * dt
                    yield index, round(ts, 6), frame.to_ndarray(format="bgr24")
                index += 1
        except av.FFmpegError as e:
            raise DecodeError(
                f"{path}: undecodable data after frame {index} ({_reason(e)})"
            ) from None
        if index == 0:
            raise DecodeError(f"{path}: no decodable frames")


def _reason(e: BaseException) -> str:
    return str(getattr(e, "strerror", None) or e).strip() or type(e).__name__


def iter_images(
    source: Source, *, every: int = 1, errors: list[str] | None = None
) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """Decode an image stream; undecodable files go to ``errors`` (named) and are skipped."""
    from training.preprocess import decode_image

    for n, (index, path) in enumerate(source.images):
        if n % every:
            continue
        try:
            yield index, None, decode_image(path)
        except (PreprocessError, OSError) as e:
            if errors is None:
                raise DecodeError(str(e)) from None
            errors.append(f"{path}: cannot decode image ({e})")


# ------------------------------------------------------------------------------- models


class Model:
    """A bundle's model on one target: float32 NCHW in, (labels, confidences) out."""

    def __init__(self, bundle: Bundle, target: str, *, threads: int | None = None):
        from edge_export.runtime import Predictor

        self.bundle = bundle
        runtime_target = "openvino" if target == "openvino_int8" else target
        self.predictor = Predictor(bundle.model_path(target), runtime_target, threads=threads)
        self.classes = np.asarray(bundle.classes, dtype=object)

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


_END = object()


def _prefetch(make: Callable[[], Iterator[Any]], depth: int) -> Iterator[Any]:
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
        """Crop + resize for each model, quality on the raw frame (OpenCV: runs off the GIL)."""
        img = self.champion.preprocess.image(bgr, src.camera_id)
        other = img
        if self.shadow is not None and not self.same_spec:
            other = self.shadow.preprocess.image(bgr, src.camera_id)
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
            for future in _prefetch(submitted, depth=depth):
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


# ------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lensline-edge",
        description="Run a signed Lensline edge bundle on video or images (no Dagster, no torch).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="inspect a video, a folder of videos or an image folder")
    r.add_argument("bundle", type=Path, help="bundle.tar.gz of the champion")
    r.add_argument("input", type=Path, help="video file, folder of videos, or image folder")
    r.add_argument("--out", type=Path, required=True, help="JSONL output, one line per frame")
    r.add_argument(
        "--target", default="onnx", choices=["onnx", "int8", "openvino", "openvino_int8"]
    )
    r.add_argument("--shadow", type=Path, help="challenger bundle run beside the champion")
    r.add_argument("--every", type=int, default=1, help="inspect every N-th frame (default 1)")
    r.add_argument("--camera", help="camera id for per-camera crops (default: parent folder)")
    r.add_argument("--batch", type=int, default=16, help="frames per model call (default 16)")
    r.add_argument("--threads", type=int, help="inference threads (default: runtime decides)")
    r.add_argument("--workers", type=int, help="preprocessing threads (default: min(4, CPUs))")
    r.add_argument("--progress-every", type=float, default=10.0, help=argparse.SUPPRESS)
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    v = sub.add_parser("verify", help="verify a bundle and print its manifest summary")
    v.add_argument("bundle", type=Path)
    for sp in (r, v):
        sp.add_argument(
            "--trusted-key",
            help=f"expected signer: PEM file, PEM text or sha256 fingerprint (env {ENV_TRUSTED})",
        )
    return p


def _err(msg: str) -> None:
    print(f"lensline-edge: {msg}", file=sys.stderr)


def _open(path: Path, trusted: Any, role: str) -> Bundle:
    bundle = open_bundle(path, trusted_public_key=trusted)
    if bundle.signature.kind == "unsigned":
        _err(f"WARNING: {role} bundle {path} is UNSIGNED (allowed: no trusted key configured)")
    else:
        _err(f"{role} bundle {path}: {bundle.signature.message}")
    return bundle


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``lensline-edge``; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "run" and min(args.every, args.batch, args.workers or 1) < 1:
        _err("--every, --batch and --workers must be >= 1")
        return EXIT_USAGE
    bundles: list[Bundle] = []
    try:
        key_arg = args.trusted_key or os.environ.get(ENV_TRUSTED) or None
        source = "--trusted-key" if args.trusted_key else ENV_TRUSTED
        trusted = _load_trusted_key(key_arg, source=source) if key_arg else None
        bundles.append(_open(args.bundle, trusted, "champion" if args.command == "run" else "the"))
        champion = bundles[0]
        if args.command == "verify":
            print(_describe(champion))
            return EXIT_OK
        champion.model_path(args.target)
        if args.shadow is not None:
            bundles.append(_open(args.shadow, trusted, "shadow"))
            bundles[1].model_path(args.target)
        sources = discover(args.input, camera=args.camera)
        return _run_cli(args, champion, bundles[1] if len(bundles) > 1 else None, sources)
    except (BundleError, SigningKeyError, InputError) as e:
        _err(f"error: {e}")
        return EXIT_REJECTED
    finally:
        for b in bundles:
            b.close()


def _describe(b: Bundle) -> str:
    targets = ", ".join(f"{t}: {s}" for t, s in b.targets.items())
    return (
        f"bundle {b.path}\n  sha256 {b.sha256}\n  model {b.model_version} "
        f"({b.manifest.get('created_at')})\n  classes {', '.join(b.classes)}\n"
        f"  targets {targets}\n  signature {b.signature.message}\n"
        f"  files {len(b.manifest['files'])} verified"
    )


def _run_cli(args: argparse.Namespace, champion: Bundle, shadow: Bundle | None, sources) -> int:
    from edge_export.runtime import PredictorError, TargetUnavailable

    out_path: Path = args.out
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    progress = Progress(sys.stderr, every_s=args.progress_every, enabled=not args.quiet)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            try:
                stats = run(
                    champion,
                    sources,
                    fh,
                    target=args.target,
                    shadow=shadow,
                    every=args.every,
                    batch_size=args.batch,
                    threads=args.threads,
                    workers=args.workers,
                    progress=progress,
                )
            except (TargetUnavailable, PredictorError) as e:
                _err(f"error: {e}")
                return EXIT_FAILED
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    print(_summary(stats, champion, args, out_path))
    for problem in stats.errors:
        _err(f"error: {problem}")
    return EXIT_FAILED if stats.errors else EXIT_OK


def _summary(stats: RunStats, champion: Bundle, args: argparse.Namespace, out: Path) -> str:
    raised = sum(stats.alarms.values())
    per = ", ".join(f"{v}: {n}" for v, n in stats.alarms.items() if n)
    lines = [
        f"lensline-edge: {champion.model_version} ({args.target}) on {args.input}",
        f"streams: {stats.streams}, decode errors: {len(stats.errors)}",
        f"frames inspected: {stats.frames} in {stats.seconds:.2f} s = {stats.fps:.1f} fps"
        + (f" (every {args.every}th frame)" if args.every > 1 else ""),
        f"alarms raised: {raised}" + (f" ({per})" if per else "")
        if champion.postprocess.enabled
        else f"alarms off: {champion.postprocess.disabled_reason}",
    ]
    if stats.shadow is not None:
        lines.append(format_summary(stats.shadow))
    lines.append(f"output: {out}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

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
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_export.bundle import ENV_TRUSTED, Bundle, BundleError, SigningKeyError, open_bundle
from edge_export.bundle import load_trusted_key as _load_trusted_key
from edge_export.fsutil import atomic_write
from edge_export.runner.pipeline import Progress, RunStats, run
from edge_export.runner.sources import InputError, discover
from edge_export.shadow import format_summary

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3


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
    sub.add_parser(
        "serve",
        help="inspect live cameras until stopped: lensline-edge serve CONFIG.yaml (see its --help)",
        add_help=False,
    )
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # the long-running service has its own options
        from edge_export.service.cli import main as serve

        return serve(argv[1:])
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
    progress = Progress(sys.stderr, every_s=args.progress_every, enabled=not args.quiet)
    try:
        # a hidden temp file beside out_path, fsynced and moved into place only on success
        with atomic_write(out_path, "w") as fh:
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

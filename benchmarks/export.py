"""Edge export on the demo champion: latency of every target, the INT8 accuracy drop, runner fps.

::

    python benchmarks/export.py [--home LENSLINE_HOME] [--iters 300] [--threads 1]

``--home`` is a Lensline home after ``lensline demo`` (a champion in the registry). Without it,
a temp home is made and ``lensline demo --cameras 3 --videos-per-camera 2 --seconds 20`` runs
in it first (a few minutes).

On the champion (its own checkpoint, preprocessing contract and dataset version):

1. exports FP32 ONNX (parity gate on the test split), ONNX Runtime INT8 (QDQ S8S8, and U8S8)
   and OpenVINO FP32 IR + NNCF INT8, calibrated on curated *train* frames;
2. INT8 accuracy against FP32 on the test split (the ``int8_accuracy`` gate) for each INT8;
3. batch-1 p50/p95 and batch-64 throughput of torch eager and every target on the same real
   test inputs, all with the same intra-op threads (``--threads``, default 1: on a shared box
   more threads measure the neighbours), ratios to torch eager batch-1, and the physical
   reference (MACs / measured GEMM throughput);
4. the floors: ONNX Runtime FP32 <= 0.7x and INT8 <= 0.5x torch-eager batch-1 p50;
5. if ``edge_export.runner`` and an edge bundle of the champion exist
   (``artifacts/bundles/<version>/bundle.tar.gz``, built by ``lensline demo``), the runner's
   end-to-end fps on one demo video against PyAV decode-only fps of the same file.

Runs alternate nothing and pin nothing: read p50 (median) rather than p95 on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def ensure_home(home: str | None) -> Path:
    """A Lensline home with a champion: ``home`` itself, or a fresh demo in a temp home."""
    if home:
        path = Path(home).resolve()
        if not (path / "lake" / "models").exists():
            sys.exit(f"{path} has no model registry: run `lensline demo` with LENSLINE_HOME={path}")
        return path
    path = Path(tempfile.mkdtemp(prefix="lensline-export-bench-")) / "home"
    (path / "dagster").mkdir(parents=True)
    (path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "LENSLINE_HOME": str(path), "DAGSTER_HOME": str(path / "dagster")}
    env.pop("LENSLINE_STORAGE", None)
    cmd = [sys.executable, "-m", "orchestration.cli", "demo", "--cameras", "3",
           "--videos-per-camera", "2", "--seconds", "20"]  # fmt: skip
    print(f"no --home: running `lensline demo` in {path} ...", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    print(f"demo finished in {time.perf_counter() - t0:.0f}s (exit {done.returncode})")
    if not (path / "lake" / "models").exists():
        sys.exit(f"demo produced no model registry:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return path


def load(home: Path) -> dict:
    """Champion model, classes, spec, train calibration inputs, test inputs and labels."""
    os.environ["LENSLINE_HOME"] = str(home)
    os.environ.pop("LENSLINE_STORAGE", None)
    from assets.models import split_images
    from lake.storage import LensStorage
    from training.checkpoint import checkpoint_spec, load_checkpoint

    storage = LensStorage()
    record = storage.registry().champion()
    if record is None:
        sys.exit(f"{home}: no champion in the registry")
    model, meta = load_checkpoint(
        storage.fetch_local([record.checkpoint_uri])[0], expected_sha256=record.checkpoint_sha256
    )
    classes, spec = json.loads(meta["classes"]), checkpoint_spec(meta)
    version = record.dataset_version
    train, _, _ = split_images(storage, "train", classes, spec, version=version)
    test, y, _ = split_images(storage, "test", classes, spec, version=version)
    keep = np.linspace(0, len(train) - 1, min(256, len(train))).round().astype(int)
    return {
        "record": record,
        "model": model,
        "classes": classes,
        "spec": spec,
        "calibration": spec.normalize(train[keep]),
        "x": spec.normalize(test),
        "y": y,
        "storage": storage,
    }


def export_all(c: dict, out: Path) -> tuple[dict[str, tuple[Path, str]], list[str]]:
    """Every target's file (name -> (path, Predictor target)) and the gate lines."""
    from edge_export import openvino as ovx
    from edge_export.int8 import evaluate_int8, quantize_int8
    from edge_export.onnx import export_onnx, verify_parity

    lines = []
    t0 = time.perf_counter()
    fp32 = export_onnx(c["model"], out / "model.onnx", image_size=c["spec"].image_size)
    parity = verify_parity(c["model"], fp32, c["x"])
    lines.append(
        f"onnx_parity: {'PASS' if parity.passed else 'FAIL'}  max |dlogit| "
        f"{parity.max_abs_logit_diff:.2e}, top-1 agreement {parity.top1_agreement:.2%} on "
        f"{parity.n} test frames (export {time.perf_counter() - t0:.1f}s)"
    )
    targets = {"ORT FP32": (fp32, "onnx")}
    for name, kwargs in (("ORT INT8 (S8S8)", {}), ("ORT INT8 (U8S8)", {"activations": "uint8"})):
        path = quantize_int8(fp32, out / f"int8_{len(targets)}.onnx", c["calibration"], **kwargs)
        r = evaluate_int8(fp32, path, c["x"], c["y"], c["classes"])
        lines.append(_acc_line(name, r))
        targets[name] = (path, "int8")
    ok, why = ovx.available(int8=True)
    if ok:
        xml = ovx.export_ir(fp32, out / "openvino" / "model.xml")
        p = ovx.verify_parity(fp32, xml, c["x"])
        lines.append(
            f"openvino_parity: {'PASS' if p.passed else 'FAIL'}  max |dlogit| "
            f"{p.max_abs_logit_diff:.2e}, top-1 agreement {p.top1_agreement:.2%}"
        )
        xml8 = ovx.quantize_ir(fp32, out / "openvino_int8" / "model.xml", c["calibration"])
        r = evaluate_int8(fp32, xml8, c["x"], c["y"], c["classes"], target="openvino")
        lines.append(_acc_line("OpenVINO INT8 (NNCF)", r))
        targets["OpenVINO FP32"] = (xml, "openvino")
        targets["OpenVINO INT8"] = (xml8, "openvino")
    else:
        lines.append(f"OpenVINO skipped: {why}")
    return targets, lines


def _acc_line(name: str, r) -> str:
    worst = max((v for v in r.per_class_recall_drop.values() if v is not None), default=0.0)
    return (
        f"int8_accuracy [{name}]: {'PASS' if r.passed else 'FAIL'}  FP32 {r.fp32_accuracy:.2%} "
        f"-> INT8 {r.accuracy:.2%} (drop {r.drop_points:+.2f} points, worst class recall drop "
        f"{worst:+.2f}, agreement {r.top1_agreement:.2%}, n={r.n})"
    )


def latency(c: dict, targets: dict, *, iters: int, threads: int) -> tuple[list, object]:
    from edge_export.latency import benchmark_predictor, physical_reference, torch_benchmark

    x = c["x"]
    x1 = x[: min(len(x), 64)]
    xb = np.resize(x, (64, *x.shape[1:]))  # batch 64 (test frames repeated if fewer)
    kw = dict(threads=threads, batch_threads=threads, warmup=max(10, iters // 10), iters=iters)
    reports = [torch_benchmark(c["model"], x1, xb, **kw)]
    for name, (path, target) in targets.items():
        reports.append(benchmark_predictor(path, target, x1, xb, name=name, **kw))
    ref = physical_reference(c["model"], c["spec"].image_size, threads=threads)
    return reports, ref


def runner_fps(c: dict, home: Path, targets: dict, tmp: Path, threads: int) -> list[str]:
    """The runner end to end on one demo video vs PyAV decode-only of the same file.

    Uses the champion's edge bundle from ``home`` when the pipeline built one, else an
    unsigned bundle of this run's ONNX / INT8 exports (default alarm rules).
    """
    try:
        from edge_export.bundle import build_bundle, open_bundle
        from edge_export.postprocess import AlarmRules
        from edge_export.runner import discover, run
    except ImportError as e:
        return [f"runner fps: skipped (edge_export.runner not importable: {e})"]
    videos = sorted((home / "landing" / "videos").rglob("*.mp4"))
    if not videos:
        return ["runner fps: skipped (no demo videos)"]
    version = c["record"].model_version
    bundle_path = home / "artifacts" / "bundles" / version / "bundle.tar.gz"
    where = "the pipeline's bundle"
    if not bundle_path.exists():
        bundle_path, where = tmp / "bundle.tar.gz", "an unsigned bundle of this run's exports"
        build_bundle(
            bundle_path,
            files={
                "model.onnx": targets["ORT FP32"][0],
                "model.int8.onnx": targets["ORT INT8 (S8S8)"][0],
            },
            model_version=version,
            classes=c["classes"],
            preprocess=c["spec"],
            postprocess=AlarmRules(),
            model_card={"note": "benchmarks/export.py"},
            lineage={"model_version": version},
            targets={"onnx": "ok", "int8": "ok"},
            signing_key=None,
        )
    video = videos[0]
    decode_fps = _decode_fps(video)
    bundle = open_bundle(bundle_path, extract_to=tmp / "bundle")
    lines = [f"runner: {where}, {video.name}"]
    for target in ("onnx", "int8"):
        with open(os.devnull, "w") as sink:
            stats = run(bundle, discover(video), sink, target=target, threads=threads)
        lines.append(
            f"runner end to end [{target}]: {stats.fps:.0f} fps ({stats.frames} frames) = "
            f"{stats.fps / decode_fps:.2f}x PyAV decode-only ({decode_fps:.0f} fps: bgr24 "
            "frames, FFmpeg frame threads)"
        )
    return lines


def _decode_fps(video: Path) -> float:
    import av

    best = 0.0
    for _ in range(3):
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            t0, n = time.perf_counter(), 0
            for frame in container.decode(stream):
                frame.to_ndarray(format="bgr24")
                n += 1
            best = max(best, n / (time.perf_counter() - t0))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", help="a LENSLINE_HOME after `lensline demo` (default: make one)")
    parser.add_argument("--iters", type=int, default=300, help="timed batch-1 calls per target")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, every runtime")
    args = parser.parse_args(argv)

    home = ensure_home(args.home)
    c = load(home)
    m = c["model"].config
    print(
        f"champion {c['record'].model_version}: LenslineNet width {m.width}"
        f"{f' x {m.members} (ensemble)' if m.members > 1 else ''}, "
        f"{c['spec'].image_size} px, {len(c['classes'])} classes; "
        f"{len(c['calibration'])} calibration (train) frames, {len(c['x'])} test frames"
    )
    with tempfile.TemporaryDirectory(prefix="lensline-export-") as tmp:
        targets, gates = export_all(c, Path(tmp))
        print("\n".join(gates))
        from edge_export.latency import latency_table

        reports, ref = latency(c, targets, iters=args.iters, threads=args.threads)
        print()
        print(latency_table(reports, reference=ref))
        base = reports[0].p50_ms
        by = {r.target: r.p50_ms / base for r in reports}
        int8 = min(by["ORT INT8 (S8S8)"], by["ORT INT8 (U8S8)"])
        print(
            f"\nfloors: ORT FP32 {by['ORT FP32']:.2f}x (<= 0.7x: "
            f"{'PASS' if by['ORT FP32'] <= 0.7 else 'FAIL'}), ORT INT8 S8S8 "
            f"{by['ORT INT8 (S8S8)']:.2f}x / U8S8 {by['ORT INT8 (U8S8)']:.2f}x "
            f"(<= 0.5x: {'PASS' if int8 <= 0.5 else 'FAIL'}); INT8 vs ORT FP32: S8S8 "
            f"{by['ORT INT8 (S8S8)'] / by['ORT FP32']:.2f}x, U8S8 "
            f"{by['ORT INT8 (U8S8)'] / by['ORT FP32']:.2f}x"
        )
        print()
        print("\n".join(runner_fps(c, home, targets, Path(tmp), args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

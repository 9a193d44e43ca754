"""The standalone runner against the graph: lensline-edge vs the champion's rows in the
``predictions`` table (torch, the champion itself).

    .venv/bin/python benchmarks/edge_agreement.py LENSLINE_HOME [onnx|int8|openvino]
    .venv/bin/python benchmarks/edge_agreement.py LENSLINE_HOME [TARGET] --videos

Default: the demo's curated test frames as the lake stores them (its JPEGs, as image folders);
the floor is >= 99.5 % agreement (ONNX FP32: 100 %).

``--videos``: the runner on the demo's *videos* (what a line feeds it), joined on
(video, frame_index) with the test rows of ``predictions``, three ways: (a) the lake's JPEGs
(image folders, as above), (b) raw decoded video frames (the spec's ``jpeg_quality=None``),
(c) raw frames through the JPEG round trip the spec records (``jpeg_quality=90``, what the
runner does by default). For each: agreement with ``predictions``, accuracy against the demo's
ground truth (``demo/truth.csv`` in the home), the runner's wall time; then the round trip's
own cost per decoded frame.
"""

import dataclasses
import io
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from edge_export.bundle import open_bundle
from edge_export.runner import discover, run
from edge_export.runner.sources import iter_video

args = [a for a in sys.argv[1:] if not a.startswith("--")]
videos_mode = "--videos" in sys.argv
home = Path(args[0])
target = args[1] if len(args) > 1 else "onnx"
pred = pl.read_delta(str(home / "lake/predictions")).filter(pl.col("split") == "test")
frames = pl.read_delta(str(home / "lake/frames")).select("video_id", "frame_index", "uri")
bundles = pl.read_delta(str(home / "lake/edge_bundles"))
version = pred["model_version"][0]
bundle_uri = bundles.filter(pl.col("model_version") == version)["uri"][0]
rows = pred.join(frames, on=["video_id", "frame_index"])
truth_csv = home / "demo/truth.csv"
truth = (
    pl.read_csv(truth_csv, schema_overrides={"label": pl.String}).select(
        "video_id", "frame_index", pl.col("label").alias("truth")
    )
    if truth_csv.exists()
    else None
)
work = Path(tempfile.mkdtemp(prefix="lensline-agree-"))


def runner(bundle, sources, *, every: int = 1) -> tuple[pl.DataFrame, float]:
    """Run in-process; (video_id, frame_index, edge) and the wall seconds."""
    import json

    out = io.StringIO()
    t0 = time.perf_counter()
    stats = run(bundle, sources, out, target=target, every=every)
    wall = time.perf_counter() - t0
    if stats.errors:
        raise SystemExit(f"runner errors: {stats.errors}")
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    edge = pl.DataFrame(
        [{"video_id": r["video"], "frame_index": r["frame_index"], "edge": r["label"]} for r in got]
    )
    return edge, wall


def image_folders() -> list:
    sources = []
    for (vid,), g in rows.group_by("video_id"):
        d = work / "jpeg" / vid
        d.mkdir(parents=True)
        for r in g.iter_rows(named=True):
            shutil.copy(r["uri"], d / f"{r['frame_index']:06d}.jpg")
        sources += discover(d)
    return sorted(sources, key=lambda s: s.video)


def score(name: str, edge: pl.DataFrame, wall: float, n_run: int) -> dict:
    j = rows.join(edge, on=["video_id", "frame_index"])
    row = {
        "input": name,
        "frames": j.height,
        "agreement": float((j["prediction"] == j["edge"]).mean()),
        "differ": int((j["prediction"] != j["edge"]).sum()),
        "accuracy": None,
        "ms/frame": 1000 * wall / max(n_run, 1),
    }
    if truth is not None:
        t = j.join(truth, on=["video_id", "frame_index"])
        row["accuracy"] = float((t["edge"] == t["truth"]).mean())
    return row


with open_bundle(bundle_uri) as bundle:
    spec = bundle.preprocess
    edge, wall = runner(bundle, image_folders())
    if not videos_mode:
        agree = (
            rows.join(edge, on=["video_id", "frame_index"]).select(
                (pl.col("prediction") == pl.col("edge")).mean()
            )
        ).item()
        differ = (
            rows.join(edge, on=["video_id", "frame_index"])
            .filter(pl.col("prediction") != pl.col("edge"))
            .height
        )
        print(
            f"target {target}: {rows.height} test frames, agreement with the predictions table "
            f"{agree:.4f} ({differ} differ); model {version}"
        )
        raise SystemExit(0)

    table = [score("(a) lake JPEGs (image folders)", edge, wall, edge.height)]
    if truth is not None:
        t = rows.join(truth, on=["video_id", "frame_index"])
        torch_acc = float((t["prediction"] == t["truth"]).mean())
    test_videos = set(rows["video_id"])
    sources = [s for s in discover(home / "landing/videos") if s.video in test_videos]
    every = math.gcd(*rows["frame_index"].to_list()) or 1
    for name, quality in (
        ("(b) raw video frames", None),
        (
            f"(c) raw video frames + JPEG q{spec.jpeg_quality or 90} round trip",
            spec.jpeg_quality or 90,
        ),
    ):
        bundle.preprocess = dataclasses.replace(spec, jpeg_quality=quality)
        edge, wall = runner(bundle, sources, every=every)
        table.append(score(name, edge, wall, edge.height))
    bundle.preprocess = spec

    # the round trip's own cost per decoded frame (one thread, this machine)
    q90 = dataclasses.replace(spec, jpeg_quality=spec.jpeg_quality or 90)
    sample = [bgr for _, _, bgr in iter_video(sources[0].path, every=every)][:40]
    t0 = time.perf_counter()
    for bgr in sample:
        q90.source(bgr)
    trip_ms = 1000 * (time.perf_counter() - t0) / len(sample)
    h, w = sample[0].shape[:2]
    import cv2

    hd = [cv2.resize(bgr, (1280, 720), interpolation=cv2.INTER_CUBIC) for bgr in sample[:20]]
    t0 = time.perf_counter()
    for bgr in hd:
        q90.source(bgr)
    trip_hd_ms = 1000 * (time.perf_counter() - t0) / len(hd)

print(f"model {version}, target {target}, {len(sources)} videos, every {every}-th frame decoded")
if truth is not None:
    print(f"predictions table (torch on the lake's JPEGs): accuracy vs truth {torch_acc:.4f}")
print(
    "| input | test frames | agreement with predictions | differ | accuracy vs truth "
    "| runner wall ms per inspected frame |"
)
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for r in table:
    acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "n/a"
    print(
        f"| {r['input']} | {r['frames']} | {r['agreement']:.4f} | {r['differ']} | {acc} | "
        f"{r['ms/frame']:.2f} |"
    )
print(
    f"JPEG q90 round trip alone (encode + decode, 1 thread): {trip_ms:.2f} ms per {w}x{h} "
    f"frame, {trip_hd_ms:.2f} ms per 1280x720 frame (the demo frame upscaled)"
)
shutil.rmtree(work, ignore_errors=True)

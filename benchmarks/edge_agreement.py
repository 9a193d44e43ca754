"""The standalone runner against the graph: lensline-edge on the demo's curated test frames
(the lake's JPEGs, as image folders) vs the champion's rows in the predictions table.

    .venv/bin/python benchmarks/edge_agreement.py LENSLINE_HOME [onnx|int8|openvino]

Baseline: the predictions table (torch, the champion itself); the floor is >= 99.5 % agreement
(ONNX FP32: 100 %).
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

home = Path(sys.argv[1])
target = sys.argv[2] if len(sys.argv) > 2 else "onnx"
pred = pl.read_delta(str(home / "lake/predictions")).filter(pl.col("split") == "test")
frames = pl.read_delta(str(home / "lake/frames")).select("video_id", "frame_index", "uri")
bundles = pl.read_delta(str(home / "lake/edge_bundles"))
version = pred["model_version"][0]
bundle = bundles.filter(pl.col("model_version") == version)["uri"][0]
rows = pred.join(frames, on=["video_id", "frame_index"])
out_rows = []
root = Path(tempfile.mkdtemp(prefix="lensline-agree-")) / target
shutil.rmtree(root, ignore_errors=True)
t0 = time.perf_counter()
for (vid,), g in rows.group_by("video_id"):
    d = root / vid
    d.mkdir(parents=True)
    for r in g.iter_rows(named=True):
        shutil.copy(r["uri"], d / f"{r['frame_index']:06d}.jpg")
    out = root / f"{vid}.jsonl"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "lensline-edge"),
            "run",
            bundle,
            str(d),
            "--out",
            str(out),
            "--target",
            target,
            "--quiet",
        ],
        check=True,
    )
    out_rows += [json.loads(line) for line in out.read_text().splitlines()]
edge = pl.DataFrame(
    [
        {"video_id": r["video"], "frame_index": r["frame_index"], "edge": r["label"]}
        for r in out_rows
    ]
)
j = rows.join(edge, on=["video_id", "frame_index"])
agree = (j["prediction"] == j["edge"]).mean()
print(
    f"target {target}: {j.height} test frames, agreement with the predictions table {agree:.4f} ({(j['prediction'] != j['edge']).sum()} differ); model {version}"
)

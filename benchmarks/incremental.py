"""The refresh after one new labelled video: incremental (``refresh: auto``) against a full rebuild.

Reproduce:  .venv/bin/python benchmarks/incremental.py                    (6 and 24: ~5 min)
            .venv/bin/python benchmarks/incremental.py --history 6 24 96  (~16 min on 2 cores)

The table and what it shows: docs/training.md "What it costs and what it gives".

Per history size H, in a fresh home: the demo set (``demo.make_demo_set``, 3 cameras, videos of
``--seconds``) is generated for H + 1 videos; H of them and their labels land, are ingested
and built (``labels`` -> ``model_evaluation``, default configs: a first, full build). Then the
last video lands with its own label file and is ingested. The home is copied; the copy
refreshes with ``refresh: full`` on ``frame_embeddings`` and ``trained_model`` (the rebuild:
K fold models and the model trained again on everything), the original with the defaults
(``refresh: auto``: the new video scored by the stored fold models, the model warm-started
from the champion). Both run the same chain in one in-process Dagster run each, in their own
process, on the same state: wall time of that run, each asset's step time, the paths taken,
the test accuracy ``model_evaluation`` reports and the promotion gate's decision. Ingesting the
new video is the same in both and timed apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHAIN = [
    "labels",
    "frame_embeddings",
    "label_consensus",
    "label_issues",
    "curated_dataset",
    "trained_model",
    "model_evaluation",
]
FULL = {"ops": {a: {"config": {"refresh": "full"}} for a in ("frame_embeddings", "trained_model")}}


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "LENSLINE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
            "OPENBLAS_NUM_THREADS": "1"}  # fmt: skip


def _phase(home: Path, *args: str) -> dict:
    """Run one phase in a fresh process with ``home`` as its Lensline and Dagster home."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args, "--home", str(home)],
        env=_env(home), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"phase {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- phases (child)


def _ingest(instance, videos: list[Path]) -> float:
    from orchestration.definitions import defs

    keys = [f"{p.parent.name}__{p.stem}" for p in videos]
    instance.add_dynamic_partitions("videos", keys)
    job = defs.resolve_job_def("ingest_video")
    t0 = time.perf_counter()
    for key in keys:
        assert job.execute_in_process(partition_key=key, instance=instance).success, key
    return time.perf_counter() - t0


def _land(home: Path, videos: list[Path]) -> None:
    for p in videos:
        dest = home / "landing" / "videos" / p.parent.name / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)


def _chain(instance, run_config: dict | None = None) -> dict:
    """One in-process run of the chain: wall time, step times, paths, accuracy, gate."""
    import dagster as dg

    from orchestration.definitions import defs

    t0, c0 = time.perf_counter(), time.process_time()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey(a) for a in CHAIN], instance=instance,
        run_config=run_config or {}, raise_on_error=False,
    )  # fmt: skip
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = {
        e.step_key: round(e.event_specific_data.duration_ms / 1000, 1)
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }
    meta = {
        e.asset_key.to_user_string(): {
            k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }
    missing = [a for a in CHAIN if a not in meta]
    assert not missing, f"not materialised: {missing}"
    gate = [
        c.passed for c in result.get_asset_check_evaluations() if c.check_name == "promotion_gate"
    ]
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),  # this process's CPU: steadier than wall time on a shared box
        "steps": steps,
        "embeddings": meta["frame_embeddings"].get("refresh"),
        "embeddings_reason": meta["frame_embeddings"].get("refresh_reason"),
        "model": meta["trained_model"].get("refresh"),
        "model_reason": meta["trained_model"].get("refresh_reason"),
        "frames": meta["frame_embeddings"]["frames"],
        "train_images": meta["trained_model"]["train_images"],
        "checkpoint": {
            k: meta["trained_model"][k] for k in ("checkpoint_uri", "checkpoint_sha256")
        },
        "accuracy": meta["model_evaluation"]["accuracy"],
        "test_images": meta["model_evaluation"]["test_images"],
        "promoted": bool(gate and gate[0]),
    }


def phase_build(home: Path, staging: Path, history: int, seconds: float) -> dict:
    """Generate H + 1 demo videos, land and build H, land and ingest the last."""
    import dagster as dg
    import polars as pl

    from demo import make_demo_set

    (home / "dagster").mkdir(parents=True, exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    per_camera = math.ceil((history + 1) / 3)
    demo = make_demo_set(staging, seed=7, cameras=3, videos_per_camera=per_camera, seconds=seconds)
    # interleave the cameras so every prefix has all of them; the last one is the new video
    videos = sorted(demo.videos, key=lambda p: (p.stem, p.parent.name))[: history + 1]
    past, new = videos[:-1], videos[-1]
    labels = pl.read_csv(demo.labels_csv)
    ids = {p: f"{p.parent.name}__{p.stem}" for p in videos}
    (home / "landing" / "labels").mkdir(parents=True, exist_ok=True)
    _land(home, past)
    labels.filter(pl.col("video").is_in([ids[p] for p in past])).write_csv(
        home / "landing" / "labels" / "history.csv"
    )
    with dg.DagsterInstance.get() as instance:
        ingest_history = _ingest(instance, past)
        first = _chain(instance)
        _land(home, [new])
        labels.filter(pl.col("video") == ids[new]).write_csv(home / "landing/labels/new.csv")
        ingest_new = _ingest(instance, [new])
    return {"ingest_history_s": round(ingest_history, 1), "first_build": first,
            "ingest_new_s": round(ingest_new, 1)}  # fmt: skip


def phase_refresh(full: bool) -> dict:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return _chain(instance, FULL if full else None)


def phase_compare(other: Path, checkpoints: dict[str, dict]) -> dict:
    """Both refreshed models on one test split: this home's (the incremental refresh's).

    Each model's own ``model_evaluation`` scores it on its own home's test split, which can
    differ by the frames curation dropped (the label issues come from different held-out
    probabilities); here both meet the same frames and labels. ``leak``: frames of that split
    the other home trained on (0 when both kept the same videos in test).
    """
    import polars as pl

    from assets.models import split_images
    from lake.storage import LensStorage
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.evaluate import predict_proba

    storage = LensStorage()
    classes = sorted(storage.read_table("dataset")["label"].unique().to_list())
    other_train = pl.read_delta(str(other / "lake" / "dataset")).filter(pl.col("split") == "train")
    out: dict = {}
    for name, ref in checkpoints.items():
        model, meta = load_checkpoint(
            ref["checkpoint_uri"], expected_sha256=ref["checkpoint_sha256"]
        )
        spec = checkpoint_spec(meta)
        images, labels, keys = split_images(storage, "test", classes, spec)
        probs = predict_proba(model, images, mean=spec.mean, std=spec.std)
        out[name] = {"correct": int((probs.argmax(1) == labels).sum()), "n": len(labels)}
    out["leak"] = keys.join(other_train, on=["video_id", "frame_index"], how="semi").height
    for name in checkpoints:
        out[name]["accuracy"] = round(out[name]["correct"] / out[name]["n"], 4)
    out["diff_points"] = round(100 * (out["incremental"]["accuracy"] - out["full"]["accuracy"]), 2)
    return out


# ----------------------------------------------------------------------------- driver


def run_history(history: int, seconds: float, root: Path) -> dict:
    home, copy, staging = root / f"h{history}", root / f"h{history}-full", root / f"demo{history}"
    built = _phase(home, "build", "--staging", str(staging), "--size", str(history),
                   "--seconds", str(seconds))  # fmt: skip
    shutil.copytree(home, copy, symlinks=True)
    # the copy's Dagster instance and lake are its own; its tables' file URIs still name the
    # original home's immutable frames and checkpoints, which neither refresh changes
    full = _phase(copy, "refresh", "--full")
    incremental = _phase(home, "refresh")
    pair = {"full": full["checkpoint"], "incremental": incremental["checkpoint"]}
    same = _phase(home, "compare", "--other", str(copy), "--checkpoints", json.dumps(pair))
    return {
        "history": history,
        **built,
        "full": full,
        "incremental": incremental,
        "same_test": same,
    }


def report(rows: list[dict]) -> str:
    head = ("| history videos | frames | full rebuild s | incremental s | ratio | CPU ratio | "
            "emb full / incr s | train full / incr s | test acc full | test acc incr | "
            "same test: acc full / incr (frames) | promoted full / incr | paths (emb, model) |")  # fmt: skip
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        f, i = r["full"], r["incremental"]
        lines.append(
            f"| {r['history']} | {i['frames']} | {f['wall_s']} | {i['wall_s']} | "
            f"{i['wall_s'] / f['wall_s']:.2f} | {i['cpu_s'] / f['cpu_s']:.2f} | "
            f"{f['steps'].get('frame_embeddings')} / {i['steps'].get('frame_embeddings')} | "
            f"{f['steps'].get('trained_model')} / {i['steps'].get('trained_model')} | "
            f"{f['accuracy']:.4f} | {i['accuracy']:.4f} | {_same(r['same_test'])} | "
            f"{f['promoted']} / {i['promoted']} | "
            f"{i['embeddings']}, {i['model']} |"
        )
    return "\n".join(lines)


def _same(c: dict) -> str:
    f, i = c["full"], c["incremental"]
    return f"{f['accuracy']:.4f} / {i['accuracy']:.4f} ({f['n']}, {c['diff_points']:+.2f} pt)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, nargs="+", default=[6, 24])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--keep", type=Path, help="build the homes here and keep them")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--phase", choices=["build", "refresh", "compare"], help=argparse.SUPPRESS)
    parser.add_argument("--other", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoints", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--staging", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "build":
        print(json.dumps(phase_build(args.home, args.staging, args.size, args.seconds)))
        return
    if args.phase == "refresh":
        print(json.dumps(phase_refresh(args.full)))
        return
    if args.phase == "compare":
        print(json.dumps(phase_compare(args.other, json.loads(args.checkpoints))))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="lensline-incremental-"))
    rows = []
    try:
        for h in args.history:
            t0 = time.perf_counter()
            row = run_history(h, args.seconds, root)
            rows.append(row)
            print(f"history {h}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            print(json.dumps(row), file=sys.stderr)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(report(rows))
    for r in rows:
        i = r["incremental"]
        print(f"history {r['history']}: incremental = {i['wall_s'] / r['full']['wall_s']:.0%} of "
              f"the full rebuild; paths: embeddings {i['embeddings']} ({i['embeddings_reason']}), "
              f"model {i['model']} ({i['model_reason']}); ingesting the new video "
              f"{r['ingest_new_s']} s (both)")  # fmt: skip


if __name__ == "__main__":
    main()

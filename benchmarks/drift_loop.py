"""How good is the model the drift loop promotes? (issue 10: "within 1 point of a model trained
with all of those labels from the start").

Reproduce (repo root, about 12 minutes on 2 cores after the scenario's 5)::

    export LENSLINE_HOME=/tmp/drift-home
    lensline demo --cameras 3 --videos-per-camera 2 --seconds 30 --scenario drift
    python benchmarks/drift_loop.py --home $LENSLINE_HOME --seeds 5

It reads the scenario's lake (the last model the loop trained, its dataset version, the drift
queue) and retrains, for each seed, with the loop model's own training config and
preprocessing:

* **loop**: exactly the loop's training set (the curated train split, the drift-labelled
  videos' train share included);
* **all labels from the start**: every label the loop gathered as if it had all been there from
  the start: the same plus the drifted frames the curated split holds out for the promotion
  gate (test); selected on the same val split.

Both with natural sampling (the plain baseline: every frame once per epoch) and with Lensline's
condition-balanced sampling (``TrainConfig.condition_balance`` = 1: each line condition, a new
drifted one included, an equal share of every epoch). Scored on new videos rendered under each
camera's shifted conditions that were never landed (the scenario's evaluation videos). Prints
per-camera mean and standard deviation over seeds and the gap loop - reference. Training
differs from seed to seed by several points on a ~115-frame video: read the means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="LENSLINE_HOME of a finished drift scenario")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--scenario-seed", type=int, default=0, help="the demo's --seed")
    parser.add_argument("--seconds", type=float, default=30.0, help="the demo's --seconds")
    parser.add_argument("--cameras", type=int, default=3, help="the demo's --cameras")
    args = parser.parse_args()
    os.environ["LENSLINE_HOME"] = args.home
    os.environ.pop("LENSLINE_STORAGE", None)

    from assets.features import load_frame_images
    from orchestration.scenario import render_shifted, score_videos
    from orchestration.storage import LensStorage
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.evaluate import condition_slices
    from training.registry import ModelRegistry
    from training.train import TrainConfig, train_model

    storage = LensStorage()
    queue = storage.read_table("drift_queue")
    if queue is None or queue.is_empty():
        sys.exit(f"{args.home}: no drift queue; run `lensline demo --scenario drift` there first")
    registry = ModelRegistry(storage.table_uri("models"), storage_options=storage.storage_options())
    latest = registry.list().sort("created_at").row(-1, named=True)
    _, meta = load_checkpoint(
        storage.fetch_local([latest["checkpoint_uri"]])[0],
        expected_sha256=latest["checkpoint_sha256"],
    )
    classes, spec = json.loads(meta["classes"]), checkpoint_spec(meta)
    base = {**json.loads(meta["config"]), "init_checkpoint": None}
    keys = ["video_id", "frame_index"]
    dataset = storage.read_table("dataset", version=latest["dataset_version"]).sort(keys)
    dataset = dataset.filter(pl.col("label").is_in(classes))
    drifted = queue["video_id"].unique().to_list()
    frames = storage.read_table("frames").select(*keys, "camera_id", "uri", "sha256")

    def arrays(rows: pl.DataFrame):
        rows = rows.join(frames, on=keys, maintain_order="left")
        y = rows["label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
        cond = condition_slices(rows["camera_id"].to_list(), rows["video_id"].to_list(), drifted)
        return load_frame_images(storage, rows, spec), y, cond

    is_train = pl.col("split") == "train"
    held = pl.col("video_id").is_in(drifted) & (pl.col("split") == "test")
    sets = {
        "loop": arrays(dataset.filter(is_train)),
        "all labels": arrays(dataset.filter(is_train | held)),
    }
    x_va, y_va, _ = arrays(dataset.filter(pl.col("split") == "val"))
    with tempfile.TemporaryDirectory() as tmp:
        _, videos, truth = render_shifted(
            Path(tmp) / "landing", seed=args.scenario_seed + 1, cameras=args.cameras,
            seconds=args.seconds, eval_dir=Path(tmp) / "eval",
        )  # fmt: skip
        print(
            f"{args.home}: model {latest['model_version']}, dataset v{latest['dataset_version']}; "
            f"loop train {len(sets['loop'][1])} frames "
            f"({int(np.sum(np.char.endswith(sets['loop'][2].astype(str), '/drift')))} drifted), "
            f"all labels {len(sets['all labels'][1])}; {args.seeds} seeds\n"
        )
        cams = sorted(videos)
        head = (
            f"{'sampling':<20}{'training set':<14}"
            + "".join(f"{c:>16}" for c in cams)
            + f"{'s/run':>7}"
        )
        print(head + "\n" + "-" * len(head))
        means = {}
        for sampling, balance in (("natural (baseline)", 0.0), ("condition-balanced", 1.0)):
            for name, (x, y, cond) in sets.items():
                accs, t0 = [], time.perf_counter()
                for seed in range(args.seeds):
                    cfg = TrainConfig.from_dict(
                        {**base, "seed": seed, "condition_balance": balance}
                    )
                    res = train_model(
                        x, y, classes=classes, config=cfg, val_images=x_va, val_labels=y_va,
                        groups=cond,
                    )  # fmt: skip
                    acc = score_videos(res.model, classes, spec, videos, truth)
                    accs.append([acc[c][0] for c in cams])
                a = np.asarray(accs)
                means[sampling, name] = a.mean(0)
                cells = "".join(
                    f"{m:>9.3f} ± {s:.3f}" for m, s in zip(a.mean(0), a.std(0), strict=True)
                )
                print(
                    f"{sampling:<20}{name:<14}{cells}{(time.perf_counter() - t0) / args.seeds:>7.0f}",
                    flush=True,
                )
            gap = means[sampling, "loop"] - means[sampling, "all labels"]
            print(f"{'':<20}{'gap':<14}" + "".join(f"{g:>+16.3f}" for g in gap))
    print(
        "\naccuracy on never-landed videos under each camera's shifted conditions "
        f"({', '.join(cams)}); mean ± sd over seeds; gap = loop - all labels from the start"
    )


if __name__ == "__main__":
    main()

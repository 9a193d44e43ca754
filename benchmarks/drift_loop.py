"""How good is the model the drift loop promotes? (issue 10: "within 1 point of a model trained
with all of those labels from the start").

Reproduce (repo root, about 12 minutes on 2 cores after the scenario's 5)::

    export LENSLINE_HOME=/tmp/drift-home
    lensline demo --cameras 3 --videos-per-camera 2 --seconds 30 --scenario drift
    python benchmarks/drift_loop.py --home $LENSLINE_HOME --seeds 5

``--sampling balanced --members 1 --lighting 0 0.3 --seeds 3`` compares trained_model's
lighting jitter off and on (docs/training.md, "Lighting jitter"; about 5 minutes a home).

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
differs from seed to seed by several points on a ~115-frame video: read the means. First it
retrains the loop's own model from scratch (its config and seed) and prints the largest weight
difference: the loop retrains on the union of its labels, so this is 0.

Measured (2026-11-30, 2 cores, the scenario's defaults, ``--seeds 3``)::

    the loop's model m-fa9f4b9df5d3 retrained from scratch on its labels (seed 0):
      max |weight difference| 0; its accuracy: cam1 0.939, cam2 0.991, cam3 0.938
    sampling            training set              cam1            cam2            cam3
    natural (baseline)  loop              0.867 ± 0.046    0.956 ± 0.026    0.902 ± 0.032
    natural (baseline)  all labels        0.907 ± 0.069    0.912 ± 0.045    0.938 ± 0.015
                        gap                     -0.041          +0.044          -0.036
    condition-balanced  loop              0.974 ± 0.026    0.953 ± 0.029    0.961 ± 0.018
    condition-balanced  all labels        0.986 ± 0.020    0.936 ± 0.034    0.940 ± 0.043
                        gap                     -0.012          +0.018          +0.021

(the old champion, before the drift labels: cam1 0.278, cam2 0.939, cam3 0.821)

A second scenario home with the final code (``/tmp/scen5``, same command) varies: weights again
identical (max 0); natural loop 0.933 / 0.921 / 0.961, balanced loop 0.925 / 0.950 / 0.932,
balanced all-labels 0.957 / 0.982 / 0.994. Balancing's gain on the new look over three
scenario datasets: +4.7 (5 seeds), +10.7, -0.8 points; read several, not one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="LENSLINE_HOME of a finished drift scenario")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--scenario-seed", type=int, default=0, help="the demo's --seed")
    parser.add_argument("--seconds", type=float, default=30.0, help="the demo's --seconds")
    parser.add_argument("--cameras", type=int, default=3, help="the demo's --cameras")
    parser.add_argument(
        "--sampling",
        choices=["both", "natural", "balanced"],
        default="both",
        help="which sampling rows to train (balanced: Lensline's, the loop's own)",
    )
    parser.add_argument(
        "--lighting",
        type=float,
        nargs="+",
        help="train each set once per brightness/contrast jitter given (trained_model's "
        "lighting; default: the loop model's own)",
    )
    parser.add_argument(
        "--members", type=int, help="networks per model (default: the loop model's own)"
    )
    args = parser.parse_args()
    os.environ["LENSLINE_HOME"] = args.home
    os.environ.pop("LENSLINE_STORAGE", None)

    from demo.scenario import gathered_sets, render_shifted
    from lake.storage import LensStorage

    storage = LensStorage()
    queue = storage.read_table("drift_queue")
    if queue is None or queue.is_empty():
        sys.exit(f"{args.home}: no drift queue; run `lensline demo --scenario drift` there first")
    registry = storage.registry()
    latest = registry.list().sort("created_at").row(-1, named=True)
    gathered = gathered_sets(storage, latest["model_version"])
    sets = gathered.sets
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
        # 1. the loop's model is a from-scratch training on the union of its labels: retraining
        # it in this process with its own config and seed must give the same weights
        from demo.scenario import eval_accuracy
        from training.checkpoint import load_checkpoint
        from training.train import TrainConfig, train_model

        x, y, cond = sets["loop"]
        again = train_model(
            x, y, classes=gathered.classes, config=TrainConfig.from_dict(gathered.config),
            groups=cond, val_images=gathered.val[0], val_labels=gathered.val[1],
        ).model.state_dict()  # fmt: skip
        loop_model, _ = load_checkpoint(
            storage.fetch_local([latest["checkpoint_uri"]])[0],
            expected_sha256=latest["checkpoint_sha256"],
        )
        diff = max(
            float((v.float() - again[k].float()).abs().max())
            for k, v in loop_model.state_dict().items()
        )
        own = eval_accuracy(storage, latest["model_version"], videos, truth)
        print(
            f"the loop's model {latest['model_version']} retrained from scratch on its labels "
            f"(seed {gathered.config['seed']}): max |weight difference| {diff:g}; its accuracy: "
            + ", ".join(f"{c} {own[c][0]:.3f}" for c in cams)
            + "\n"
        )
        head = (
            f"{'sampling':<26}{'training set':<14}"
            + "".join(f"{c:>16}" for c in cams)
            + f"{'s/run':>7}"
        )
        print(head + "\n" + "-" * len(head))
        means = {}
        samplings = [("natural (baseline)", 0.0), ("condition-balanced", 1.0)]
        if args.sampling != "both":
            samplings = samplings[:1] if args.sampling == "natural" else samplings[1:]
        fixed = {"members": args.members} if args.members else {}
        rows = [(s, b, {}) for s, b in samplings]
        if args.lighting:
            rows = [(f"{s} l={v:g}", b, {"brightness": v, "contrast": v})
                    for s, b in samplings for v in args.lighting]  # fmt: skip
        for sampling, balance, light in rows:
            for name in sets:
                accs, t0 = [], time.perf_counter()
                for seed in range(args.seeds):
                    acc = gathered.train(
                        name, seed=seed, videos=videos, truth=truth, condition_balance=balance,
                        **light, **fixed,
                    )  # fmt: skip
                    accs.append([acc[c][0] for c in cams])
                a = np.asarray(accs)
                means[sampling, name] = a.mean(0)
                cells = "".join(
                    f"{m:>9.3f} ± {s:.3f}" for m, s in zip(a.mean(0), a.std(0), strict=True)
                )
                print(
                    f"{sampling:<26}{name:<14}{cells}{(time.perf_counter() - t0) / args.seeds:>7.0f}",
                    flush=True,
                )
            gap = means[sampling, "loop"] - means[sampling, "all labels"]
            print(f"{'':<26}{'gap':<14}" + "".join(f"{g:>+16.3f}" for g in gap), flush=True)
    print(
        "\naccuracy on never-landed videos under each camera's shifted conditions "
        f"({', '.join(cams)}); mean ± sd over seeds; gap = loop - all labels from the start"
    )


if __name__ == "__main__":
    main()

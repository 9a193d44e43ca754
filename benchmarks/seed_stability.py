"""Seed-to-seed spread of test accuracy: plain training (the baseline) against weight averaging.

Issue 20 ("Stable models"): on a ~115-frame video the trained classifier's accuracy moves by
several points from one seed to the next, so a single champion is one draw. This trains the
registered model's own training set with its own config and preprocessing (as
``trained_model`` did), once per seed and per averaging method, and prints per camera the
mean, standard deviation and min-max of test accuracy over seeds:

* **plain (baseline)**: ``TrainConfig(average="none")``, training as it was before averaging;
* **ema**: ``average="ema"``, an exponential moving average of the weights (time constant
  ``ema_epochs`` epochs of steps);
* **swa**: ``average="swa"``, the mean of each epoch's end weights over the last quarter of the
  run, BatchNorm statistics recomputed (``torch.optim.swa_utils.update_bn``);
* **ema-5** (``--methods``): EMA with a time constant of 5 epochs instead of 2;
* **swa-const** (``--methods``): the same with the learning rate held at 0.1 x peak from the
  SWA phase on (the SWA paper's constant-rate schedule) instead of cosine to zero;
* **ens3** (``--methods``): the mean probability of 3 EMA models (seeds 3s, 3s+1, 3s+2 for
  seed s), one module exported as one ONNX graph; its edge latency against one model's.

Two data sets, each from a finished home (see docs/training.md):

* ``--demo-home``: ``lensline demo``; the champion's train/val split, scored on its dataset's
  test split against the demo's TRUE labels (``demo/truth.csv``), per camera;
* ``--drift-home``: ``lensline demo --scenario drift``; the last model's training set (the
  ``loop`` set of :func:`demo.scenario.gathered_sets`, as ``benchmarks/drift_loop.py``), scored
  on never-landed videos under each camera's shifted conditions
  (:func:`demo.scenario.render_shifted`, as there).

Reproduce (repo root)::

    LENSLINE_HOME=/tmp/ss/demo lensline demo --seconds 30
    LENSLINE_HOME=/tmp/ss/drift lensline demo --cameras 3 --videos-per-camera 2 --seconds 30 \\
        --scenario drift
    nice -n 19 python benchmarks/seed_stability.py --demo-home /tmp/ss/demo \\
        --drift-home /tmp/ss/drift --methods plain ema swa

How long: each home takes 4-7 minutes to build. A training run (30 epochs, ~500 frames, one
thread) costs ~25 CPU seconds, so the defaults (5 seeds, plain and ema, both homes: 20 runs)
take ~10 minutes on an idle 2-core machine, ``--methods plain ema swa`` ~14, ``--quick``
(3 seeds) ~6; on a machine shared with other work (load 7-9 on 2 cores) three times that.
Only one core is used: runs are sequential and single-threaded, as the training is.

Measured tables and how to read them: docs/training.md ("Stable models"). In short, on the demo
EMA cuts the spread over all cameras from 0.098 to 0.022 (mean 0.864 -> 0.929); on the drift
scenario it leaves it as it was (0.023 -> 0.030 on 5 seeds, means level), where an ensemble of 3
EMA models (``ens3``) gives 0.960 +- 0.017 against plain's 0.926 +- 0.023, at 3x the edge
latency (0.25 against 0.08 ms, batch 1, onnxruntime).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small BLAS calls thrash on shared cores
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

METHODS: dict[str, dict[str, Any]] = {  # name -> TrainConfig overrides
    "plain": {"average": "none"},
    "ema": {"average": "ema"},
    "ema-5": {"average": "ema", "ema_epochs": 5.0},
    "swa": {"average": "swa", "swa_lr": 0.0},
    "swa-const": {"average": "swa", "swa_lr": 0.1},
}
BASELINE = "plain"
ENSEMBLE, K = "ens3", 3  # the mean of K EMA models' probabilities, one ONNX graph


def _storage(home: str):
    os.environ["LENSLINE_HOME"] = home
    os.environ.pop("LENSLINE_STORAGE", None)
    from lake.storage import LensStorage

    return LensStorage()


def demo_runner(home: str):
    """(fit(overrides, seed) -> model, score(model) -> {camera: accuracy}, description) on a
    ``lensline demo`` home."""
    from demo.scenario import gathered_sets
    from lake.frames import KEYS, load_frame_images
    from training.evaluate import predict_proba
    from training.train import TrainConfig, train_model

    storage = _storage(home)
    champion = storage.registry().champion()
    if champion is None:
        sys.exit(f"{home}: no champion; run `lensline demo` there first")
    gathered = gathered_sets(storage, champion.model_version)
    classes = gathered.classes
    test = (
        storage.read_table("dataset", version=champion.dataset_version)
        .filter((pl.col("split") == "test") & pl.col("label").is_in(classes))
        .sort(KEYS)
        .join(storage.read_table("frames").select(*KEYS, "camera_id", "uri", "sha256"), on=KEYS)
    )
    truth_csv = Path(home) / "demo" / "truth.csv"
    if truth_csv.is_file():  # score against the truth, not the curated labels
        truth = pl.read_csv(truth_csv, schema_overrides={"label": pl.Utf8}).select(
            *KEYS, pl.col("label").alias("truth")
        )
        test = test.join(truth.unique(KEYS), on=KEYS, how="left", maintain_order="left")
        test = test.with_columns(label=pl.coalesce("truth", "label"))
    test = test.filter(pl.col("label").is_in(classes))
    x_te = load_frame_images(storage, test, gathered.spec)
    y_te = test["label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
    cams = test["camera_id"].to_numpy()
    x, y, groups = gathered.sets["loop"]
    x_va, y_va, _ = gathered.val

    def fit(overrides: dict[str, Any], seed: int):
        config = TrainConfig.from_dict({**gathered.config, **overrides, "seed": seed})
        return train_model(
            x, y, classes=classes, config=config, groups=groups, val_images=x_va, val_labels=y_va
        ).model

    def score(model) -> dict[str, float]:
        hit = predict_proba(model, x_te).argmax(1) == y_te
        out = {str(c): float(hit[cams == c].mean()) for c in sorted(set(cams))}
        return {**out, "all": float(hit.mean())}

    counts = ", ".join(f"{c} {int((cams == c).sum())}" for c in sorted(set(cams)))
    about = (
        f"demo {home}: champion {champion.model_version}'s training set ({len(y)} train, "
        f"{len(y_va)} val frames), test split vs true labels: {counts} frames"
    )
    return fit, score, about


def drift_runner(home: str, *, scenario_seed: int, cameras: int, seconds: float, tmp: Path):
    """(fit, score, description) as :func:`demo_runner`, on a drift scenario home."""
    from demo.scenario import gathered_sets, render_shifted, score_videos
    from training.train import TrainConfig, train_model

    storage = _storage(home)
    registry = storage.registry()
    if storage.read_table("drift_queue") is None or registry.list().is_empty():
        sys.exit(f"{home}: no drift queue; run `lensline demo --scenario drift` there first")
    latest = registry.list().sort("created_at").row(-1, named=True)
    gathered = gathered_sets(storage, latest["model_version"])
    full = _full_training(storage)  # a warm start's 10 epochs at half the rate: not from scratch
    _, videos, truth = render_shifted(
        tmp / "landing", seed=scenario_seed + 1, cameras=cameras, seconds=seconds,
        eval_dir=tmp / "eval",
    )  # fmt: skip

    x, y, groups = gathered.sets["loop"]
    x_va, y_va, _ = gathered.val

    def fit(overrides: dict[str, Any], seed: int):  # as GatheredSets.train, the model kept
        config = TrainConfig.from_dict({**gathered.config, **full, **overrides, "seed": seed})
        return train_model(
            x, y, classes=gathered.classes, config=config, groups=groups,
            val_images=x_va, val_labels=y_va,
        ).model  # fmt: skip

    def score(model) -> dict[str, float]:
        scores = score_videos(model, gathered.classes, gathered.spec, videos, truth)
        n = sum(f for _, f in scores.values())
        return {
            **{c: a for c, (a, _) in sorted(scores.items())},
            "all": sum(a * f for a, f in scores.values()) / n,
        }

    about = (
        f"drift scenario {home}: model {latest['model_version']}'s training set "
        f"({len(gathered.sets['loop'][1])} frames) trained from scratch with {full}, scored on "
        "never-landed videos under each camera's shifted conditions"
    )
    return fit, score, about


def _full_training(storage) -> dict:
    """Epochs and learning rate of the newest registered model trained from scratch (the last
    model of a drift scenario is usually a warm start from the champion)."""
    import json

    from training.checkpoint import load_checkpoint

    for row in storage.registry().list().sort("created_at", descending=True).iter_rows(named=True):
        local = storage.fetch_local([row["checkpoint_uri"]])[0]
        config = json.loads(
            load_checkpoint(local, expected_sha256=row["checkpoint_sha256"])[1]["config"]
        )
        if not config.get("init_checkpoint"):
            return {"epochs": config["epochs"], "lr": config["lr"]}
    sys.exit("no registered model was trained from scratch")


def measure(fit, score, methods: list[str], seeds: int) -> tuple[list[dict], Any]:
    """One row per method: per column (camera, ``all``) the accuracies over seeds; and the last
    ensemble trained (None without ``ens3``)."""
    rows, ensemble = [], None
    for method in methods:
        t0, runs = time.perf_counter(), []
        for seed in range(seeds):
            if method == ENSEMBLE:  # K EMA models of seeds K*seed .. K*seed + K - 1
                ensemble = mean_probs([fit(METHODS["ema"], K * seed + j) for j in range(K)])
                runs.append(score(ensemble))
            else:
                runs.append(score(fit(METHODS[method], seed)))
            cells = " ".join(f"{c} {a:.3f}" for c, a in runs[-1].items())
            print(f"    {method} seed {seed}: {cells}", file=sys.stderr, flush=True)
        rows.append(
            {
                "method": method,
                "acc": {c: np.array([r[c] for r in runs]) for c in runs[0]},
                "s_per_run": (time.perf_counter() - t0) / seeds,
            }
        )
        print(f"  {method}: {(time.perf_counter() - t0):.0f} s", file=sys.stderr, flush=True)
    return rows, ensemble


def mean_probs(members: list):
    """One module of ``members``: the log of their mean softmax, (N, 3, S, S) -> (N, K), so a
    softmax of its output is the ensemble's probability; it exports as one ONNX graph."""
    import torch

    class MeanProbs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(members)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.members])
            return torch.log(probs.mean(0))

    return MeanProbs().eval()


def edge_latency(ensemble, tmp: Path) -> str:
    """Batch-1 p50 (onnxruntime, 1 thread) of one member and of the ensemble, one ONNX graph."""
    from edge_export.onnx import benchmark, export_onnx

    side = ensemble.members[0].config.image_size
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, side, side)).astype(np.float32)
    xb = rng.standard_normal((32, 3, side, side)).astype(np.float32)
    out = []
    for name, model in (("one model", ensemble.members[0]), (f"ensemble of {K}", ensemble)):
        path = export_onnx(model, tmp / f"{name.replace(' ', '_')}.onnx", image_size=side)
        r = benchmark(path, x1, xb, iters=200)
        out.append(f"{name} p50 {r.p50_ms:.3f} ms, p95 {r.p95_ms:.3f} ms, "
                   f"{path.stat().st_size / 1e3:.0f} kB")  # fmt: skip
    return "edge latency (onnxruntime, batch 1, 1 thread): " + "; ".join(out)


def print_table(title: str, rows: list[dict]) -> None:
    cols = list(rows[0]["acc"])
    head = f"{'method':<18}" + "".join(f"{c:>26}" for c in cols) + f"{'s/run':>7}"
    print(f"\n{title}\n{head}\n{'-' * len(head)}")
    for r in rows:
        name = r["method"] + (" (baseline)" if r["method"] == BASELINE else "")
        cells = "".join(
            f"{a.mean():>9.3f} ± {a.std():.3f} [{a.min():.2f}-{a.max():.2f}]"
            for a in r["acc"].values()
        )
        print(f"{name:<18}{cells}{r['s_per_run']:>7.0f}")
    base = next((r for r in rows if r["method"] == BASELINE), None)
    if base is not None:
        mean_sd = {r["method"]: np.mean([a.std() for a in r["acc"].values()]) for r in rows}
        ref = mean_sd[BASELINE] or float("nan")
        print(
            "mean sd over columns: "
            + ", ".join(f"{m} {s:.4f} ({s / ref:.2f}x)" for m, s in mean_sd.items())
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-home", help="LENSLINE_HOME of a finished `lensline demo`")
    parser.add_argument("--drift-home", help="LENSLINE_HOME of a finished drift scenario")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--methods", nargs="+", choices=[*METHODS, ENSEMBLE], default=["plain", "ema"]
    )
    parser.add_argument("--quick", action="store_true", help="3 seeds")
    parser.add_argument("--scenario-seed", type=int, default=0, help="the drift demo's --seed")
    parser.add_argument("--seconds", type=float, default=30.0, help="the drift demo's --seconds")
    parser.add_argument("--cameras", type=int, default=3, help="the drift demo's --cameras")
    args = parser.parse_args(argv)
    if not (args.demo_home or args.drift_home):
        parser.error("give --demo-home, --drift-home or both")
    if args.quick:
        args.seeds = min(args.seeds, 3)
    import torch

    torch.set_num_threads(1)  # inference; training pins its own (TrainConfig.num_threads)
    print("reproduce: python benchmarks/seed_stability.py " + " ".join(sys.argv[1:]))
    print(f"{args.seeds} seeds (0..{args.seeds - 1}); baseline: {BASELINE} (training as today)")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runners = []
        if args.demo_home:
            runners.append(demo_runner(args.demo_home))
        if args.drift_home:
            runners.append(
                drift_runner(
                    args.drift_home,
                    scenario_seed=args.scenario_seed,
                    cameras=args.cameras,
                    seconds=args.seconds,
                    tmp=Path(tmp),
                )  # fmt: skip
            )
        for fit, score, about in runners:
            rows, ensemble = measure(fit, score, args.methods, args.seeds)
            print_table(about, rows)
            if ensemble is not None:
                print(edge_latency(ensemble, Path(tmp)))
    print(
        "\ntest accuracy: mean ± sd over seeds [min-max]; 'all' pools the cameras' frames. "
        f"total {time.perf_counter() - t_start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Active learning, measured: does the drift queue's ranking buy more accuracy per label than
random selection? (issue 20, "Active learning, measured").

Reproduce (repo root; after the drift scenario's ~5 minutes, or on any finished scenario home)::

    export LENSLINE_HOME=/tmp/al-home DAGSTER_HOME=/tmp/al-home/dagster
    lensline demo --cameras 3 --videos-per-camera 2 --seconds 30 --scenario drift
    nice -n 19 python benchmarks/active_learning.py --home $LENSLINE_HOME --out /tmp

The home is only read. The model that ranked the scenario's drift queue (the registry's first
model, the baseline champion) is the starting point; for each of two shifts

* **gray gloves + dim light on cam1**: the scenario's own drift (its four landed cam1 videos,
  rendered again from the same seeds, are the pool; its evaluation video plus more);
* **dirty lens on cam3** (``--other``): a shift the scenario does not contain;

the pool is every sampled frame of the shifted videos, sampled and presence-scored as ingestion
does (:func:`data_quality.ingest.sample_video`), and scored by the champion (embeddings,
softmax) as ``drift_report`` does. For each label budget (10, 20, 40, 80, 160, capped at the
pool) and seed, each strategy picks frames:

* ``random`` (the baseline, in the same run): uniform over the pool;
* ``random, items``: uniform over the frames ``item_present`` does not rule out (separates the
  presence gain from the ranking gain);
* ``uncertainty``: highest normalised entropy of the champion's softmax, no presence;
* ``lensline``: the real queue, :func:`data_quality.drift.per_camera.drift_queue_rows` over the
  pooled frames (uncertainty + novelty + diversity by :func:`needs_labels`, items first,
  ``empty_share`` 0), with the camera's stored drift reference. ``drift_report`` ranks each
  video on its own up to ``label_budget`` (60) frames; here the pool's videos are ranked as
  one, so that a budget is a total.

A picked frame's label is the renderer's ground truth (what the simulated annotators label
from; their noise is left out); a frame without an item has no label and teaches nothing, so
the budget spent on it is lost; the queue with presence spends at most the pool's item frames.
The model for each point is the loop's real incremental path (``trained_model``'s warm start,
``training.incremental.replay_rows``): init from the champion, every picked label plus a
``replay_share`` 0.5 per-class replay of the champion's training frames, ``warm_epochs`` 10 at
the champion's learning rate x ``warm_lr_scale`` 0.5, the champion's config otherwise
(condition balancing over ``camX`` and ``camX/drift``); no val set (the loop's has drifted
frames curation split off; here every label goes to training): the last epoch is kept.
Scored on every labelled frame of ``--eval-videos`` new videos of the shifted condition, never
in the pool. Prints mean ± sd over seeds per strategy and budget, and writes
``<out>/active_learning.png``.

``--draws N`` renders N pools and evaluation sets per shift (draw 0 is the scenario's own
videos; draw d uses render seed ``--scenario-seed + 1 + d``) and prints each draw's table and
the pooled one: a learning curve on one pool of ~60 item frames depends on which few items
land in the first picks, so read several draws.

Cost (2026-12-07, 2 cores shared with other benchmarks): the default, 2 shifts x 4 strategies
x 5 budgets x 3 seeds = 120 warm starts of ~4 s each, took 509-547 s a draw; ``--quick``
(budgets 10, 40, 160, 2 seeds, 5 epochs) 161 s; ``--draws 3`` 1618 s. Results in docs/drift.md, "Active learning,
measured".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

STRATEGIES = ("random", "random, items", "uncertainty", "lensline")
# assets.models.TrainingConfig's defaults for a warm start
WARM_EPOCHS, WARM_LR_SCALE, REPLAY_SHARE = 10, 0.5, 0.5


@dataclass
class Pool:
    """One shift's candidate frames and evaluation set."""

    name: str
    camera: str
    images: np.ndarray  # uint8 (N, S, S, 3): model inputs of the pool frames
    labels: np.ndarray  # int (N,): class index, -1 without an item (no label)
    frames: pl.DataFrame  # video_id, frame_index, camera_id, uri, item_present
    embeddings: np.ndarray  # (N, D) under the champion
    probs: np.ndarray  # (N, K) under the champion
    reference: np.ndarray | None  # (M, D) the camera's drift reference embeddings
    eval_images: np.ndarray
    eval_labels: np.ndarray


def pick(strategy: str, pool: Pool, budget: int, seed: int) -> np.ndarray:
    """int (<= budget,): pool rows the strategy sends for labelling."""
    from data_quality.drift.per_camera import drift_queue_rows
    from data_quality.drift.sampling import _entropy

    n = len(pool.labels)
    rng = np.random.default_rng([seed, budget])
    if strategy == "random":
        return rng.choice(n, size=min(budget, n), replace=False)
    if strategy == "random, items":
        items = np.flatnonzero(pool.frames["item_present"].ne(False).fill_null(True).to_numpy())
        return rng.choice(items, size=min(budget, len(items)), replace=False)
    if strategy == "uncertainty":
        return np.argsort(-_entropy(pool.probs), kind="stable")[:budget]
    rows = drift_queue_rows(
        pool.frames, ["data", "prediction"], pool.embeddings, pool.probs, pool.reference,
        budget=budget, now=datetime.now(UTC),
    )  # fmt: skip
    index = pool.frames.with_row_index("_row").join(
        rows.select("video_id", "frame_index", "priority"), on=["video_id", "frame_index"]
    )
    return index.sort("priority")["_row"].to_numpy()


def build_pool(name, camera, conditions, seeds, *, args, champion, tmp: Path) -> Pool:
    """Render the shift's pool and evaluation videos, sample and score them."""
    import cv2

    from data_quality.ingest import sample_video
    from demo import render_video
    from training.evaluate import embed, predict_proba

    classes, spec, model = champion["classes"], champion["spec"], champion["model"]
    rows, bgr, labels, ev_bgr, ev_y = [], [], [], [], []
    for v, seed in enumerate(seeds):
        path = tmp / f"{name}_{v}.mp4"
        truth = render_video(
            path, seed=seed, camera_id=camera, seconds=args.seconds, conditions=conditions
        )
        known = dict(
            truth.filter(pl.col("label").is_in(classes)).select("frame_index", "label").iter_rows()
        )
        if v >= args.pool_videos:  # evaluation: every labelled frame
            import av

            with av.open(str(path)) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    if i in known:
                        ev_bgr.append(frame.to_ndarray(format="bgr24"))
                        ev_y.append(classes.index(known[i]))
            continue
        sampled = sample_video(path, name=str(path))
        for f, score in zip(sampled.frames, sampled.presence, strict=True):
            bgr.append(cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR))
            labels.append(classes.index(known[f.frame_index]) if f.frame_index in known else -1)
            present = None if np.isnan(score) else bool(score >= 0.5)
            rows.append({"video_id": f"{camera}__{name}_{v}", "frame_index": f.frame_index,
                         "camera_id": camera, "uri": "", "item_present": present})  # fmt: skip
    images = spec.images(bgr, [camera] * len(bgr))
    ref = champion["references"].get(camera)
    return Pool(
        name=name, camera=camera, images=images, labels=np.asarray(labels),
        frames=pl.DataFrame(rows, schema_overrides={"item_present": pl.Boolean}),
        embeddings=embed(model, images), probs=predict_proba(model, images),
        reference=None if ref is None else ref.embeddings,
        eval_images=spec.images(ev_bgr, [camera] * len(ev_bgr)), eval_labels=np.asarray(ev_y),
    )  # fmt: skip


def accuracy(model, pool: Pool) -> float:
    from training.evaluate import predict_proba

    return float((predict_proba(model, pool.eval_images).argmax(1) == pool.eval_labels).mean())


def warm_start(champion, pool: Pool, picked: np.ndarray, seed: int, epochs: int):
    """The loop's incremental retrain on the picked frames that carry a label."""
    from training.incremental import replay_rows
    from training.train import train_model

    new = picked[pool.labels[picked] >= 0]
    x_past, y_past, g_past = champion["train"]
    keep = replay_rows(
        np.r_[np.zeros(len(y_past), bool), np.ones(len(new), bool)],
        np.r_[y_past, pool.labels[new]], share=REPLAY_SHARE, seed=seed,
    )  # fmt: skip
    x = np.concatenate([x_past, pool.images[new]])[keep]
    y = np.r_[y_past, pool.labels[new]][keep]
    g = np.r_[g_past, np.full(len(new), f"{pool.camera}/drift", dtype=object)][keep]
    cfg = replace(
        champion["config"], seed=seed, epochs=epochs, init_checkpoint=champion["path"],
        lr=champion["config"].lr * WARM_LR_SCALE,
    )  # fmt: skip
    model = train_model(x, y, classes=champion["classes"], config=cfg, groups=g).model
    return model, len(new)


def load_champion(storage, version: str | None) -> dict:
    """The model that ranked the drift queue, its training split as arrays and references."""
    import json

    from data_quality.drift import CameraReference
    from lake.frames import load_frame_images
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.train import TrainConfig

    registry = storage.registry()
    version = version or registry.list().sort("created_at")["model_version"][0]
    record = registry.get(version)
    path = storage.fetch_local([record.checkpoint_uri])[0]
    model, meta = load_checkpoint(path, expected_sha256=record.checkpoint_sha256)
    classes, spec = json.loads(meta["classes"]), checkpoint_spec(meta)
    keys = ["video_id", "frame_index"]
    train = (
        storage.read_table("dataset", version=record.dataset_version)
        .filter((pl.col("split") == "train") & pl.col("label").is_in(classes))
        .sort(keys)
        .join(storage.read_table("frames").select(*keys, "camera_id", "uri", "sha256"), on=keys)
    )
    y = train["label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
    x = load_frame_images(storage, train, spec)
    refs = storage.read_table("drift_references").filter(pl.col("model_version") == version)
    return {
        "version": version, "model": model, "path": str(path), "classes": classes, "spec": spec,
        "config": TrainConfig.from_dict(json.loads(meta["config"])),
        "train": (x, y, train["camera_id"].to_numpy().astype(object)),
        "references": {
            c: CameraReference.from_bytes(storage.read_bytes(uri))
            for c, uri in refs.select("camera_id", "uri").iter_rows()
        },
    }  # fmt: skip


def plot(results: dict, budgets: dict[str, list[int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4), squeeze=False)
    for ax, shift in zip(axes[0], budgets, strict=True):
        for strategy in STRATEGIES:
            acc = np.array([results[shift, strategy, b] for b in budgets[shift]])
            m, s = acc.mean(1), acc.std(1)
            ax.errorbar(budgets[shift], m, yerr=s, marker="o", capsize=3, label=strategy)
        champ = float(np.mean(results[shift, "champion", 0]))
        ax.axhline(champ, color="gray", ls=":", label="champion")
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets[shift], [str(b) for b in budgets[shift]])
        ax.set(title=shift, xlabel="label budget", ylabel="accuracy, held-out videos")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="LENSLINE_HOME of a finished drift scenario")
    parser.add_argument("--out", type=Path, default=Path("/tmp"), help="folder for the PNG")
    parser.add_argument("--quick", action="store_true", help="3 budgets, 2 seeds, 5 epochs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", default="10,20,40,80,160")
    parser.add_argument("--other", default="dirty_lens:cam3", help="conditions:camera")
    parser.add_argument("--pool-videos", type=int, default=4, help="the scenario's DRIFT_VIDEOS")
    parser.add_argument("--eval-videos", type=int, default=2)
    parser.add_argument("--scenario-seed", type=int, default=0, help="the demo's --seed")
    parser.add_argument(
        "--draws", type=int, default=1,
        help="pools and evaluation videos to render per shift (draw 0: the scenario's own)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="the demo's --seconds")
    parser.add_argument("--champion", help="model version (default: the registry's first)")
    args = parser.parse_args()
    budgets_in = [int(b) for b in args.budgets.split(",")]
    seeds, epochs = args.seeds, WARM_EPOCHS
    if args.quick:
        budgets_in, seeds, epochs = [10, 40, 160], 2, 5
    os.environ["LENSLINE_HOME"] = args.home
    os.environ.pop("LENSLINE_STORAGE", None)

    from demo.scenario import _conditions
    from lake.storage import LensStorage

    t_start = time.perf_counter()
    champion = load_champion(LensStorage(), args.champion)
    other, other_cam = args.other.split(":")
    n_vid = args.pool_videos + args.eval_videos

    def seeds_for(draw: int, stream: int, cam: str) -> list[int]:
        base = args.scenario_seed + 1 + draw  # draw 0: render_shifted's seed in the scenario
        c = int(cam.removeprefix("cam")) - 1
        ss = [np.random.SeedSequence([base, stream + c, v]) for v in range(n_vid)]
        return [int(s.generate_state(1)[0]) for s in ss]

    shifts = [
        ("gray gloves + dim, cam1", "cam1", _conditions("gray_gloves"), 1000),
        (f"{other.replace('_', ' ')}, {other_cam}", other_cam, _conditions(other), 5000),
    ]
    results: dict = {}  # (shift, strategy, budget[, "spent"]) -> one value per draw and seed
    budgets: dict[str, list[int]] = {}
    for draw in range(args.draws):
        mine: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, cam, cond, stream in shifts:
                pool = build_pool(
                    name.split(",")[0].replace(" ", "_"), cam, cond, seeds_for(draw, stream, cam),
                    args=args, champion=champion, tmp=Path(tmp),
                )  # fmt: skip
                items = int((pool.labels >= 0).sum())
                present = int(pool.frames["item_present"].ne(False).fill_null(True).sum())
                mine[name, "champion", 0] = [accuracy(champion["model"], pool)]
                budgets[name] = sorted({min(b, len(pool.labels)) for b in budgets_in})
                ref = "none (in-sample)" if pool.reference is None else len(pool.reference)
                print(
                    f"draw {draw}, {name}: pool {len(pool.labels)} frames ({items} with a "
                    f"labelled item, {present} item_present), eval {len(pool.eval_labels)} "
                    f"frames; champion {champion['version']} "
                    f"{mine[name, 'champion', 0][0]:.3f}; reference embeddings {ref}",
                    flush=True,
                )
                for strategy in STRATEGIES:
                    for b in budgets[name]:
                        accs, spent = [], []
                        for seed in range(seeds):
                            picked = pick(strategy, pool, b, seed)
                            model, n_new = warm_start(champion, pool, picked, seed, epochs)
                            accs.append(accuracy(model, pool))
                            spent.append((len(picked), n_new))
                        mine[name, strategy, b], mine[name, strategy, b, "spent"] = accs, spent
                        print(
                            f"  {strategy:<14} {b:>4}: {np.mean(accs):.3f} ± {np.std(accs):.3f}"
                            f"  (labels spent {np.mean([s for s, _ in spent]):.0f}, with an item "
                            f"{np.mean([n for _, n in spent]):.1f}; "
                            f"{time.perf_counter() - t_start:.0f} s)",
                            flush=True,
                        )
        table(mine, budgets, f"draw {draw}: mean ± sd over {seeds} seeds")
        for key, values in mine.items():
            results.setdefault(key, []).extend(values)
    if args.draws > 1:
        table(results, budgets, f"all {args.draws} draws: mean ± sd over draws x {seeds} seeds")
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "active_learning.png"
    plot(results, budgets, png)
    print(f"\nplot: {png}; {time.perf_counter() - t_start:.0f} s")


def table(results: dict, budgets: dict[str, list[int]], title: str) -> None:
    """Print accuracy per strategy and budget, and the labelled items each strategy got."""
    print(f"\naccuracy on held-out videos of the shifted condition, {title}")
    for name in budgets:
        print(f"\n{name} (champion, no labels: {np.mean(results[name, 'champion', 0]):.3f})")
        print(f"{'strategy':<16}" + "".join(f"{b:>15}" for b in budgets[name]))
        for strategy in STRATEGIES:
            cells = (results[name, strategy, b] for b in budgets[name])
            print(
                f"{strategy:<16}" + "".join(f"{np.mean(a):>8.3f} ± {np.std(a):.3f}" for a in cells)
            )
        items = (
            "/".join(str(round(np.mean([n for _, n in results[name, s, b, "spent"]])))
                     for s in STRATEGIES)
            for b in budgets[name]
        )  # fmt: skip
        print(f"{'items labelled':<16}" + "".join(f"{i:>15}" for i in items))


if __name__ == "__main__":
    main()

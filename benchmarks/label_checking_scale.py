"""What label checking's K-fold CNN costs and buys: test-time views, folds, epochs, and scaling.

Issue 15.3: ``frame_embeddings`` (:func:`training.crossval.cross_val_predict`) on 5,000 labelled
28x28 digits took 489-543 s for one video after frame-level folds (5) and test-time views (18 at
64 px) came in. This script measures, in-process, the domain function the asset calls (the
frames as the graph's preprocessing makes them: 28x28 grey -> ``cv2.INTER_AREA`` -> S x S RGB;
no H.264 round trip, which ``benchmarks/label_issues.py --video`` covers through the real graph):

1. **views / folds / epochs**: for each ``--configs`` entry ``side:folds:epochs`` the fold models
   are trained once and the held-out probabilities scored with the first 1, 6 and 18 test-time
   views (:func:`training.crossval.tta_views`; 10 exist at 32 px), then the graph's
   :func:`data_quality.label_issues.find_label_issues` (with the embeddings, as ``label_issues``
   runs it). Precision / recall / F1 of the injected flips (20 % symmetric, seeded), held-out
   accuracy against the true labels, and ``cross_val_predict``'s wall time with that many views
   (training + that many views' inference).
2. **baseline** (row ``base``), in the same run for every config: the plain CNN + cleanlab, i.e.
   the same fold models' single softmax on the clean held-out image (no test-time views) and
   ``cleanlab.filter.find_label_issues`` on it (no embeddings, no Datalab), as the baseline of
   ``benchmarks/label_issues.py --video`` but without training its models a second time.
3. **scaling** (``--scale``): ``cross_val_predict`` with ``EmbeddingConfig``'s defaults at 1k, 5k
   and 20k labelled frames: seconds, and seconds per 1k frames (flat = linear growth).

The digits: scikit-learn's 1797 8x8 scans, upscaled to 20x20 in a 28x28 canvas (MNIST layout),
each copy with its own small rotation, scale and shift, repeated in shuffled order up to N (so
copies of one scan are not neighbours in time; flips are drawn per frame). Every timing line
carries ``/proc/loadavg`` (other work shares the 2 cores) and both wall and CPU seconds of this
process: with one torch thread (``TrainConfig``) CPU seconds are the wall time an idle core
would take, and stay comparable when the load changes.

Reproduce (repo root; CPU seconds below, wall 1.1-4.5x that at load averages 4-17)::

    .venv/bin/python benchmarks/label_checking_scale.py --n 5000 \
        --configs 64:5:15,64:3:8,32:5:15,32:3:15,32:5:8,32:3:8
    .venv/bin/python benchmarks/label_checking_scale.py --configs '' --scale 1000,5000,20000

Measured (seed 0, 5,000 frames; ``base`` = the 1-view row's probabilities + plain cleanlab, equal
to it in every config; before issue 15.3 the graph ran 64 px, 5 folds, 15 epochs, 18 views)::

    side folds epochs | F1 with 1 / 6 / 18 views (10 at 32 px) | CPU s with 1 / 6 / 18 views
      64     5     15 | 0.950  0.957  0.958                    |   401  417  453   (before)
      64     3     15 |   -    0.935    -                      |    -   220    -
      64     3      8 | 0.908  0.919  0.921                    |   114  131  167
      32     5     15 | 0.948  0.960  0.961                    |   187  189  191
      32     3     15 | 0.950  0.962  0.964                    |   107  109  111
      32     5      8 | 0.926  0.947  0.949                    |   102  105  106
      32     3      8 | 0.918  0.934  0.938                    |    48   50   52

Epochs buy most (8 -> 15: +0.013 to +0.028), 3 folds instead of 5 lost 0.022 at 64 px (not at
32), views beyond 6 buy <= 0.002, and 32 px (28x28 frames hold no more) matches 64 px at 40-45 %
of the CPU. Defaults now: fold models at ``fold_side`` (32 px here), 5 folds, 15 epochs up to
``fold_images`` = 60,000 images per fold model, 6 views. Scaling with those::

     frames |  CPU s  CPU s / 1k |  P     R     F1
       1000 |     39       38.8  | 0.830 0.860 0.845
       5000 |    194       38.9  | 0.971 0.955 0.963
      20000 |    200       10.0  | 0.974 0.949 0.962   (4 epochs: 16,000 frames per fold model)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

warnings.filterwarnings("ignore")
K = 10
VIEW_COUNTS = (1, 6, 18)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def clock() -> np.ndarray:
    """[wall, cpu] seconds: the process's CPU time is the steadier one on shared cores."""
    return np.array([time.perf_counter(), time.process_time()])


def digits28(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 28, 28) grey digits (MNIST layout) and int (n,) true labels, seeded."""
    import cv2
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    scans = np.clip(x.reshape(-1, 8, 8) * 16, 0, 255).astype(np.uint8)
    order = np.concatenate([rng.permutation(len(y)) for _ in range(n // len(y) + 1)])[:n]
    out = np.zeros((n, 28, 28), np.uint8)
    for i, j in enumerate(order):
        canvas = np.zeros((28, 28), np.uint8)
        canvas[4:24, 4:24] = cv2.resize(scans[j], (20, 20), interpolation=cv2.INTER_LINEAR)
        m = cv2.getRotationMatrix2D((14, 14), rng.uniform(-12, 12), rng.uniform(0.9, 1.1))
        m[:, 2] += rng.uniform(-2, 2, 2)
        out[i] = cv2.warpAffine(canvas, m, (28, 28), flags=cv2.INTER_LINEAR)
    return out, y[order]


def model_images(gray: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, side, side, 3) RGB as the preprocessing contract makes them (INTER_AREA)."""
    import cv2

    big = np.stack([cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA) for g in gray])
    return np.repeat(big[..., None], 3, axis=3)


def flip_labels(y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = y.copy()
    flip = rng.random(len(y)) < 0.2
    out[flip] = (y[flip] + rng.integers(1, K, flip.sum())) % K
    return out


def prf(found: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = float((found & truth).sum())
    p, r = tp / max(found.sum(), 1), tp / max(truth.sum(), 1)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def graph_flags(noisy: np.ndarray, probs: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """is_label_issue from the graph's label_issues step (one video, frames in order)."""
    from data_quality.label_issues import find_label_issues

    n = len(noisy)
    keys = pl.DataFrame({"video_id": ["cam1__digits"] * n, "frame_index": np.arange(n)})
    names = [f"d{k}" for k in range(K)]
    issues = find_label_issues(noisy, probs, keys=keys, features=emb, classes=names)
    return issues["is_label_issue"].to_numpy()


def fold_models(images, noisy, *, folds: int, epochs: int, seed: int, counts=VIEW_COUNTS):
    """Train once; held-out probabilities with the first n views for each n in ``counts``.

    Returns ``{n: (probs, seconds)}`` (seconds: [wall, cpu] of the whole call with only n
    views' inference),
    the embeddings and the grouping record.
    """
    import training.crossval as cv
    from training.train import TrainConfig

    config = TrainConfig(image_size=images.shape[1], epochs=epochs, seed=seed)
    counts = sorted({min(c, len(cv.tta_views(config))) for c in counts})
    parts: dict[int, list[np.ndarray]] = {c: [] for c in counts}
    spent = {c: np.zeros(2) for c in counts}
    real = cv.tta_predict

    def each_count(model, imgs, views, threads=1):
        for c in counts:
            t = clock()
            p, e = real(model, imgs, views[:c], threads)
            spent[c] += clock() - t
            parts[c].append(p)
        return p, e

    cv.tta_predict = each_count
    try:
        t = clock()
        _, emb, fold, grouping = cv.cross_val_predict(
            images, noisy, classes=[f"d{k}" for k in range(K)], groups=np.zeros(len(noisy), int),
            frame_indices=np.arange(len(noisy)), config=config, frame_folds=folds,
            n_views=max(counts), return_grouping=True,
        )  # fmt: skip
        wall = clock() - t
    finally:
        cv.tta_predict = real
    out = {}
    for c in counts:
        probs = np.zeros((len(noisy), K), np.float32)
        for f, p in enumerate(parts[c]):
            probs[fold == f] = p  # sklearn's test indices are sorted, as fold == f is
        out[c] = (probs, wall - sum(spent.values()) + spent[c])
    return out, emb, grouping


def views_table(n: int, configs: list[str], seed: int, baseline: bool) -> None:
    from cleanlab.filter import find_label_issues as cleanlab_issues

    gray, y = digits28(n, seed)
    noisy = flip_labels(y, seed)
    flipped = noisy != y
    print(f"{n} digits 28x28, {flipped.sum()} flipped (20 %), seed {seed}, one video\n")
    head = f"{'side':>4} {'folds':>5} {'epochs':>6} {'views':>5} | {'P':>6} {'R':>6} {'F1':>6} {'acc':>6} | {'wall s':>6} {'cpu s':>6}  loadavg"
    print(head + "\n" + "-" * len(head), flush=True)
    for spec in configs:
        side, folds, epochs = (int(v) for v in spec.split(":"))
        images = model_images(gray, side)
        before = load()
        results, emb, grouping = fold_models(images, noisy, folds=folds, epochs=epochs, seed=seed)
        for views, (probs, seconds) in results.items():
            p, r, f = prf(graph_flags(noisy, probs, emb), flipped)
            acc = float((probs.argmax(1) == y).mean())
            print(
                f"{side:>4} {folds:>5} {epochs:>6} {views:>5} | {p:>6.3f} {r:>6.3f} {f:>6.3f} "
                f"{acc:>6.3f} | {seconds[0]:>6.0f} {seconds[1]:>6.0f}  {before} -> {load()}  "
                f"({grouping['grouping']})",
                flush=True,
            )
        if baseline:  # the same fold models, one softmax each, plain cleanlab
            probs = results[min(results)][0]
            p, r, f = prf(cleanlab_issues(noisy, probs, n_jobs=1), flipped)
            acc = float((probs.argmax(1) == y).mean())
            print(
                f"{side:>4} {folds:>5} {epochs:>6} {'base':>5} | {p:>6.3f} {r:>6.3f} {f:>6.3f} "
                f"{acc:>6.3f} | {results[min(results)][1][0]:>6.0f} {results[min(results)][1][1]:>6.0f}"
                "  baseline: plain CNN + cleanlab",
                flush=True,
            )


def scale_table(sizes: list[int], seed: int) -> None:
    """``cross_val_predict`` with ``EmbeddingConfig``'s defaults at each size."""
    from assets.features import EmbeddingConfig
    from training.crossval import cross_val_predict, fold_side
    from training.preprocess import Crop, PreprocessSpec
    from training.train import TrainConfig

    d = EmbeddingConfig()
    spec = PreprocessSpec(crop=Crop("full"))  # the preprocess resource's size, crop=full
    side = spec.image_size
    fold = d.image_size or fold_side(spec, [None], np.array([28]), np.array([28]))
    print(
        f"\nscaling: EmbeddingConfig() defaults (frame_folds={d.frame_folds}, epochs={d.epochs}, "
        f"fold_images={d.fold_images}, tta_views={d.tta_views}); {side} px images, fold models "
        f"at {fold} px (fold_side of 28x28 frames), one video"
    )
    head = f"{'frames':>7} | {'wall s':>7} {'cpu s':>7} {'cpu s/1k':>8} | {'P':>6} {'R':>6} {'F1':>6} | loadavg"
    print(head + "\n" + "-" * len(head), flush=True)
    for n in sizes:
        gray, y = digits28(n, seed)
        noisy = flip_labels(y, seed)
        images, before, t = model_images(gray, side), load(), clock()
        probs, emb, _ = cross_val_predict(
            images, noisy, classes=[f"d{k}" for k in range(K)], groups=np.zeros(n, int),
            frame_indices=np.arange(n), n_folds=d.n_folds, frame_folds=d.frame_folds,
            config=TrainConfig(image_size=side, epochs=d.epochs, seed=seed, batch_size=32),
            tta=d.tta, n_views=d.tta_views, fold_images=d.fold_images, image_size=fold,
        )  # fmt: skip
        wall, cpu = clock() - t
        p, r, f = prf(graph_flags(noisy, probs, emb), noisy != y)
        print(
            f"{n:>7} | {wall:>7.0f} {cpu:>7.0f} {cpu * 1000 / n:>8.1f} | {p:>6.3f} {r:>6.3f} {f:>6.3f} | "
            f"{before} -> {load()}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="labelled frames, views table")
    parser.add_argument(
        "--configs", default="64:3:8,64:3:15,32:3:8", help="side:folds:epochs, comma-separated"
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--scale", default="", help="e.g. 1000,5000,20000 ('' = skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    if configs:
        views_table(args.n, configs, args.seed, baseline=not args.no_baseline)
    if args.scale:
        scale_table([int(s) for s in args.scale.split(",")], args.seed)


if __name__ == "__main__":
    main()

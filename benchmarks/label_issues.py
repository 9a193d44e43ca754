"""Benchmark Lensline's label-issue detection on a real labelled image set.

Reproduce (repo root; part 1 trains 3 CNN folds per row and seed)::

    python benchmarks/label_issues.py                      # defaults below
    python benchmarks/label_issues.py --seeds 0,1,2 --sizes 1000,10000,100000

Part 1, scikit-learn's digits (1797 real 8x8 scans): a stratified 25 % clean
test split is held out; the rest gets symmetric or class-conditional label
noise at 10 / 20 / 40 %. Detection precision / recall / F1 against the
known flips for

* baseline: ``cleanlab.filter.find_label_issues`` on 5-fold out-of-sample
  probabilities of a plain ``LogisticRegression`` on raw pixels;
* Lensline: what the asset graph runs, ``training.crossval.cross_val_predict``
  (3-fold held-out probabilities and embeddings of the edge CNN, the digits
  upscaled to 32x32 RGB) and ``find_label_issues`` on those embeddings.

Then test accuracy of one downstream model (standardized logistic
regression) trained on the noisy, Lensline-curated (``curate`` default
policy: relabel where the model is confident, drop unresolved issues), baseline-curated (drop
flagged) and true labels; "gap" = share of the noisy-to-true accuracy gap
recovered. Everything is averaged over ``--seeds``.

Part 3, the video path (``--video``; issue 7.13): the digits (``--video-digits`` of them,
upscaled to 64x64) encoded as H.264 videos with PyAV (one video, and ``--videos`` videos),
single-annotator labels with 20 % symmetric flips in ``landing/labels``, run through the real
graph in a temp ``LENSLINE_HOME`` (``orchestration.runner.run_pending``, selection
``*label_issues``: ingest -> labels -> frame_embeddings -> label_consensus -> label_issues; the
``preprocess`` resource set to ``crop="full"``). Beside it, in the same run, the plain
baseline: a 5-fold small CNN (``training.crossval.cross_val_predict`` with ``tta=False`` =
``training.model`` + ``training.train``, plain folds, one softmax per held-out image, the raw
8x8 arrays upscaled) and ``cleanlab.filter.find_label_issues``. Precision / recall / F1 of the
injected flips for both; each seed draws its own flips and is both methods' training seed.
Reproduce (about 17 min on 2 cores per 3 seeds; measured 2026-12-07 at 5ea3b7d, after 3876eaa's
test-time views and ac8166f's fold side / 6 views / 5 frame folds)::

    python benchmarks/label_issues.py --video --epochs 10 --videos 4 --seeds 0,1,2
    python benchmarks/label_issues.py --video --epochs 10 --videos 4 --seeds 3,4,5

    P / R / F1 per seed, s = seconds per seed and method
    seed   baseline (5-fold CNN + cleanlab)   Lensline graph, 1 video     Lensline graph, 4 videos
    0      0.91  0.91  0.908    90            0.93  0.92  0.926   118     0.91  0.92  0.918   104
    1      0.89  0.84  0.861    88            0.91  0.82  0.865   107     0.93  0.86  0.894   114
    2      0.92  0.90  0.910    90            0.94  0.91  0.923   101     0.94  0.90  0.920   102
    3      0.887 0.880 0.883    88            0.920 0.867 0.892    98     0.907 0.864 0.885   103
    4      0.926 0.893 0.909    86            0.924 0.904 0.914   107     0.922 0.907 0.914   104
    5      0.907 0.859 0.882    83            0.951 0.888 0.919    95     0.932 0.875 0.902    96
    0-2    0.906 0.881 0.893    89            0.928 0.883 0.905   109     0.928 0.894 0.911   107
    3-5    0.907 0.877 0.892    86            0.932 0.886 0.908   100     0.920 0.882 0.900   101

(seeds 0-2 printed P / R to 2 decimals.) F1 minus the baseline, paired by seed: 1 video +0.012
+/- 0.004 (SE) over seeds 0-2 and +0.014 +/- 0.005 over all 6, positive on every seed (+0.004 to
+0.037); 4 videos +0.018 +/- 0.008 and +0.013 +/- 0.005. The baseline's seed-to-seed SD is 0.020
(6 seeds). 1 video minus 4 videos: +0.001 +/- 0.006 (-0.029 to +0.017): level. Both use the
same frames, labels and folds (frame folds, the same stratified split of the same row order), so
only H.264 separates them, and that alone moves F1 by up to 0.03 on one seed. The baseline is
deterministic (the same per-seed F1 as before those commits); the previous Lensline table read
1 video 0.898, 4 videos 0.914 (147 / 111 s on busier cores).

Test-time views, in-process on the same frames (one H.264 video decoded, JPEG q90), the same 5
fold models per seed scored with 1 / 6 / 18 views, cleanlab defaults, seeds 0-2: F1 0.898 / 0.900
/ 0.908 (1 -> 6 views: +0.003 / +0.002 / +0.001; 6 -> 18: +0.016 / +0.006 / +0.002), so the
default views explain little of the graph's margin (the graph's and this in-process run of one
seed differ by up to 0.017 F1). At 64 px the default 6 views (clean, mirror, four 1 px shifts)
keep little of the gain that 18 views (2 px shifts and mirrored shifts too) buy here, at three
times the scoring. cleanlab's
``filter_by="prune_by_class"`` instead of the default ``prune_by_noise_rate`` on the same 6-view
probabilities: +0.007 / +0.035 / +0.026 F1 with these symmetric flips, but -0.008 / -0.041 /
-0.014 with 20 % class-conditional flips (raw arrays), so the default stays.

Before 2026-12-07 this section read: Lensline's precision higher on every seed, F1 +0.005 (1
video, within the noise) and +0.021 (4 videos). What Lensline adds to the plain CNN is
test-time augmentation in ``cross_val_predict``: each held-out probability is the mean softmax
over the clean image and the training augmentation's shifts and mirror
(``training.crossval.tta_views``, 18 views at 64 px; 6 by default since issue 15.3,
see ``benchmarks/label_checking_scale.py``). Measured on the raw arrays (same folds,
same fold models, 3 seeds): held-out accuracy 0.919 -> 0.931, label-issue F1 0.898 -> 0.920
(+0.017 / +0.037 / +0.013 per seed); shifts only 0.901-0.904, mirror only 0.916; two models per fold
(twice the training) 0.914, with the mirror 0.927. The demo graph pays about 7 s of its
frame_embeddings step (57 s; whole graph 129 s on 2 cores).

Before commit d7af881, Lensline was at P 0.78 / R 0.88 (1 video) and 0.75 / 0.90 (4 videos): its
folds were 3 contiguous time blocks of the one video, or whole videos, so each fold model never
saw a third of the writers and its held-out probabilities flagged correct labels (held-out
accuracy 0.85 against 0.92). Neither H.264 + JPEG nor 3 folds instead of 5 nor consensus
(single annotator: the given label) explained it. ``frame_embeddings`` measures whether frames
within the guard are near-duplicates (``data_quality.splits.guard_near_share``: 0.7 % for the
digits, 83 % for the demo's conveyor items) and folds frame by frame, 5 folds, when they are not.

Part 2, scaling: wall time of the label-issue step (all issue types incl. the
exact kNN graph for Datalab) on synthetic 64-d Gaussian-cluster embeddings with
20 % noise; the held-out probabilities are the clusters' posteriors (the CNN's
cost is ``benchmarks/train.py``'s).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small BLAS calls thrash on shared cores
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from data_quality.curate import decide_actions  # noqa: E402
from data_quality.label_issues import find_label_issues  # noqa: E402

warnings.filterwarnings("ignore")
K = 10
EPOCHS = 10  # per fold model; --epochs
EPOCHS_USED = [EPOCHS]


def symmetric_noise(y: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Flip a ``rate`` share of labels to a uniformly chosen other class."""
    out = y.copy()
    flip = rng.random(len(y)) < rate
    out[flip] = (y[flip] + rng.integers(1, K, flip.sum())) % K
    return out


def class_conditional_noise(y: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Each class flips with prob ``rate`` to two fixed other classes (70 % / 30 %)."""
    trans = np.zeros((K, K))
    for k in range(K):
        a, b = rng.choice([j for j in range(K) if j != k], 2, replace=False)
        trans[k, k], trans[k, a], trans[k, b] = 1 - rate, 0.7 * rate, 0.3 * rate
    cum = trans.cumsum(axis=1)
    return (rng.random(len(y))[:, None] > cum[y]).sum(axis=1)


def prf(found: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = float((found & truth).sum())
    p = tp / max(found.sum(), 1)
    r = tp / max(truth.sum(), 1)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def baseline_probs(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    return cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=cv, method="predict_proba")


def downstream_accuracy(x_tr, y_tr, x_te, y_te) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_tr, y_tr)
    return float((model.predict(x_te) == y_te).mean())


def digit_images(x: np.ndarray, side: int = 32) -> np.ndarray:
    """uint8 (N, side, side, 3) RGB from digits rows of 64 values in [0, 1] (8x8 scans)."""
    import cv2

    small = np.clip(x.reshape(-1, 8, 8) * 255.0, 0, 255).astype(np.uint8)
    big = np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_LINEAR) for im in small])
    return np.repeat(big[..., None], 3, axis=3)


def lensline_curated(x, noisy, keys, seed, epochs=EPOCHS):
    """Run Lensline's step and default curation; return (flags, kept mask, curated labels).

    The same calls as the graph: ``frame_embeddings`` (``cross_val_predict``: K-fold CNN,
    held-out probabilities and embeddings), then ``label_issues`` and ``curated_dataset``.
    """
    from training.crossval import cross_val_predict
    from training.train import TrainConfig

    names = [str(k) for k in range(K)]
    config = TrainConfig(image_size=32, epochs=epochs, seed=seed)
    probs, emb, _ = cross_val_predict(
        digit_images(x), noisy, classes=names, groups=keys["video_id"].to_numpy(), config=config
    )
    issues = find_label_issues(noisy, probs, keys=keys, features=emb, classes=names)
    consensus = keys.with_columns(consensus_label=pl.Series([names[i] for i in noisy]))
    actions = decide_actions(consensus, issues)  # sorted by key == input order here
    kept = actions["action"].to_numpy() != "dropped"
    return issues["is_label_issue"].to_numpy(), kept, actions["label"].cast(pl.Int64).to_numpy()


def digits_table(seeds: list[int]) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x_all, y_all = load_digits(return_X_y=True)
    x_all = x_all / 16.0
    data = {}  # seed -> (pool x, pool y, test x, test y, acc with true labels); split varies by seed
    for seed in seeds:
        x, x_te, y, y_te = train_test_split(
            x_all, y_all, test_size=0.25, random_state=seed, stratify=y_all
        )
        data[seed] = (x, y, x_te, y_te, downstream_accuracy(x, y, x_te, y_te))
    n_pool = len(data[seeds[0]][1])
    keys = pl.DataFrame(
        {"video_id": [f"img{i:04d}" for i in range(n_pool)], "frame_index": np.zeros(n_pool, int)}
    )
    print(
        f"digits: {n_pool} noisy-label pool, {len(y_all) - n_pool} clean test images, 8x8 raw pixels; "
        f"mean over seeds {seeds} (each its own split and noise); test acc with true labels "
        f"{np.mean([d[4] for d in data.values()]):.3f}\n"
    )
    head = (
        f"{'noise':<18}{'rate':>5} | {'baseline P / R / F1':^20} | {'Lensline P / R / F1':^20} | "
        f"{'acc noisy':>9} {'base cur':>8} {'lens cur':>8} | {'gap base':>8} {'gap lens':>8} | {'s':>4}"
    )
    print(head)
    print("-" * len(head))
    for name, noise in (
        ("symmetric", symmetric_noise),
        ("class-conditional", class_conditional_noise),
    ):
        for rate in (0.1, 0.2, 0.4):
            rows = []
            for seed in seeds:
                x, y, x_te, y_te, acc_true = data[seed]
                rng = np.random.default_rng(1000 + seed)
                noisy = noise(y, rate, rng)
                wrong = noisy != y
                from cleanlab.filter import find_label_issues as cl_find

                base_flags = cl_find(noisy, baseline_probs(x, noisy, seed), n_jobs=1)
                t1 = time.perf_counter()
                lens_flags, kept, curated = lensline_curated(x, noisy, keys, seed, EPOCHS_USED[0])
                t2 = time.perf_counter()
                acc_noisy = downstream_accuracy(x, noisy, x_te, y_te)
                acc_base = downstream_accuracy(x[~base_flags], noisy[~base_flags], x_te, y_te)
                acc_lens = downstream_accuracy(x[kept], curated[kept], x_te, y_te)
                gap = max(acc_true - acc_noisy, 1e-9)
                rows.append(
                    [
                        *prf(base_flags, wrong),
                        *prf(lens_flags, wrong),
                        acc_noisy,
                        acc_base,
                        acc_lens,
                        (acc_base - acc_noisy) / gap,
                        (acc_lens - acc_noisy) / gap,
                        t2 - t1,
                    ]
                )
            m = np.mean(rows, axis=0)
            print(
                f"{name:<18}{rate:>5.0%} | {m[0]:.3f} / {m[1]:.3f} / {m[2]:.3f} | {m[3]:.3f} / {m[4]:.3f} / {m[5]:.3f} | "
                f"{m[6]:>9.3f} {m[7]:>8.3f} {m[8]:>8.3f} | {m[9]:>8.0%} {m[10]:>8.0%} | {m[11]:>4.1f}",
                flush=True,
            )
    print(
        "\nP/R/F1: detection of flipped labels. 'base cur' drops baseline flags; 'lens cur' applies "
        "Lensline's default CurationPolicy. gap = (curated - noisy) / (true - noisy) test accuracy. "
        "s = seconds for Lensline's step per run.\n"
    )


def scaling_table(sizes: list[int]) -> None:
    print(
        "scaling: synthetic 64-d Gaussian-cluster embeddings, 10 classes, 20% symmetric noise, "
        "groups of 50 frames, brightness/sharpness present, posteriors as held-out probabilities\n"
    )
    head = f"{'N':>8} | {'probs s':>12} {'issues s':>9} {'total s':>8} | {'P':>6} {'R':>6} | flagged per issue type"
    print(head)
    print("-" * len(head))
    for n in sizes:
        rng = np.random.default_rng(n)
        centers = rng.normal(size=(K, 64)) * 0.6
        truth = rng.integers(0, K, n)
        emb = (centers[truth] + rng.normal(size=(n, 64))).astype(np.float32)
        noisy = symmetric_noise(truth, 0.2, rng)
        keys = pl.DataFrame(
            {"video_id": [f"v{i // 50:05d}" for i in range(n)], "frame_index": np.arange(n) % 50}
        )
        quality = keys.with_columns(
            brightness=pl.Series(rng.uniform(20, 250, n)), sharpness=pl.Series(rng.gamma(4, 50, n))
        )
        t0 = time.perf_counter()
        sq = (emb**2).sum(1)[:, None] - 2.0 * emb @ centers.T + (centers**2).sum(1)[None, :]
        logits = -0.5 * sq
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)  # the clusters' posteriors: an ideal held-out model
        t1 = time.perf_counter()
        issues = find_label_issues(noisy, probs, keys=keys, features=emb, quality=quality)
        t2 = time.perf_counter()
        p, r, _ = prf(issues["is_label_issue"].to_numpy(), noisy != truth)
        from data_quality.label_issues import issue_counts

        counts = ", ".join(f"{k}={v}" for k, v in issue_counts(issues).items())
        print(
            f"{n:>8} | {t1 - t0:>12.1f} {t2 - t1:>9.1f} {t2 - t0:>8.1f} | {p:>6.3f} {r:>6.3f} | {counts}",
            flush=True,
        )
    print(
        "\nThe issues step is dominated by the exact O(N^2) cosine kNN graph (torch matmul + topk). "
        "For millions of frames pass a knn_graph from an ANN index to find_label_issues."
    )


def encode_digits(path: Path, images: np.ndarray, fps: int = 10) -> None:
    """H.264 mp4 (yuv420p, libx264 defaults), one frame per image (uint8 (N, S, S, 3) RGB)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = images.shape[2], images.shape[1], "yuv420p"
        for im in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(im, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)


def video_path_flags(images, noisy, *, n_videos: int, epochs: int, seed: int) -> np.ndarray:
    """is_label_issue per image from Lensline's graph run on H.264 videos of ``images``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        os.environ.update(LENSLINE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
        os.environ.pop("LENSLINE_STORAGE", None)
        import dagster as dg

        from lake.resources import PreprocessResource
        from orchestration.definitions import defs
        from orchestration.runner import run_pending

        parts = np.array_split(np.arange(len(images)), n_videos)
        rows = []
        for v, idx in enumerate(parts):
            encode_digits(home / "landing/videos/cam1" / f"digits_{v}.mp4", images[idx])
            rows += [(f"digits_{v}.mp4", j, f"d{noisy[i]}", "a1") for j, i in enumerate(idx)]
        (home / "landing/labels").mkdir(parents=True)
        pl.DataFrame(
            rows, schema=["video", "frame_index", "label", "annotator"], orient="row"
        ).write_csv(home / "landing/labels/digits.csv")
        full = dg.Definitions(  # the same definitions, preprocess resource overridden
            assets=defs.assets,
            asset_checks=defs.asset_checks,
            schedules=defs.schedules,
            sensors=defs.sensors,
            jobs=defs.jobs,
            executor=defs.executor,
            loggers=defs.loggers,
            resources={**(defs.resources or {}), "preprocess": PreprocessResource(crop="full")},
        )
        config = {"ops": {"frame_embeddings": {"config": {"epochs": epochs, "seed": seed}}}}
        with dg.DagsterInstance.get() as instance:
            summary = run_pending(full, instance, select="*label_issues", run_config=config)
        print(f"  graph run ({n_videos} video(s)): {summary}")
        from lake.storage import LensStorage

        issues = LensStorage().read_table("label_issues")
        folds = LensStorage().read_table("frame_embeddings")["fold"].n_unique()
        print(f"  frame_embeddings: {folds} folds")
    video = {f"cam1__digits_{v}": idx for v, idx in enumerate(parts)}
    flags = np.zeros(len(images), bool)
    for vid, frame, flag in issues.select("video_id", "frame_index", "is_label_issue").iter_rows():
        flags[video[vid][frame]] = bool(flag)
    return flags


def video_table(
    n_digits: int, n_videos: list[int], epochs: int, seeds: list[int], side: int = 64
) -> None:
    """Lensline through H.264 videos and the graph vs a plain 5-fold CNN + cleanlab, raw arrays.

    Each seed draws its own 20 % flips and is the training seed of both methods.
    """
    from cleanlab.filter import find_label_issues as cleanlab_issues
    from sklearn.datasets import load_digits

    from training.crossval import cross_val_predict
    from training.train import TrainConfig

    x, y = load_digits(return_X_y=True)
    x, y = x[:n_digits] / 16.0, y[:n_digits]
    images = digit_images(x, side=side)
    names = ["baseline: 5-fold CNN on raw arrays + cleanlab"]
    names += [f"Lensline graph, H.264, {n} video(s)" for n in n_videos]
    rows: dict[str, list[tuple[float, ...]]] = {name: [] for name in names}
    for seed in seeds:
        noisy = symmetric_noise(y, 0.2, np.random.default_rng(seed))
        flipped = noisy != y
        print(f"\nseed {seed}: {len(y)} digits, {flipped.sum()} flipped (20 %), single annotator")
        t = time.perf_counter()
        probs, _, _ = cross_val_predict(
            images,
            noisy,
            classes=[f"d{k}" for k in range(K)],
            groups=np.arange(len(y)),
            config=TrainConfig(image_size=side, epochs=epochs, seed=seed),
            n_folds=5,
            tta=False,  # the plain baseline: one softmax per held-out image
        )
        found = cleanlab_issues(noisy, probs, n_jobs=1)  # no fork pool next to torch
        rows[names[0]].append((*prf(found, flipped), time.perf_counter() - t))
        for name, n in zip(names[1:], n_videos, strict=True):
            t = time.perf_counter()
            flags = video_path_flags(images, noisy, n_videos=n, epochs=epochs, seed=seed)
            rows[name].append((*prf(flags, flipped), time.perf_counter() - t))
        for name in names:
            p, r, f, s = rows[name][-1]
            print(f"  {name:<52}{p:>6.3f}{r:>6.3f}{f:>6.3f}{s:>7.0f}", flush=True)
    print(f"\nmean over seeds {seeds}")
    print(f"{'method':<52}{'P':>6}{'R':>6}{'F1':>6}{'s':>7}   F1 per seed")
    for name in names:
        p, r, f, s = np.mean(rows[name], axis=0)
        per = " ".join(f"{row[2]:.3f}" for row in rows[name])
        print(f"{name:<52}{p:>6.3f}{r:>6.3f}{f:>6.3f}{s:>7.0f}   {per}")
    base = np.array([row[2] for row in rows[names[0]]])
    for name in names[1:]:  # paired by seed: same flips, same training seed
        diff = np.array([row[2] for row in rows[name]]) - base
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        print(f"F1 - baseline, {name}: {diff.mean():+.4f} +/- {se:.4f} (SE over seeds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        default="0,1,2",
        help="comma-separated noise seeds (part 1, or part 3 with --video)",
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="comma-separated N for part 2 ('' = skip)"
    )
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per fold model (part 1)")
    parser.add_argument("--video", action="store_true", help="part 3 only: the video path")
    parser.add_argument("--video-digits", type=int, default=1797)
    parser.add_argument("--videos", type=int, default=4, help="part 3: the several-videos case")
    parser.add_argument("--video-side", type=int, default=64, help="part 3: frame side, pixels")
    args = parser.parse_args()
    if args.video:
        seeds = [int(s) for s in args.seeds.split(",") if s]
        video_table(args.video_digits, [1, args.videos], args.epochs, seeds, args.video_side)
        return
    EPOCHS_USED[0] = args.epochs
    seeds = [int(s) for s in args.seeds.split(",") if s]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(
        f"$ python benchmarks/label_issues.py --seeds {args.seeds} --sizes {args.sizes} "
        f"--epochs {args.epochs}\n"
    )
    start = time.perf_counter()
    if seeds:
        digits_table(seeds)
    if sizes:
        scaling_table(sizes)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

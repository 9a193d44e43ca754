"""Score a finished ``lensline demo`` home against the demo's ground truth.

Reproduce (repo root, ~2 min on 2 cores)::

    LENSLINE_HOME=/tmp/demo/home lensline demo
    python benchmarks/demo_quality.py --home /tmp/demo/home

The demo's synthetic videos come with ``demo/truth.csv`` (the true label of every frame);
the pipeline never reads it. This script reads the lake tables the pipeline wrote and
reports, against that truth:

1. Annotator quality: the ``annotator_quality`` table beside each annotator's true error rate.
2. Label-error detection: an annotator label is *flagged* when it disagrees with the consensus
   label or its frame is a cleanlab label issue; it is an injected error when it differs from
   the truth. Precision / recall / F1 of the flags, and the true error rate of every label
   source (each annotator, a per-frame random annotator, consensus, the curated dataset).
3. Curated vs raw labels: the same ``train_model`` code and config, trained in this run on the
   dataset's train split with (a) the curated labels, (b) sloppy_sam's labels, (c) a seeded
   per-frame random annotator's labels; epoch selection on the val split *with the same kind of
   labels* (a raw-label workflow has no clean labels to select with); all three scored on the
   test split against the TRUE labels. Then the registered champion: its recorded metrics and
   its checkpoint re-scored against the true labels of its test split.

Frames the curation dropped are absent from the ``dataset`` table, so the raw models see the
same frames as the curated one (in this respect the comparison favours the raw models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small BLAS calls thrash on shared cores
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from data_quality.contract import KEYS  # noqa: E402

IMAGE_SIZE = 64
SLOPPY = "sloppy_sam"


# ----------------------------------------------------------------------------- printing


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Aligned plain-text table; floats as 3 decimals, numbers right-aligned."""
    columns = columns or list(rows[0])

    def fmt(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.3f}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    right = [all(_numeric(r.get(c)) for r in rows) for c in columns]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "  " + "  ".join(parts).rstrip()

    out = [line(columns), "  " + "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _numeric(v: object) -> bool:
    if v is None or isinstance(v, int | float):
        return True
    try:
        float(str(v))
    except ValueError:
        return False
    return True


def section(title: str) -> None:
    print(f"\n{title}\n{'=' * len(title)}")


def prf(flagged: np.ndarray, error: np.ndarray) -> dict:
    tp = int((flagged & error).sum())
    n_flag, n_err = int(flagged.sum()), int(error.sum())
    p = tp / n_flag if n_flag else 0.0
    r = tp / n_err if n_err else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"flagged": n_flag, "true_pos": tp, "precision": p, "recall": r, "f1": f1}


# ----------------------------------------------------------------------------- data


def load(home: Path) -> dict[str, pl.DataFrame]:
    lake = home / "lake"
    names = ["labels", "label_consensus", "annotator_quality", "label_issues", "dataset"]
    names += ["frames", "models"]
    missing = [n for n in names if not (lake / n / "_delta_log").is_dir()]
    truth_path = home / "demo" / "truth.csv"
    if missing or not truth_path.is_file():
        sys.exit(f"{home} is not a finished demo home (missing {missing or [str(truth_path)]})")
    tables = {n: pl.read_delta(str(lake / n)) for n in names}
    tables["truth"] = (
        pl.read_csv(truth_path, schema_overrides={"label": pl.Utf8})
        .select(*KEYS, pl.col("label").alias("truth"), "occluded")
        .unique(KEYS)
    )
    return tables


def error_rate(df: pl.DataFrame, col: str) -> dict:
    n = df.filter(pl.col(col).is_not_null()).height
    errors = df.filter(pl.col(col).is_not_null() & (pl.col(col) != pl.col("truth"))).height
    return {"n": n, "errors": errors, "error_rate": errors / n if n else float("nan")}


# ----------------------------------------------------------------------------- sections


def annotator_section(t: dict[str, pl.DataFrame], labels: pl.DataFrame) -> None:
    section("1. Annotator quality (cleanlab) vs true error rate")
    true = labels.group_by("annotator").agg(
        pl.len().alias("n_true"),
        (pl.col("label") != pl.col("truth")).sum().alias("true_errors"),
        (pl.col("label") != pl.col("truth")).mean().alias("true_error_rate"),
    )
    q = t["annotator_quality"].join(true, on="annotator", how="left").sort("quality")
    rows = q.to_dicts()
    print(
        table(
            rows,
            ["annotator", "quality", "agreement_with_consensus", "num_labels", "worst_class"]
            + ["true_errors", "true_error_rate"],
        )
    )
    lowest = rows[0]["annotator"]
    worst_true = max(rows, key=lambda r: r["true_error_rate"])["annotator"]
    order_q = [r["annotator"] for r in rows]
    order_t = [r["annotator"] for r in sorted(rows, key=lambda r: -r["true_error_rate"])]
    ok = lowest == SLOPPY
    print(
        f"\n  lowest quality score: {lowest}; highest true error rate: {worst_true}; "
        f"ranking by score {'matches' if order_q == order_t else 'DIFFERS from'} "
        f"ranking by true error  [{'PASS' if ok else 'FAIL'}: {SLOPPY} scored lowest]"
    )


def detection_section(t: dict[str, pl.DataFrame], labels: pl.DataFrame, seed: int) -> pl.DataFrame:
    section("2. Detection of injected label errors (per annotator label)")
    cons = t["label_consensus"].select(*KEYS, "consensus_label")
    issues = t["label_issues"].select(*KEYS, "is_label_issue")
    df = labels.join(cons, on=KEYS, how="left").join(issues, on=KEYS, how="left")
    error = (df["label"] != df["truth"]).to_numpy()
    disagree = (df["label"] != df["consensus_label"]).fill_null(False).to_numpy()
    issue = df["is_label_issue"].fill_null(False).to_numpy()
    rules = [
        ("disagrees with consensus", disagree),
        ("frame is cleanlab label issue", issue),
        ("either (= flagged)", disagree | issue),
    ]
    print(f"  {len(df)} annotator labels, {int(error.sum())} injected errors (label != truth)\n")
    print(table([{"flag rule": name, **prf(f, error)} for name, f in rules]))

    flagged = disagree | issue
    per = []
    for name in sorted(df["annotator"].unique().to_list()):
        m = (df["annotator"] == name).to_numpy()
        per.append({"annotator": name, "errors": int(error[m].sum()), **prf(flagged[m], error[m])})
    print("\n  flagged (either rule), per annotator:")
    print(table(per))

    # label sources, one label per labelled frame
    frames = t["dataset"].select(*KEYS, "label", "split").rename({"label": "curated"})
    wide = labels.pivot(on="annotator", index=KEYS, values="label")
    annotators = sorted(c for c in wide.columns if c not in KEYS)
    rng = np.random.default_rng(seed)
    stacked = wide.select(annotators).to_numpy()
    pick = []
    for row in stacked:
        present = [v for v in row if v is not None]
        pick.append(present[int(rng.integers(len(present)))] if present else None)
    wide = wide.with_columns(pl.Series("random_annotator", pick, dtype=pl.Utf8))
    src = (
        t["label_consensus"]
        .select(*KEYS, "consensus_label")
        .join(wide, on=KEYS, how="left")
        .join(frames, on=KEYS, how="left")
        .join(t["truth"], on=KEYS, how="left")
    )
    rows = [{"label source": a, **error_rate(src, a)} for a in annotators]
    rows.append({"label source": f"random annotator (seed {seed})", **error_rate(src, "random_annotator")})  # fmt: skip
    rows.append({"label source": "consensus_label", **error_rate(src, "consensus_label")})
    rows.append({"label source": "curated dataset (all)", **error_rate(src, "curated")})
    for split in ("train", "val", "test"):
        sub = src.filter(pl.col("split") == split)
        rows.append({"label source": f"curated dataset ({split})", **error_rate(sub, "curated")})
    # cleanlab's frame-level view: does its ranking find the consensus errors?
    li = t["label_issues"].select(*KEYS, "suggested_label", "label_quality", "is_label_issue")
    fr = src.join(li, on=KEYS, how="left")
    rows.append({"label source": "cleanlab suggested_label", **error_rate(fr, "suggested_label")})
    print("\n  label error rate vs truth, per frame:")
    print(table(rows))
    wrong = (fr["consensus_label"] != fr["truth"]).to_numpy()
    flag = fr["is_label_issue"].fill_null(False).to_numpy()
    k = int(wrong.sum())
    lowest = np.argsort(fr["label_quality"].fill_null(1.0).to_numpy(), kind="stable")[:k]
    print(
        f"\n  frame level: {k} consensus-label errors; cleanlab flags {int(flag.sum())} frames "
        f"({int((flag & wrong).sum())} of them errors); errors among the {k} lowest "
        f"label_quality frames: {int(wrong[lowest].sum())}"
    )
    changed = (
        t["dataset"]
        .filter(pl.col("label") != pl.col("original_label"))
        .join(t["truth"], on=KEYS, how="left")
        .sort(KEYS)
    )
    actions = dict(t["dataset"].group_by("action").len().sort("action").iter_rows())
    print(f"\n  curated dataset actions: {actions}; labels changed by curation: {changed.height}")
    for r in changed.iter_rows(named=True):
        verdict = (
            "fixed"
            if r["label"] == r["truth"]
            else "broke"
            if r["original_label"] == r["truth"]
            else "still wrong"
        )
        print(
            f"    {r['video_id']}/{r['frame_index']}: {r['original_label']} -> {r['label']} "
            f"(truth {r['truth']}: {verdict})"
        )
    return src


def model_section(t: dict[str, pl.DataFrame], src: pl.DataFrame, seed: int, home: Path) -> None:
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.evaluate import evaluate, predict_proba
    from training.preprocess import PreprocessSpec
    from training.train import TrainConfig, train_model

    section("3. Curated vs raw labels: same code, same config, scored on TRUE test labels")
    uris = t["frames"].select(*KEYS, "uri")
    data = src.filter(pl.col("split").is_not_null()).join(uris, on=KEYS, how="left").sort(KEYS)
    if data["uri"].null_count():
        sys.exit("some dataset frames have no row in the frames table")
    columns = ["curated", SLOPPY, "random_annotator", "truth"]
    classes = sorted(set().union(*(data[c].drop_nulls().to_list() for c in columns)))
    index = {c: i for i, c in enumerate(classes)}
    t0 = time.perf_counter()
    images = PreprocessSpec(image_size=IMAGE_SIZE).images(data["uri"].to_list())
    print(f"  classes {classes}; {len(data)} item crops loaded in {time.perf_counter() - t0:.1f} s")

    split = data["split"].to_numpy()
    test = split == "test"
    y_true = np.array([index[v] for v in data["truth"]])
    config = TrainConfig(epochs=30, image_size=IMAGE_SIZE, batch_size=32, seed=0)
    print(f"  TrainConfig(epochs={config.epochs}, image_size={config.image_size}, "
          f"batch_size={config.batch_size}, seed={config.seed}), identical for every run\n")  # fmt: skip

    runs = [
        ("curated (dataset.label)", "curated"),
        (f"raw: {SLOPPY}", SLOPPY),
        (f"raw: random annotator (seed {seed})", "random_annotator"),
    ]
    rows = []
    for name, col in runs:
        has = data[col].is_not_null().to_numpy()
        y = np.array([index.get(v, -1) if v is not None else -1 for v in data[col]])
        tr, va = (split == "train") & has, (split == "val") & has
        res = train_model(
            images[tr], y[tr], classes=classes, config=config,
            val_images=images[va], val_labels=y[va],
        )  # fmt: skip
        m = evaluate(predict_proba(res.model, images[test]), y_true[test], classes=classes)
        rows.append({
            "training labels": name,
            "train_label_err": float((y[tr] != y_true[tr]).mean()),
            "best_epoch": res.best_epoch,
            "train_s": f"{res.wall_s:.1f}",
            "test_acc": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "false_reject": m["false_reject_rate"],
            "escape": m["escape_rate"],
        })  # fmt: skip
    base = rows[0]["test_acc"]
    for r in rows:
        r["acc_vs_curated"] = f"{r['test_acc'] - base:+.3f}"
    print(table(rows))
    print(
        f"\n  test split: {int(test.sum())} frames, true labels; false_reject = FPR on good items"
    )
    verdicts = [
        f"curated {'beats' if base > r['test_acc'] else 'does NOT beat'} {r['training labels']} "
        f"({base:.3f} vs {r['test_acc']:.3f})"
        for r in rows[1:]
    ]
    print("  " + "\n  ".join(verdicts))

    # --- registered champion
    models = t["models"]
    champ = models.filter(pl.col("alias") == "champion")
    if champ.is_empty():
        print("\n  no champion registered")
        return
    c = champ.sort("created_at").row(-1, named=True)
    metrics = json.loads(c["metrics"] or "{}")
    model, meta = load_checkpoint(c["checkpoint_uri"], expected_sha256=c["checkpoint_sha256"])
    c_classes = json.loads(meta["classes"])
    ds_path = str(home / "lake" / "dataset")
    try:
        ds = pl.read_delta(ds_path, version=int(c["dataset_version"]))
        version = f"dataset version {c['dataset_version']}"
    except Exception:  # noqa: BLE001 - vacuumed or unversioned: fall back to the current one
        ds, version = t["dataset"], "current dataset version (recorded one unreadable)"
    ct = (
        ds.filter(pl.col("split") == "test")
        .select(*KEYS, "label")
        .join(t["truth"], on=KEYS, how="left")
        .join(uris, on=KEYS, how="left")
        .sort(KEYS)
    )
    spec = checkpoint_spec(meta)
    imgs = spec.images(ct["uri"].to_list())
    probs = predict_proba(model, imgs)
    ci = {n: i for i, n in enumerate(c_classes)}
    vs_ds = evaluate(probs, np.array([ci[v] for v in ct["label"]]), classes=c_classes)
    vs_true = evaluate(probs, np.array([ci[v] for v in ct["truth"]]), classes=c_classes)
    print(f"\n  champion {c['model_version']} (checkpoint sha256 verified; {version}, "
          f"image_size {spec.image_size}, {ct.height} test frames)")  # fmt: skip
    print(
        table([
            {"champion scored on": "registered metrics (models table)",
             "n": metrics.get("n"), "accuracy": metrics.get("accuracy"),
             "macro_f1": metrics.get("macro_f1"),
             "false_reject": metrics.get("false_reject_rate"),
             "escape": metrics.get("escape_rate")},
            {"champion scored on": "re-evaluated vs dataset test labels",
             "n": vs_ds["n"], "accuracy": vs_ds["accuracy"], "macro_f1": vs_ds["macro_f1"],
             "false_reject": vs_ds["false_reject_rate"], "escape": vs_ds["escape_rate"]},
            {"champion scored on": "re-evaluated vs TRUE test labels",
             "n": vs_true["n"], "accuracy": vs_true["accuracy"], "macro_f1": vs_true["macro_f1"],
             "false_reject": vs_true["false_reject_rate"], "escape": vs_true["escape_rate"]},
        ])
    )  # fmt: skip


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--home",
        default=os.environ.get("LENSLINE_HOME", ".lensline"),
        help="demo home (default: $LENSLINE_HOME or ./.lensline)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-annotator labels")
    args = parser.parse_args(argv)
    home = Path(args.home).resolve()

    import torch

    torch.set_num_threads(1)  # inference threads; training pins its own (TrainConfig.num_threads)
    t_start = time.perf_counter()
    print(f"Reproduce: python benchmarks/demo_quality.py --home {home} --seed {args.seed}")
    print(f"(home made by: LENSLINE_HOME={home} lensline demo)")
    t = load(home)
    labels = t["labels"].select(*KEYS, "label", "annotator").join(t["truth"], on=KEYS, how="left")
    if labels["truth"].null_count():
        sys.exit("labelled frames missing from truth.csv")
    n_frames = labels.select(KEYS).n_unique()
    print(f"{labels.height} annotator labels on {n_frames} frames; truth rows {t['truth'].height}")

    annotator_section(t, labels)
    src = detection_section(t, labels, args.seed)
    model_section(t, src, args.seed, home)
    print(f"\ntotal runtime {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

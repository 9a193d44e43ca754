"""trained_model and model_evaluation: train on the curated dataset, gate promotion on the test split."""

import hashlib
import json
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from assets.previews import png_md
from assets.provenance import code_version, unchanged
from assets.tables import md_table
from lake.frames import KEYS, line_conditions, load_frame_images
from lake.resources import PreprocessResource
from lake.storage import LensStorage

TRAIN_REVISION = 2  # 2: the preprocessing contract recorded in the checkpoint


CONDITION_BALANCE = 1.0


class TrainingConfig(dg.Config):
    """Hyper-parameters of one training run (defaults suit the demo on 2 CPU cores)."""

    epochs: int = Field(default=30, description="Passes over the training split.")
    lr: float = Field(default=5e-3, description="Peak AdamW learning rate (warmup, then cosine).")
    batch_size: int = Field(default=32)
    width: int = Field(default=16, description="Channel width of the edge CNN.")
    augment: bool = Field(
        default=True, description="Random shifts, blur and flips of the training crops."
    )
    condition_balance: float = Field(
        default=CONDITION_BALANCE,
        description="Sampling of line conditions (each camera, and its drift-labelled videos "
        "apart) per epoch: 0 natural shares, 1 equal shares, so a newly labelled condition is "
        "learned from its few dozen frames.",
    )
    seed: int = Field(default=0, description="Same seed, same data -> identical weights.")
    sweep_trials: int = Field(
        default=0, description="0: one run. N: random search of N trials; the best (val acc) wins."
    )
    sweep_lr: list[float] = Field(
        default=[2e-3, 5e-3, 1e-2], description="Learning rates the sweep draws from."
    )
    sweep_width: list[int] = Field(
        default=[12, 16, 24], description="Model widths the sweep draws from."
    )
    init_checkpoint: str | None = Field(
        default=None, description="Local or s3:// safetensors to fine-tune from."
    )


class PromotionConfig(dg.Config):
    """When a challenger replaces the champion."""

    margin: float = Field(
        default=0.0, description="Slice-balanced accuracy gain over the champion required."
    )
    recall_tolerance: float = Field(
        default=0.02,
        description="A slice's accuracy or a class's recall may drop this much; a larger drop "
        "blocks promotion when it is significant (paired McNemar, Holm-corrected at alpha).",
    )
    alpha: float = Field(
        default=0.05, description="Significance level of the regression tests (family-wise)."
    )
    ensemble_top_k: int = Field(default=3, description="Also score the mean of the top-k models.")


def split_images(
    storage: LensStorage, split: str, classes: list[str], spec, *, version: int | None = None
):
    """(images, label indices, keys) of one split of the curated dataset (at ``version``), made
    with the :class:`training.preprocess.PreprocessSpec` ``spec``."""
    dataset = (
        storage.read_table("dataset", version=version).filter(pl.col("split") == split).sort(KEYS)
    )
    if dataset.is_empty():
        raise dg.Failure(
            f"the curated dataset has no {split!r} frames: splits are by video, so land more "
            "videos (at least 3) or change the split fractions"
        )
    frames = storage.read_table("frames").select(*KEYS, "camera_id", "uri", "sha256")
    rows = dataset.join(frames, on=KEYS, maintain_order="left")
    labels = rows["label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
    return load_frame_images(storage, rows, spec), labels, rows.select(KEYS)


CODE_VERSION = code_version("train", TRAIN_REVISION, TrainingConfig().model_dump())


@dg.asset(
    deps=["curated_dataset"],
    group_name="training",
    kinds={"pytorch", "safetensors"},
    code_version=CODE_VERSION,
    io_manager_key="lake_io",
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    storage: LensStorage,
    preprocess: PreprocessResource,
):
    """A compact depthwise-separable CNN trained on the curated train split (weights as safetensors)."""
    from training.checkpoint import save_checkpoint
    from training.sweep import random_search, run_trials
    from training.train import TrainConfig, plot_history

    # pin the versions first: the model records exactly the data it was trained on
    dataset_version, label_version = (
        storage.table_version("dataset"),
        storage.table_version("labels"),
    )
    spec = preprocess.spec()
    if (again := unchanged(context)) is not None:  # same data and code: the same weights
        return dg.Output(
            _reference(again.metadata), metadata=again.metadata, data_version=again.data_version
        )
    dataset = storage.read_table("dataset", version=dataset_version)
    classes = sorted(dataset["label"].unique().to_list())
    x_tr, y_tr, keys_tr = split_images(storage, "train", classes, spec, version=dataset_version)
    x_va, y_va, _ = split_images(storage, "val", classes, spec, version=dataset_version)
    init = None
    if config.init_checkpoint:
        init = str(storage.fetch_local([config.init_checkpoint])[0])
    cfg = TrainConfig(
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        image_size=spec.image_size,
        width=config.width,
        augment=config.augment,
        condition_balance=config.condition_balance,
        seed=config.seed,
        init_checkpoint=init,
    )
    conditions = line_conditions(storage, keys_tr)

    trials = [cfg]
    if config.sweep_trials:
        space = {"lr": config.sweep_lr, "width": config.sweep_width}
        trials = random_search(cfg, space, n=config.sweep_trials, seed=config.seed)
    result, cfg, rows = run_trials(
        trials, x_tr, y_tr, classes=classes, val_images=x_va, val_labels=y_va,
        groups=conditions, log=context.log.info,
    )  # fmt: skip
    if config.sweep_trials:
        storage.write_table(
            pl.DataFrame(rows).select(pl.lit(context.run_id).alias("run_id"), pl.all()),
            "sweep_trials",
            mode="append",
        )
    versions = {
        "dataset_version": str(dataset_version),
        "label_version": str(label_version),
        "code_version": CODE_VERSION,
    }
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model.safetensors"
        sha = save_checkpoint(
            result.model, local, metadata=result.checkpoint_metadata(**versions), preprocess=spec
        )
        uri = storage.uri("artifacts", "models", f"m-{sha[:12]}", "model.safetensors")
        storage.write_bytes(uri, local.read_bytes())
    metadata = {
        "model_version": f"m-{sha[:12]}",
        "checkpoint_uri": uri,
        "checkpoint_sha256": sha,
        **versions,
    }
    return dg.Output(
        _reference(metadata),
        metadata={
            **metadata,
            "config": dg.MetadataValue.json(json.loads(cfg.to_json())),
            "preprocess": dg.MetadataValue.json(spec.to_dict()),
            "train_images": len(x_tr),
            "train_conditions": dg.MetadataValue.json(
                {
                    str(k): int(v)
                    for k, v in zip(*np.unique(conditions, return_counts=True), strict=True)
                }
            ),
            "val_images": len(x_va),
            "best_epoch": result.best_epoch,
            "trials": dg.MetadataValue.md(md_table(pl.DataFrame(rows))),
            "wall_s": round(result.wall_s, 1),
            "images_per_s": round(result.images_per_s, 1),
            "curves": dg.MetadataValue.md(
                png_md(plot_history(result.history), alt="training curves")
            ),
        },
        data_version=dg.DataVersion(f"m-{sha[:12]}"),  # same data + config + seed: same weights
    )


def _reference(metadata) -> dict:
    """What model_evaluation receives: the checkpoint and the versions it was made from."""
    keys = (
        "model_version",
        "checkpoint_uri",
        "checkpoint_sha256",
        "dataset_version",
        "label_version",
        "code_version",
    )
    return {k: getattr(metadata[k], "value", metadata[k]) for k in keys}


@dg.asset(
    ins={"trained_model": dg.AssetIn(input_manager_key="lake_io")},
    group_name="training",
    kinds={"pytorch"},
    code_version=code_version("evaluate", 1, PromotionConfig().model_dump()),
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate",
            asset="model_evaluation",
            blocking=True,
            description="The challenger beats the champion on the same test set.",
        )
    ],
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    storage: LensStorage,
    trained_model: dict,
):
    """Test-split metrics of the new model, its predictions, and champion/challenger promotion."""
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.evaluate import (
        confusion_png,
        ensemble_proba,
        evaluate,
        predict_proba,
        reliability_png,
        slices_png,
    )
    from training.promotion import decide_promotion_paired
    from training.registry import PromotionDecision

    meta = trained_model  # the checkpoint reference trained_model handed down
    uri, sha = meta["checkpoint_uri"], meta["checkpoint_sha256"]
    model, ckpt = load_checkpoint(storage.fetch_local([uri])[0], expected_sha256=sha)
    classes = json.loads(ckpt["classes"])
    spec = checkpoint_spec(ckpt)  # the model's own preprocessing contract
    dataset_version = int(meta["dataset_version"])  # the test split of its own dataset
    x_te, y_te, keys = split_images(storage, "test", classes, spec, version=dataset_version)
    probs = predict_proba(model, x_te)
    metrics = evaluate(probs, y_te, classes=classes)
    metrics["test_set"] = hashlib.sha256(keys.write_csv().encode()).hexdigest()[:16]

    registry = storage.registry()
    champion = registry.champion()
    version = registry.register_challenger(
        checkpoint_uri=uri,
        checkpoint_sha256=sha,
        metrics=metrics,
        config=ckpt["config"],
        dataset_version=dataset_version,
        label_version=int(meta["label_version"]),
        code_version=meta["code_version"],
        parent_version=champion.model_version if champion else None,
    )
    parts = None
    if champion is not None and champion.model_version == version:
        decision = PromotionDecision(True, ["this model is already the champion"])
    else:
        # the gate compares both models on *this* test split, frame by frame, whatever the
        # champion was scored on before
        champ_pred = (
            None
            if champion is None
            else _predict_on_test(storage, champion, classes, spec, x_te, dataset_version)
        )
        decision = decide_promotion_paired(
            y_te,
            champ_pred,
            probs.argmax(1),
            slices=line_conditions(storage, keys),
            classes=classes,
            margin=config.margin,
            recall_tolerance=config.recall_tolerance,
            alpha=config.alpha,
        )
        parts = decision.slices
        if decision.promote:
            registry.promote(version, reason="; ".join(decision.reasons))
        else:
            registry.archive(version, reason="; ".join(decision.reasons))
    ensemble = _ensemble_accuracy(
        registry,
        storage,
        x_te,
        y_te,
        classes,
        spec,
        config.ensemble_top_k,
        ensemble_proba,
        evaluate,
    )
    if decision.promote:  # the predictions table always holds the champion's predictions
        storage.write_table(_predictions(storage, model, classes, spec, version), "predictions")
    per_class = pl.DataFrame([{"class": c, **v} for c, v in metrics["per_class"].items()])
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "accuracy": metrics["accuracy"],
            "test_images": metrics["n"],
            "false_reject_rate_good": metrics["false_reject_rate"],
            "escape_rate": metrics["escape_rate"],
            "ece": metrics["ece"],
            "promoted": decision.promote,
            "decision": "\n".join(decision.reasons),
            "ensemble": dg.MetadataValue.json(ensemble),
            "per_class": dg.MetadataValue.md(md_table(per_class)),
            "confusion": dg.MetadataValue.md(
                png_md(confusion_png(metrics["confusion"], classes=classes))
            ),
            "calibration": dg.MetadataValue.md(png_md(reliability_png(probs, y_te))),
            **(
                {
                    "vs_champion": dg.MetadataValue.md(
                        md_table(pl.DataFrame([p.as_dict() for p in parts]))
                        + "\n\n"
                        + png_md(slices_png(parts))
                    )
                }
                if parts
                else {}
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="promotion_gate",
                passed=decision.promote,
                metadata={"reasons": "\n".join(decision.reasons)},
            )
        ],
        # downstream (exports, drift reference) follows the champion, not every evaluation
        data_version=dg.DataVersion(
            version if decision.promote else (champion.model_version if champion else "none")
        ),
    )


def _predict_on_test(storage, record, classes, spec, x_te, dataset_version: int):
    """Class indices (in ``classes`` order) a registered model predicts for the test split of
    ``dataset_version``; ``x_te`` is reused when the model's preprocessing is ``spec``."""
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.evaluate import in_class_order, predict_proba

    model, meta = load_checkpoint(
        storage.fetch_local([record.checkpoint_uri])[0], expected_sha256=record.checkpoint_sha256
    )
    own = checkpoint_spec(meta)
    x = (
        x_te
        if own == spec
        else split_images(storage, "test", classes, own, version=dataset_version)[0]
    )
    probs = predict_proba(model, x)
    return in_class_order(probs, json.loads(meta["classes"]), classes).argmax(1)


def _predictions(
    storage: LensStorage, model, classes: list[str], spec, version: str
) -> pl.DataFrame:
    """The model's prediction for every frame of the curated dataset (all splits), for FiftyOne."""
    from training.evaluate import predict_proba

    rows = storage.read_table("dataset").select(*KEYS, "split").sort(KEYS)
    rows = rows.join(
        storage.read_table("frames").select(*KEYS, "camera_id", "uri"),
        on=KEYS,
        maintain_order="left",
    )
    probs = predict_proba(model, load_frame_images(storage, rows, spec))
    return rows.select(*KEYS, "split").with_columns(
        model_version=pl.lit(version),
        prediction=pl.Series([classes[i] for i in probs.argmax(1)], dtype=pl.String),
        confidence=pl.Series(probs.max(1), dtype=pl.Float64),
    )


def _ensemble_accuracy(registry, storage, x, y, classes, spec, k, ensemble_proba, evaluate) -> dict:
    """Accuracy of the mean of the top-k registered models' probabilities on the same test images."""
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.evaluate import predict_proba

    rows = registry.list().with_columns(
        acc=pl.col("metrics").str.json_path_match("$.accuracy").cast(pl.Float64)
    )
    top = rows.sort("acc", descending=True, nulls_last=True).head(k)
    if top.height < 2:
        return {
            "models": top["model_version"].to_list(),
            "accuracy": None,
            "note": "needs two or more models",
        }
    probs, used = [], []
    for r in top.iter_rows(named=True):
        m, meta = load_checkpoint(
            storage.fetch_local([r["checkpoint_uri"]])[0], expected_sha256=r["checkpoint_sha256"]
        )
        if json.loads(meta["classes"]) != classes or checkpoint_spec(meta) != spec:
            continue
        probs.append(predict_proba(m, x))
        used.append(r["model_version"])
    if len(probs) < 2:
        return {
            "models": top["model_version"].to_list(),
            "accuracy": None,
            "note": "models not comparable",
        }
    return {
        "models": used,
        "accuracy": evaluate(ensemble_proba(probs), y, classes=classes)["accuracy"],
    }

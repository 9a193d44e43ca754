"""trained_model and model_evaluation: train on the curated dataset, gate promotion on the test split."""

import contextlib
import json
import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from assets.line_config import KEYS as LINE_KEYS
from assets.line_config import with_line_crops
from assets.previews import png_md
from assets.provenance import code_version, last_metadata, unchanged
from assets.tables import md_table
from lake import pools
from lake.frames import KEYS, line_conditions, load_frame_images
from lake.resources import PreprocessResource
from lake.storage import LensStorage
from training.policy import (
    ENSEMBLE_BELOW,
    ENSEMBLE_MEMBERS,
    LIGHTING,
    LIGHTING_FROM,
    lighting_for,
    members_for,
)

TRAIN_REVISION = 3  # 2: the preprocessing contract recorded in the checkpoint; 3: warm starts


CONDITION_BALANCE = 1.0
AVERAGE: Literal["none", "ema", "swa"] = "ema"  # benchmarks/seed_stability.py, docs/training.md


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
    lighting: float | None = Field(
        default=None,
        ge=0.0,
        le=0.9,
        description="Brightness and contrast jitter of the training crops: gain and contrast "
        "each drawn from [1 - l, 1 + l], so a line's light changing (a dimmer lamp, a dirty "
        f"lens) is not a new look to the model. None (auto): {LIGHTING} when every camera is "
        f"cropped (item or fixed) and the train split has {LIGHTING_FROM}+ frames; else 0: on "
        "whole frames with a small item, or in the few steps of a tiny split, the jitter keeps "
        "the model from learning.",
    )
    average: Literal["none", "ema", "swa"] = Field(
        default=AVERAGE,
        description="Weight averaging (torch swa_utils): ema, a moving average of the weights "
        "over the last ~2 epochs of steps; swa, the mean of the last quarter's epoch-end "
        "weights, BatchNorm recomputed; none, the best epoch's iterate. Averaging narrows the "
        "seed-to-seed spread of accuracy (docs/training.md).",
    )
    members: int = Field(
        default=0,
        ge=0,
        le=16,
        description=f"Networks in the model: 1, or N > 1 trained from different seeds whose mean "
        f"probability is the output (one checkpoint, one ONNX graph, N times the training and "
        f"edge compute). 0 (auto): {ENSEMBLE_MEMBERS} when the train split has fewer than "
        f"{ENSEMBLE_BELOW} frames, where one network's accuracy varies most from seed to seed, "
        "else 1. A warm start keeps the champion's number.",
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
    refresh: Literal["auto", "full"] = Field(
        default="auto",
        description="auto: warm-start from the champion on the new training frames and a "
        "replay of past ones when nothing else changed (training.incremental); full: train "
        "from scratch (or init_checkpoint) on the whole train split.",
    )
    full_every_days: float = Field(
        default=7.0, description="auto: a full retrain when the last one is this many days old."
    )
    warm_epochs: int = Field(default=10, description="Epochs of a warm start.")
    replay_share: float = Field(
        default=0.5, description="Share of past training frames a warm start replays (per class)."
    )
    warm_lr_scale: float = Field(
        default=0.5, description="A warm start's peak learning rate: the champion's times this."
    )


PROFILE_ENV = "LENSLINE_PROFILE"


def unprotected_default() -> Literal["block", "report"]:
    """``"block"`` on a plant (``LENSLINE_PROFILE=production``, set by the production profile's
    environment), else ``"report"``. Read when the code location loads, so the launchpad shows
    the resolved default and the gate's code version includes it."""
    return "block" if os.environ.get(PROFILE_ENV) == "production" else "report"


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
    power: float = Field(
        default=0.8,
        description="Each condition's minimum detectable drop is the drop its test frames "
        "detect with this probability (exact McNemar power at alpha / number of tests).",
    )
    unprotected: Literal["block", "report"] = Field(
        default=unprotected_default(),
        description="A condition whose minimum detectable drop exceeds recall_tolerance is "
        "unprotected: 'block' refuses promotion, 'report' names it in the decision. Default: "
        "block when LENSLINE_PROFILE=production, else report.",
    )
    ensemble_top_k: int = Field(default=3, description="Also score the mean of the top-k models.")


def split_images(
    storage: LensStorage, split: str, classes: list[str], spec, *, version: int | None = None
):
    """(images, label indices, keys) of one split of the curated dataset (at ``version``), made
    with the :class:`training.preprocess.PreprocessSpec` ``spec``."""
    rows, labels = split_rows(storage, split, classes, version=version)
    return load_frame_images(storage, rows, spec), labels, rows.select(KEYS)


def split_rows(
    storage: LensStorage, split: str, classes: list[str], *, version: int | None = None
) -> tuple[pl.DataFrame, np.ndarray]:
    """(rows with the frames' ``camera_id, uri, sha256``, label indices) of one split of the
    curated dataset (at ``version``), by key: what :func:`split_images` loads."""
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
    return rows, labels


TRAIN_KNOBS = {"epochs", "lr", "batch_size", "width", "augment", "condition_balance", "average",
               "seed"}  # fmt: skip
CODE_VERSION = code_version("train", TRAIN_REVISION, TrainingConfig().model_dump())


@dg.asset(
    pool=pools.GRAPH,
    deps=["curated_dataset", LINE_KEYS["crop"]],
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
    from training.challenger import train_challenger

    # pin the versions first: the model records exactly the data it was trained on
    dataset_version = storage.table_version("dataset")
    label_version = storage.table_version("labels")
    spec = with_line_crops(preprocess.spec(), storage)
    if (again := unchanged(context)) is not None:  # same data and code: the same weights
        return dg.Output(
            _reference(again.metadata), metadata=again.metadata, data_version=again.data_version
        )
    dataset = storage.read_table("dataset", version=dataset_version)
    classes = sorted(dataset["label"].unique().to_list())
    plan, warm, last_full_at = _plan_refresh(context, storage, config, spec, classes, dataset)
    context.log.info(f"refresh {plan.path}: {plan.reason}")
    rows, y_tr = split_rows(storage, "train", classes, version=dataset_version)
    cfg, trials, replay = _train_config(storage, config, spec, rows.height), config.sweep_trials, {}
    if warm is not None:  # warm start: every new training frame and a replay of past ones
        keep, cfg, replay = _warm_start(config, cfg, warm, rows.select(KEYS), y_tr, classes)
        rows, y_tr, trials = rows[keep], y_tr[keep], 0
    x_tr, keys_tr = load_frame_images(storage, rows, spec), rows.select(KEYS)
    x_va, y_va, _ = split_images(storage, "val", classes, spec, version=dataset_version)
    run = train_challenger(
        x_tr, y_tr, x_va, y_va, classes=classes, groups=line_conditions(storage, keys_tr),
        config=cfg, sweep_trials=trials,
        sweep_space={"lr": config.sweep_lr, "width": config.sweep_width}, log=context.log.info,
    )  # fmt: skip
    if trials:  # a sweep ran (never on a warm start)
        rows = pl.DataFrame(run.trials).select(pl.lit(context.run_id).alias("run_id"), pl.all())
        storage.write_table(rows, "sweep_trials", mode="append")
    versions = {"dataset_version": str(dataset_version), "label_version": str(label_version),
                "code_version": CODE_VERSION}  # fmt: skip
    metadata = _store_checkpoint(storage, run, versions=versions, spec=spec)
    summary = {k: dg.MetadataValue.json(v) if isinstance(v, dict) else v
               for k, v in run.summary().items()}  # fmt: skip
    return dg.Output(
        _reference(metadata),
        metadata={
            **metadata,
            **summary,
            **plan.metadata(),
            **replay,
            "last_full_at": last_full_at,
            "preprocess": dg.MetadataValue.json(spec.to_dict()),
            "trials": dg.MetadataValue.md(md_table(pl.DataFrame(run.trials))),
            "curves": dg.MetadataValue.md(png_md(run.curves_png(), alt="training curves")),
        },
        # same data + config + seed: same weights
        data_version=dg.DataVersion(metadata["model_version"]),
    )


def _train_config(storage: LensStorage, config: TrainingConfig, spec, n_train: int):
    """The :class:`training.train.TrainConfig` of a run: the launchpad's knobs, the image size
    of the preprocessing contract, the number of networks (``members``, auto resolved against
    ``n_train`` frames of the train split), the lighting jitter (auto: on when every camera is
    cropped and the split is not tiny) and the checkpoint to fine-tune from fetched locally."""
    from training.train import TrainConfig

    init = str(storage.fetch_local([config.init_checkpoint])[0]) if config.init_checkpoint else None
    knobs = config.model_dump(include=TRAIN_KNOBS)
    members = members_for(config.members, n_train=n_train)
    whole = any(c.policy == "full" for c in [spec.crop, *spec.cameras.values()])
    light = lighting_for(config.lighting, n_train=n_train, whole_frames=whole)
    return TrainConfig(
        **knobs, image_size=spec.image_size, init_checkpoint=init, members=members,
        brightness=light, contrast=light,
    )  # fmt: skip


def _plan_refresh(context, storage: LensStorage, config: TrainingConfig, spec, classes, dataset):
    """(:class:`training.incremental.Refresh`, the warm start or None, ``last_full_at``): the
    champion (registry), the previous materialisation's metadata and the two train splits."""
    from deltalake.exceptions import DeltaError

    from training.incremental import plan_training
    from training.registry import RegistryError

    last, registry = last_metadata(context), storage.registry()
    champion = registry.champion() if config.refresh == "auto" else None
    meta, path, past = None, None, None
    if champion is not None:
        path, meta = _champion_checkpoint(storage, champion)
        # a version vacuumed away: no past split to compare with, the full path says so
        with contextlib.suppress(DeltaError, OSError):
            past = _train_rows(storage.read_table("dataset", version=champion.dataset_version))
    try:
        alias = registry.get(last["model_version"]).alias if last.get("model_version") else None
    except RegistryError:
        alias = None
    plan = plan_training(
        refresh=config.refresh, champion=champion, champion_meta=meta, last=last,
        last_alias=alias, code_version=CODE_VERSION, classes=classes, spec=spec,
        widths=config.sweep_width if config.sweep_trials else [config.width], past=past,
        dataset=dataset.select(*KEYS, "label", "split"), now=datetime.now(UTC),
        full_every_days=config.full_every_days,
        new_conditions=_new_conditions(storage, dataset, past), members=config.members,
    )  # fmt: skip
    if plan.path == "full":
        return plan, None, datetime.now(UTC).isoformat()
    assert meta is not None and past is not None
    return plan, (path, json.loads(meta["config"]), past), last["last_full_at"]


def _new_conditions(storage: LensStorage, dataset, past) -> list[str]:
    """Line conditions of the training split that the champion's training split lacks."""
    if past is None:
        return []
    train = dataset.filter(pl.col("split") == "train").select(KEYS)
    now = set(line_conditions(storage, train).tolist()) if train.height else set()
    before = set(line_conditions(storage, past.select(KEYS)).tolist()) if past.height else set()
    return sorted(now - before)


def _champion_checkpoint(storage: LensStorage, champion):
    """The champion's checkpoint fetched locally and verified: (path, its metadata)."""
    from training.checkpoint import load_checkpoint

    local = storage.fetch_local([champion.checkpoint_uri])[0]
    return str(local), load_checkpoint(local, expected_sha256=champion.checkpoint_sha256)[1]


def _train_rows(dataset: pl.DataFrame) -> pl.DataFrame:
    return dataset.filter(pl.col("split") == "train").select(*KEYS, "label")


def _warm_start(config: TrainingConfig, cfg, warm, keys, labels, classes):
    """Rows of the train split a warm start trains on, its TrainConfig (the champion's width,
    number of networks and learning rate, fewer epochs, init from the champion) and what it
    replayed."""
    from training.incremental import replay_rows

    path, champion_config, past = warm
    rows = keys.with_columns(label=pl.Series(labels))  # indices into classes
    seen = past.with_columns(label=pl.col("label").replace_strict(classes, range(len(classes))))
    is_new = rows.join(
        seen.with_columns(_past=pl.lit(True)), on=[*KEYS, "label"], how="left",
        maintain_order="left",
    )["_past"].is_null().to_numpy()  # new, or relabelled since the champion: trained on  # fmt: skip
    rows = replay_rows(is_new, labels, share=config.replay_share, seed=config.seed)
    cfg = replace(
        cfg, epochs=config.warm_epochs, width=champion_config["width"], init_checkpoint=path,
        lr=champion_config["lr"] * config.warm_lr_scale,
        members=champion_config.get("members", 1),
    )  # fmt: skip
    replay = {
        "new_train_frames": int(is_new.sum()),
        "replayed_frames": len(rows) - int(is_new.sum()),
    }
    return rows, cfg, replay


def _store_checkpoint(storage: LensStorage, run, *, versions: dict, spec) -> dict:
    """The run's checkpoint written to ``artifacts/models/m-<sha[:12]>/``; its reference:
    ``model_version, checkpoint_uri, checkpoint_sha256`` and ``versions``."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model.safetensors"
        sha = run.save(local, versions=versions, preprocess=spec)
        uri = storage.uri("artifacts", "models", f"m-{sha[:12]}", "model.safetensors")
        storage.write_bytes(uri, local.read_bytes())
    return {"model_version": f"m-{sha[:12]}", "checkpoint_uri": uri, "checkpoint_sha256": sha,
            **versions}  # fmt: skip


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
    pool=pools.GRAPH,
    ins={"trained_model": dg.AssetIn(input_manager_key="lake_io")},
    group_name="training",
    kinds={"pytorch"},
    # 2: its power; 3: a tie goes to a challenger that trained on a new line condition
    code_version=code_version("evaluate", 3, PromotionConfig().model_dump()),
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
    from training.challenger import evaluate_challenger, split_fingerprint
    from training.checkpoint import checkpoint_spec

    ref = trained_model  # the checkpoint reference trained_model handed down
    model, ckpt = _load(storage, ref["checkpoint_uri"], ref["checkpoint_sha256"])
    classes, spec = json.loads(ckpt["classes"]), checkpoint_spec(ckpt)  # the model's own contract
    dataset_version = int(ref["dataset_version"])  # the test split of its own dataset
    x_te, y_te, keys = split_images(storage, "test", classes, spec, version=dataset_version)
    result = evaluate_challenger(
        model, x_te, y_te, classes=classes, spec=spec, test_set=split_fingerprint(keys),
        slices=line_conditions(storage, keys), registry=storage.registry(), checkpoint=ref,
        meta=ckpt, load=lambda uri, sha: _load(storage, uri, sha),
        images_for=lambda own: split_images(storage, "test", classes, own, version=dataset_version)[0],
        **config.model_dump(),
    )  # fmt: skip
    if result.promoted:  # the predictions table always holds the champion's predictions
        storage.write_table(
            _predictions(storage, model, classes, spec, result.version), "predictions"
        )
    plots = {k: png_md(v) for k, v in result.plots().items()}
    if "slices" in plots:  # judged against a champion: the paired per-slice comparison
        plots["vs_champion"] = md_table(result.slice_table()) + "\n\n" + plots.pop("slices")
    power = result.power()  # per condition: n, mdd_points, protected
    return dg.MaterializeResult(
        metadata={
            **result.summary(),
            "ensemble": dg.MetadataValue.json(result.ensemble),
            **({"vs_champion_power": dg.MetadataValue.json(power)} if power else {}),
            "per_class": dg.MetadataValue.md(md_table(result.per_class())),
            **{k: dg.MetadataValue.md(v) for k, v in plots.items()},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="promotion_gate",
                passed=result.promoted,
                metadata={
                    "reasons": result.reasons,
                    **(
                        {"unprotected": result.decision.unprotected}
                        if result.decision.unprotected
                        else {}
                    ),
                },
            )
        ],
        # downstream (exports, drift reference) follows the champion, not every evaluation
        data_version=dg.DataVersion(result.data_version),
    )


def _load(storage: LensStorage, uri: str, sha256: str):
    """A checkpoint from the lake, sha256-verified: (model, metadata)."""
    from training.checkpoint import load_checkpoint

    return load_checkpoint(storage.fetch_local([uri])[0], expected_sha256=sha256)


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

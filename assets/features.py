"""frame_embeddings: out-of-sample probabilities and embeddings of every labeled frame (K-fold CNN).

Writes the ``frame_embeddings`` table (one overwrite commit, or none when the rows are the same)
and, on a full build, the K fold models as checkpoints at
``artifacts/fold_models/f-<sha256[:12]>.safetensors`` (content-addressed, each written
atomically) before the table. A crash between the two leaves unreferenced checkpoints and the
previous table and metadata, which the next run rebuilds or extends as before
(:mod:`training.incremental`). A full build first deletes every fold checkpoint the last
materialisation does not reference (earlier builds', a crashed run's), so at most two builds'
are ever stored: the one the incremental path extends and the one being made.
"""

import json
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
from assets.provenance import code_version, last_metadata, unchanged
from lake import pools
from lake.frames import KEYS, load_frame_images, ok_frames
from lake.resources import PreprocessResource
from lake.storage import LensStorage


class EmbeddingConfig(dg.Config):
    """K-fold training that yields held-out probabilities for cleanlab."""

    n_folds: int = Field(
        default=3, description="Folds, grouped by video (or time blocks of one video)."
    )
    frame_folds: int = Field(
        default=5,
        description="Folds when labelled frames are no near-duplicates of their neighbours "
        "and are folded one by one (training.crossval).",
    )
    epochs: int = Field(default=15, description="Epochs per fold model, at most.")
    fold_images: int = Field(
        default=60_000,
        description="Training images a fold model sees over all epochs, at most (at least "
        "training.crossval.MIN_EPOCHS epochs): large label sets take fewer passes.",
    )
    tta: bool = Field(
        default=True,
        description="Average held-out probabilities over the training augmentation's shifts "
        "and mirror (training.crossval.tta_views).",
    )
    image_size: int = Field(
        default=0,
        description="Side the fold models train on; 0 = the preprocess size, or less where the "
        "frames' crops are smaller (training.crossval.fold_side: never upscaled).",
    )
    tta_views: int = Field(
        default=6,
        description="Test-time views averaged, at most: 1 = the clean image; 6 = clean, mirror "
        "and the four 1 px shifts; 18 = all at 64 px (benchmarks/label_checking_scale.py).",
    )
    seed: int = Field(default=0)
    refresh: Literal["auto", "full"] = Field(
        default="auto",
        description="auto: frames of new videos get the stored fold models' mean held-out "
        "probabilities and the other rows stay, when nothing else changed "
        "(training.incremental); full: train the K fold models again on every frame.",
    )
    full_every_days: float = Field(
        default=7.0, description="auto: a full build when the last one is this many days old."
    )
    max_new_share: float = Field(
        default=0.25, description="auto: a full build when new frames are more than this share."
    )


REFRESH_KNOBS = {"refresh", "full_every_days", "max_new_share"}
FOLD_MODELS = ("artifacts", "fold_models")


def majority_vote(labels: pl.DataFrame, frames: pl.DataFrame) -> pl.DataFrame:
    """One label per labeled frame present in ``frames`` (ties: alphabetical), sorted by key."""
    vote = labels.group_by(KEYS).agg(pl.col("label").mode().sort().first().alias("vote_label"))
    columns = [*KEYS, "camera_id", "uri", "sha256", "width", "height"]
    return vote.join(frames.select(columns), on=KEYS).sort(KEYS)


@dg.asset(
    pool=pools.GRAPH,
    deps=["labels", "frames", LINE_KEYS["crop"]],
    group_name="labels",
    kinds={"pytorch", "delta"},
    code_version=code_version("frame_embeddings", 2, EmbeddingConfig().model_dump()),
)
def frame_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingConfig,
    storage: LensStorage,
    preprocess: PreprocessResource,
):
    """Held-out class probabilities and penultimate embeddings per labeled frame, from K-fold CNNs."""
    from training.crossval import fold_side
    from training.incremental import FoldState, plan_embeddings, rows_digest

    if (again := unchanged(context)) is not None:
        return again  # same labels, frames and code: the same held-out outputs
    vote, classes, y = vote_targets(storage.read_table("labels"), ok_frames(storage))
    spec = with_line_crops(preprocess.spec(), storage)
    side = config.image_size or fold_side(
        spec, vote["camera_id"].to_list(), vote["width"].to_numpy(), vote["height"].to_numpy()
    )
    settings = _settings(context, config, spec, side, classes)
    previous = FoldState.from_json(last_metadata(context).get("fold_models"))
    stored = storage.read_table("frame_embeddings") if previous else None
    plan, new = plan_embeddings(
        previous, refresh=config.refresh, settings=settings, vote=vote, now=datetime.now(UTC),
        stored=stored, stored_version=storage.table_version("frame_embeddings"),
        full_every_days=config.full_every_days, max_new_share=config.max_new_share,
    )  # fmt: skip
    context.log.info(f"refresh {plan.path}: {plan.reason}")
    if plan.path == "incremental":
        assert previous is not None and stored is not None
        table, state = _extend(storage, config, spec, vote, new, classes, previous, stored)
    else:
        pruned = prune_fold_models(storage, previous)
        if pruned:
            context.log.info(f"deleted {pruned} fold checkpoint(s) no materialisation references")
        table, state = _rebuild(context, storage, config, spec, side, vote, classes, y)
    version = storage.write_table(table, "frame_embeddings", skip_unchanged=True)
    state = replace(state, settings=settings, rows=rows_digest(vote), table_version=version)
    probs, emb = (np.array(table[c].to_list(), np.float32) for c in ("pred_probs", "embedding"))
    return dg.MaterializeResult(
        metadata={
            **embedding_summary(table, y, probs, emb, table["fold"].to_numpy()),
            **plan.metadata(),
            "new_frames": int(new.sum()),
            "table_version": version,
            "preprocess": dg.MetadataValue.json(spec.to_dict()),
            "fold_grouping": dg.MetadataValue.json(state.grouping),
            "fold_models": dg.MetadataValue.json(state.to_json()),
        },
        data_version=dg.DataVersion(f"frame_embeddings-{version}"),
    )


def _settings(context: dg.AssetExecutionContext, config: EmbeddingConfig, spec, side, classes):
    """What the held-out outputs depend on besides the rows (training.incremental)."""
    from training.incremental import settings_digest

    return settings_digest(
        code=context.assets_def.code_versions_by_key.get(context.asset_key),
        config=config.model_dump(exclude=REFRESH_KNOBS),
        spec=spec.to_dict(),
        side=side,
        classes=classes,
    )


def _rebuild(context, storage: LensStorage, config: EmbeddingConfig, spec, side, vote, classes, y):
    """The full path: K fold models trained on every frame, kept for the next run."""
    from training.crossval import cross_val_predict
    from training.incremental import FoldState
    from training.train import TrainConfig

    images = load_frame_images(storage, vote, spec)
    cfg = TrainConfig(
        epochs=config.epochs, image_size=spec.image_size, seed=config.seed, batch_size=32
    )
    probs, emb, folds, grouping, models = cross_val_predict(
        images, y, classes=classes, groups=vote["video_id"].to_numpy(),
        frame_indices=vote["frame_index"].to_numpy(), config=cfg, n_folds=config.n_folds,
        frame_folds=config.frame_folds, progress=context.log.info, return_grouping=True,
        tta=config.tta, n_views=config.tta_views, fold_images=config.fold_images, image_size=side,
        return_models=True,
    )  # fmt: skip
    state = FoldState(
        models=[_store_fold_model(storage, m, classes, spec) for m in models], settings="",
        rows="", grouping=grouping, side=side, full_at=datetime.now(UTC).isoformat(),
        table_version=-1,
    )  # fmt: skip
    return embedding_table(vote, classes, probs, emb, folds), state


def _extend(
    storage: LensStorage, config: EmbeddingConfig, spec, vote, new, classes, previous, stored
):
    """The incremental path: the stored rows, and the new frames scored by every fold model."""
    from training.checkpoint import load_checkpoint
    from training.crossval import at_side, tta_views
    from training.incremental import extend_held_out, fold_for
    from training.train import TrainConfig

    rows = vote.filter(pl.Series(new))
    if rows.is_empty():
        return stored, previous
    models = [
        load_checkpoint(storage.fetch_local([m["uri"]])[0], expected_sha256=m["sha256"])[0]
        for m in previous.models
    ]
    images = at_side(load_frame_images(storage, rows, spec), previous.side)
    cfg = TrainConfig(image_size=previous.side, seed=config.seed)
    views = tta_views(cfg, config.tta_views) if config.tta else [(0, 0, False)]
    folds = fold_for(rows["video_id"].to_list(), len(models))
    probs, emb = extend_held_out(models, images, folds, views=views)
    added = embedding_table(rows, classes, probs, emb, folds)
    table = pl.concat([stored.select(added.columns), added], how="vertical_relaxed")
    return table.sort(KEYS), previous


def prune_fold_models(storage: LensStorage, keep) -> int:
    """Delete the fold checkpoints under ``artifacts/fold_models/`` that ``keep`` (the last
    materialisation's :class:`training.incremental.FoldState`, or None) does not reference;
    the number deleted."""
    kept = {m["uri"] for m in keep.models} if keep is not None else set()
    stale = [f.uri for f in storage.list_files(*FOLD_MODELS) if f.uri not in kept]
    storage.delete(stale)
    return len(stale)


def _store_fold_model(storage: LensStorage, model, classes: list[str], spec) -> dict[str, str]:
    """One fold model as a checkpoint in the lake: ``{"uri", "sha256"}``."""
    from training.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "fold.safetensors"
        at_side = replace(spec, image_size=model.config.image_size)
        sha = save_checkpoint(
            model, local, metadata={"classes": json.dumps(classes)}, preprocess=at_side
        )
        uri = storage.uri(*FOLD_MODELS, f"f-{sha[:12]}.safetensors")
        storage.write_bytes(uri, local.read_bytes())
    return {"uri": uri, "sha256": sha}


def vote_targets(
    labels: pl.DataFrame, frames: pl.DataFrame
) -> tuple[pl.DataFrame, list[str], np.ndarray]:
    """The majority vote per labeled ok frame, the class list and the votes as class indices."""
    from data_quality.labels import class_list

    classes = class_list(labels)
    vote = majority_vote(labels, frames)
    y = vote["vote_label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
    return vote, classes, y


def embedding_table(
    vote: pl.DataFrame, classes: list[str], probs: np.ndarray, emb: np.ndarray, folds: np.ndarray
) -> pl.DataFrame:
    """The ``frame_embeddings`` rows: key, vote, embedding, held-out probabilities and fold."""
    return vote.select(*KEYS, "vote_label").with_columns(
        embedding=pl.Series(emb.tolist(), dtype=pl.List(pl.Float32)),
        pred_probs=pl.Series(probs.tolist(), dtype=pl.List(pl.Float32)),
        fold=pl.Series(folds),
        classes=pl.lit(list(classes), dtype=pl.List(pl.String)),
    )


def embedding_summary(
    table: pl.DataFrame, y: np.ndarray, probs: np.ndarray, emb: np.ndarray, folds: np.ndarray
) -> dict[str, int | float]:
    """Frames, embedding size, folds and held-out agreement with the vote (asset metadata)."""
    return {
        "frames": table.height,
        "dim": int(emb.shape[1]),
        "folds": int(folds.max() + 1),
        "held_out_agreement_with_vote": round(float((probs.argmax(1) == y).mean()), 4),
    }

"""frame_embeddings: out-of-sample probabilities and embeddings of every labeled frame (K-fold CNN)."""

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from assets.line_config import KEYS as LINE_KEYS
from assets.line_config import with_line_crops
from assets.provenance import code_version, unchanged
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


def majority_vote(labels: pl.DataFrame, frames: pl.DataFrame) -> pl.DataFrame:
    """One label per labeled frame present in ``frames`` (ties: alphabetical), sorted by key."""
    vote = labels.group_by(KEYS).agg(pl.col("label").mode().sort().first().alias("vote_label"))
    columns = [*KEYS, "camera_id", "uri", "sha256", "width", "height"]
    return vote.join(frames.select(columns), on=KEYS).sort(KEYS)


@dg.asset(
    deps=["labels", "frames", LINE_KEYS["crop"]],
    group_name="labels",
    kinds={"pytorch", "delta"},
    code_version=code_version("frame_embeddings", 1, EmbeddingConfig().model_dump()),
)
def frame_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingConfig,
    storage: LensStorage,
    preprocess: PreprocessResource,
):
    """Held-out class probabilities and penultimate embeddings per labeled frame, from K-fold CNNs."""
    from training.crossval import cross_val_predict, fold_side
    from training.train import TrainConfig

    if (again := unchanged(context)) is not None:
        return again  # same labels, frames and code: the same held-out outputs
    vote, classes, y = vote_targets(storage.read_table("labels"), ok_frames(storage))
    spec = with_line_crops(preprocess.spec(), storage)
    images = load_frame_images(storage, vote, spec)
    cfg = TrainConfig(
        epochs=config.epochs, image_size=spec.image_size, seed=config.seed, batch_size=32
    )
    side = config.image_size or fold_side(
        spec, vote["camera_id"].to_list(), vote["width"].to_numpy(), vote["height"].to_numpy()
    )
    probs, emb, folds, grouping = cross_val_predict(
        images, y, classes=classes, groups=vote["video_id"].to_numpy(),
        frame_indices=vote["frame_index"].to_numpy(), config=cfg, n_folds=config.n_folds,
        frame_folds=config.frame_folds, progress=context.log.info, return_grouping=True,
        tta=config.tta, n_views=config.tta_views, fold_images=config.fold_images, image_size=side,
    )  # fmt: skip
    table = embedding_table(vote, classes, probs, emb, folds)
    version = storage.write_table(table, "frame_embeddings", skip_unchanged=True)
    metadata = embedding_summary(table, y, probs, emb, folds)
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "table_version": version,
            "preprocess": dg.MetadataValue.json(spec.to_dict()),
            "fold_grouping": dg.MetadataValue.json(grouping),
        },
        data_version=dg.DataVersion(f"frame_embeddings-{version}"),
    )


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

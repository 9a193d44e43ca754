"""frame_embeddings: a feature vector per sampled frame, and the joins that feed cleanlab."""

import dagster as dg
import numpy as np
import polars as pl

from orchestration.storage import LensStorage

KEYS = ["video_id", "frame_index"]
IMAGE_SIZE = 96


def load_frame_images(
    storage: LensStorage, frames: pl.DataFrame, *, size: int = IMAGE_SIZE
) -> np.ndarray:
    """RGB uint8 (N, size, size, 3) for the ``uri`` column of ``frames``, in row order."""
    from training.data import load_images

    return load_images(storage.fetch_local(frames["uri"].to_list()), size)


@dg.asset(deps=["frames"], group_name="labels", kinds={"delta"})
def frame_embeddings(context: dg.AssetExecutionContext, storage: LensStorage):
    """A feature vector per sampled frame: the champion's penultimate layer, else bootstrap HOG/colour features."""
    from data_quality.features import bootstrap_features

    frames = ok_frames(storage)
    champion = _champion(storage)
    if champion is not None:
        from training.evaluate import embed

        model, meta = champion
        size = int(meta.get("image_size", IMAGE_SIZE))
        vectors, source = (
            embed(model, load_frame_images(storage, frames, size=size)),
            f"model:{meta['model_version']}",
        )
    else:
        from training.data import load_images

        paths = storage.fetch_local(frames["uri"].to_list())
        vectors, source = bootstrap_features(load_images(paths, 160)), "bootstrap:hog-hs-thumb-v1"
    table = frames.select(KEYS).with_columns(
        embedding=pl.Series(vectors.astype(np.float32).tolist(), dtype=pl.List(pl.Float32)),
        source=pl.lit(source),
    )
    version = storage.write_table(table, "frame_embeddings")
    return dg.MaterializeResult(metadata={"frames": table.height, "dim": int(vectors.shape[1]), "source": source,
                                          "table_version": version})  # fmt: skip


def ok_frames(storage: LensStorage) -> pl.DataFrame:
    """Frames of videos whose latest ingestion is ``ok``, sorted by key."""
    videos = storage.read_table("videos").filter(pl.col("status") == "ok").select("video_id")
    return storage.read_table("frames").join(videos, on="video_id").sort(KEYS)


def embeddings_for(storage: LensStorage, keys: pl.DataFrame) -> np.ndarray:
    """Embedding matrix (N, D) aligned with ``keys`` (video_id, frame_index)."""
    emb = storage.read_table("frame_embeddings")
    joined = keys.select(KEYS).join(emb, on=KEYS, how="left", maintain_order="left")
    missing = joined.filter(pl.col("embedding").is_null())
    if missing.height:
        raise dg.Failure(f"{missing.height} labeled frames have no embedding, e.g. {missing.row(0)}: "
                         "materialise frames and frame_embeddings first")  # fmt: skip
    return np.asarray(joined["embedding"].to_list(), dtype=np.float32)


def consensus_inputs(storage: LensStorage, labels: pl.DataFrame):
    """Classes, out-of-sample probabilities from majority-vote labels, and their frame keys."""
    from data_quality.label_issues import out_of_sample_pred_probs
    from data_quality.labels import class_list

    classes = class_list(labels)
    vote = (
        labels.group_by(KEYS).agg(pl.col("label").mode().sort().first()).sort(KEYS)
        .join(ok_frames(storage).select(KEYS), on=KEYS)
    )  # fmt: skip
    y = vote["label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
    probs = out_of_sample_pred_probs(
        embeddings_for(storage, vote), y, n_classes=len(classes), groups=vote["video_id"].to_numpy()
    )
    return classes, probs, vote.select(KEYS)


def _champion(storage: LensStorage):
    """The champion model and its metadata, or None before the first promotion."""
    from training.registry import ModelRegistry

    registry = ModelRegistry(storage.table_uri("models"), storage_options=storage.storage_options())
    record = registry.champion()
    if record is None:
        return None
    from training.checkpoint import load_checkpoint

    [path] = storage.fetch_local([record.checkpoint_uri])
    model, meta = load_checkpoint(path, expected_sha256=record.checkpoint_sha256)
    return model, {**meta, "model_version": record.model_version}

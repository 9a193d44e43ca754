"""Typed reads of the frames the graph works on: the ``frames`` table's ok rows, their model
images, and each row's line condition (camera, or camera/drift for drift-labelled videos).

A ``frames`` table written before a column joined the contract (``item_presence``,
``item_present``) reads with that column null: :func:`ok_frames`, :func:`video_frames` and
:func:`camera_frames` add it (the next ingestion's commit adds it to the table).
"""

import dagster as dg
import numpy as np
import polars as pl

from data_quality.contract import KEYS
from lake.storage import LensStorage
from lake.tables import table_schema


def load_frame_images(
    storage: LensStorage, frames: pl.DataFrame, spec=None, *, size: int | None = None
) -> np.ndarray:
    """Model images, RGB uint8 (N, S, S, 3), for the ``uri`` column of ``frames``, in row order.

    ``spec`` is the :class:`training.preprocess.PreprocessSpec` (a camera's crop comes from the
    ``camera_id`` column when present); without one, the default spec at ``size`` (previews).
    """
    from training.preprocess import PreprocessSpec

    if spec is None:
        spec = PreprocessSpec(image_size=size or 64)
    digests = frames["sha256"].to_list() if "sha256" in frames.columns else None
    paths = storage.fetch_local(frames["uri"].to_list(), digests=digests)
    cameras = frames["camera_id"].to_list() if "camera_id" in frames.columns else None
    return spec.images(paths, cameras)


def ok_frames(storage: LensStorage) -> pl.DataFrame:
    """Frames of videos whose latest ingestion is ``ok``, sorted by key."""
    videos, frames = storage.read_table("videos"), storage.read_table("frames")
    if videos is None or frames is None:
        raise dg.Failure(
            f"no ingested frames yet in {storage.table_uri('frames')}: land videos and ingest them first"
        )
    ok = videos.filter(pl.col("status") == "ok").select("video_id")
    return with_contract_columns(frames.join(ok, on="video_id").sort(KEYS))


def video_frames(
    storage: LensStorage, video_id: str, *, camera_id: str | None = None
) -> pl.DataFrame:
    """One video's rows of ``frames`` (empty if none), read with the filter pushed down.

    With ``camera_id`` only that camera's partition is read; without it, files whose statistics
    exclude the video are skipped.
    """
    where = pl.col("video_id") == video_id
    if camera_id is not None:
        where = (pl.col("camera_id") == camera_id) & where
    return _frames(storage, where)


def camera_frames(storage: LensStorage, camera_id: str) -> pl.DataFrame:
    """One camera's rows of ``frames`` (empty if none): only its partition is read."""
    return _frames(storage, pl.col("camera_id") == camera_id)


def _frames(storage: LensStorage, where: pl.Expr) -> pl.DataFrame:
    df = storage.read_table("frames", where=where)
    return table_schema("frames").empty() if df is None else with_contract_columns(df)


def with_contract_columns(frames: pl.DataFrame) -> pl.DataFrame:
    """``frames`` rows with every ``frames`` column the table lacks added as null (an older
    lake); other columns (a join's) are kept as they are."""
    missing = [
        pl.lit(None, dtype=t).alias(c)
        for c, t in table_schema("frames").columns.items()
        if c not in frames.columns
    ]
    return frames.with_columns(missing) if missing else frames


def drift_labelled_videos(storage: LensStorage) -> list[str]:
    """Videos whose frames were queued for labels because they drifted (``drift_queue``)."""
    queue = storage.read_table("drift_queue")
    return [] if queue is None else queue["video_id"].unique().sort().to_list()


def line_conditions(storage: LensStorage, rows: pl.DataFrame) -> np.ndarray:
    """The line condition of each row (``video_id``, ``frame_index``, optionally ``camera_id``):
    :func:`training.evaluate.condition_slices` with the drift-labelled videos. Curation splits,
    training balances and the promotion gate scores by it."""
    from training.evaluate import condition_slices

    if "camera_id" not in rows.columns:
        videos = pl.col("video_id").is_in(rows["video_id"].unique().to_list())
        rows = rows.join(
            storage.require_table("frames", columns=[*KEYS, "camera_id"], where=videos), on=KEYS,
            how="left", maintain_order="left",
        )  # fmt: skip
    return condition_slices(
        rows["camera_id"].fill_null("?").to_list(),
        rows["video_id"].to_list(),
        drift_labelled_videos(storage),
    )

"""The ingest transaction's writes: one video's frame files and its rows in ``frames`` and ``videos``.

Tables written (schemas: ``lake/tables.py``, ``data_quality.contract``):

``videos`` (one row per video, keyed by ``video_id``): the scan's report, the landed file's uri
and mtime, ``status`` (``ok``, ``ingesting``, ``empty``, ``unreadable``, ``unsupported``,
``corrupt``) and ``kept_frames``.

``frames`` (one row per kept frame, keyed by ``video_id``, ``frame_index``): the JPEG's uri and
sha256, size, timestamp, ``labeled``, the frame's quality statistics and its item presence
(``item_presence``, ``item_present``: :mod:`data_quality.presence`).

Files: the frame JPEGs under ``artifacts/frames/<video_id>/<frame_index:06d>.jpg``, and the label
frame index ``artifacts/label_frame_index.json`` (:func:`labeled_frames`, written before any of
the commits below, when a label file is new or changed).

:func:`commit_ingest` writes, in this order: (1) when the video was ``ok`` before, its ``videos``
row again with status ``ingesting``; (2) the frame JPEGs (temp file + rename); (3) the video's
rows in ``frames``, one commit (for a bad video: its old rows deleted); (4) stale images and temp
files removed; (5) the ``videos`` row with the final status, one commit. So ``videos`` says ``ok``
only once the frames are committed. A crash before (5) leaves a row that is missing,
``ingesting`` or out of date (``ok`` without the matching frame rows); readers use only ``ok``
videos, ``landing.stale_videos`` counts such a video as not ingested, and the next run ingests it
again and removes the orphan files.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from data_quality.ingest import SampledVideo, frame_rows, video_row
from lake.landing import INGESTING, camera_of, label_files
from lake.storage import LensStorage, StoredFile

__all__ = ["IngestedVideo", "commit_ingest", "labeled_frames"]


@dataclass(frozen=True)
class IngestedVideo:
    """What :func:`commit_ingest` committed: the video's ``frames`` rows (None when the video is
    not ``ok`` and its rows were deleted) and the ``videos`` table version of the final row."""

    frames: pl.DataFrame | None
    videos_version: int


def commit_ingest(
    storage: LensStorage, video_id: str, source: StoredFile, sampled: SampledVideo
) -> IngestedVideo:
    """Replace ``video_id``'s frames and ``videos`` row with what ``sampled`` found, in the
    order the module docstring gives (``videos`` last)."""
    camera = camera_of(source)
    _mark_ingesting(storage, video_id)
    frames = None
    if sampled.report.ok:
        frames = _store_frames(storage, video_id, camera, sampled)
    else:
        _drop_frames(storage, video_id)
    row = video_row(
        video_id,
        camera,
        uri=source.uri,
        source_mtime=source.mtime,
        report=sampled.report,
        kept_frames=frames.height if frames is not None else 0,
        ingested_at=datetime.now(UTC),
    )
    version = storage.write_table(
        row, "videos", replace_where=storage.eq_predicate("video_id", video_id)
    )
    return IngestedVideo(frames, version)


def _mark_ingesting(storage: LensStorage, video_id: str) -> None:
    """Before an ``ok`` video's frames are replaced, take the ``ok`` away (one commit)."""
    table = storage.read_table("videos")
    row = table.filter(pl.col("video_id") == video_id) if table is not None else None
    if row is None or row.is_empty() or row["status"][0] != "ok":
        return
    storage.write_table(
        row.with_columns(status=pl.lit(INGESTING), error=pl.lit("ingestion in progress")),
        "videos",
        replace_where=storage.eq_predicate("video_id", video_id),
    )


def _frame_files(storage: LensStorage, video_id: str) -> list[str]:
    """Every file under ``artifacts/frames/<video_id>/``, temp files of killed writes included."""
    return [f.uri for f in storage.list_files("artifacts", "frames", video_id, include_hidden=True)]


def _drop_frames(storage: LensStorage, video_id: str) -> None:
    """A video that is not ok has no frames: delete its rows (one commit), then its files."""
    storage.delete_rows("frames", storage.eq_predicate("video_id", video_id))
    storage.delete(_frame_files(storage, video_id))


def _store_frames(
    storage: LensStorage, video_id: str, camera: str, sampled: SampledVideo
) -> pl.DataFrame:
    """Write the JPEGs, then replace the video's rows in ``frames`` in one Delta commit; drop stale files."""
    encoded = sampled.frames
    uris = [
        storage.uri("artifacts", "frames", video_id, f"{f.frame_index:06d}.jpg") for f in encoded
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:  # file/object writes overlap
        list(pool.map(storage.write_bytes, uris, [f.jpeg for f in encoded]))
    frames = frame_rows(video_id, camera, sampled, uris)
    try:  # the partition column first: Delta replaces and checks conflicts in that partition
        where = storage.and_predicate(camera_id=camera, video_id=video_id)
    except ValueError:  # a camera folder name no predicate can quote: the video's rows alone
        where = storage.eq_predicate("video_id", video_id)
    storage.write_table(frames, "frames", replace_where=where)
    stale = set(_frame_files(storage, video_id)) - set(uris)
    storage.delete(sorted(stale))
    return frames


def labeled_frames(storage: LensStorage, video_id: str, file: str) -> set[int]:
    """Frames any label file (CSV, COCO, FiftyOne) gives for this video: always sampled.

    Read from the label frame index (``artifacts/label_frame_index.json``, see
    ``data_quality.label_formats.frame_index``), re-read only for new or changed label files.
    """
    from data_quality.label_formats.frame_index import LabelFrameIndex

    uri = storage.uri("artifacts", "label_frame_index.json")
    missing: tuple[type[Exception], ...] = (FileNotFoundError,)
    if storage.is_s3:
        from botocore.exceptions import ClientError

        missing += (ClientError,)
    try:
        index = LabelFrameIndex.loads(storage.read_bytes(uri))
    except missing:
        index = LabelFrameIndex()

    @contextmanager
    def open_local(f: StoredFile) -> Iterator[tuple[Path, Path]]:
        with storage.local_path(f.uri) as local:
            yield local, (local.parent if storage.is_s3 else Path(storage.uri("landing")))

    # StoredFile is frozen, the LabelFile protocol's attributes are plain (only read)
    if index.refresh(label_files(storage), open_local):  # type: ignore[arg-type]
        storage.write_bytes(uri, index.dumps())
    return index.frames_for_video(video_id, file)

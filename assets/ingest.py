"""raw_video and frames: one decode pass per video proves integrity and samples frames.

Writes, in this order: (1) when the video was ``ok`` before, its ``videos`` row again with status
``ingesting``; (2) the frame JPEGs under ``artifacts/frames/<video_id>/`` (temp file + rename);
(3) the video's rows in ``frames``, one commit (for a bad video: its old rows deleted); (4) stale
images and temp files removed; (5) the ``videos`` row with the final status, one commit. So
``videos`` says ``ok`` only once the frames are committed. A crash before (5) leaves a row that
is missing, ``ingesting`` or out of date (``ok`` without the matching frame rows); readers use
only ``ok`` videos, ``landing.stale_videos`` counts such a video as not ingested, and the next
run ingests it again and removes the orphan files.
"""

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from assets.previews import thumbnail_strip_md
from assets.provenance import code_version
from data_quality import contract
from data_quality.frame_quality import BLURRY_SHARPNESS, DARK_BRIGHTNESS, FrameEncoder
from data_quality.video import scan_video
from lake.landing import INGESTING, camera_of, discover_videos, label_files
from lake.partitions import videos_partitions
from lake.storage import LensStorage


class IngestConfig(dg.Config):
    """How frames are sampled from each video."""

    sample_fps: float = Field(default=2.0, description="Frames kept per second of video.")
    stride: int | None = Field(
        default=None, description="Keep every Nth frame (overrides sample_fps)."
    )
    jpeg_quality: int = Field(
        default=90, ge=30, le=100, description="JPEG quality of frame images."
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "raw_video",
            description="A landed video: checksum, probe and a full decode proving integrity.",
            group_name="ingest",
            kinds={"delta", "video"},
            metadata={"table": "videos"},
        ),
        dg.AssetSpec(
            "frames",
            deps=["raw_video"],
            description="Sampled frames of a video as JPEGs plus rows in the frames Delta table.",
            group_name="ingest",
            kinds={"delta", "image"},
            skippable=True,
            metadata={"table": "frames"},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "decodable",
            asset="raw_video",
            blocking=True,
            description="Every frame decodes; a corrupt video never flows downstream.",
        ),
        dg.AssetCheckSpec(
            "no_timestamp_gaps",
            asset="raw_video",
            description="Frame timestamps advance by about 1/fps (WARN on dropped frames).",
        ),
        dg.AssetCheckSpec(
            "frame_quality",
            asset="frames",
            description="At most 20% of sampled frames are dark or blurry (WARN).",
        ),
    ],
    partitions_def=videos_partitions,
    code_version=code_version("ingest", 1, IngestConfig().model_dump()),
)
def raw_video_and_frames(
    context: dg.AssetExecutionContext, config: IngestConfig, storage: LensStorage
):
    video_id = context.partition_key
    source = discover_videos(storage).get(video_id)
    if source is None:
        raise dg.Failure(
            f"video {video_id!r} is registered but no longer in {storage.uri('landing', 'videos')}"
        )
    started = time.perf_counter()
    name = source.key.split("/")[-1]
    keep = _labeled_frames(storage, video_id, name)
    encoder = FrameEncoder(quality=config.jpeg_quality)
    with storage.local_path(source.uri) as local:
        report = scan_video(
            local,
            name=source.uri,
            sample_fps=config.sample_fps,
            stride=config.stride,
            keep_frames=keep,
            sink=encoder,
            lazy_sink=True,
        )
    encoded = encoder.results()
    _mark_ingesting(storage, video_id)
    frames = (
        _store_frames(storage, video_id, camera_of(source), encoded, keep)
        if report.ok
        else _drop_frames(storage, video_id)
    )
    row = {
        "video_id": video_id,
        "camera_id": camera_of(source),
        "uri": source.uri,
        "source_mtime": source.mtime,
        "ingested_at": datetime.now(UTC),
        **report.as_row(),
        "kept_frames": frames.height if frames is not None else 0,
    }
    row.pop("file")
    videos_version = storage.write_table(
        contract.conform([row], contract.VIDEOS),
        "videos",
        replace_where=storage.eq_predicate("video_id", video_id),
    )
    ingest_s = (
        time.perf_counter() - started
    )  # all of Lensline's work, before Dagster records events

    yield dg.MaterializeResult(
        asset_key="raw_video",
        data_version=dg.DataVersion(f"{report.status}:{report.sha256}"),
        metadata={
            "status": report.status,
            "error": report.error or "",
            "sha256": report.sha256,
            "codec": report.codec or "",
            "fps": report.fps or 0.0,
            "frame_count": report.frame_count,
            "resolution": f"{report.width}x{report.height}",
            "ingest_s": round(ingest_s, 4),
            "warnings": "; ".join(report.problems) if report.ok and report.problems else "none",
            "videos_table_version": videos_version,
        },
    )
    yield dg.AssetCheckResult(
        asset_key="raw_video",
        check_name="decodable",
        passed=report.ok,
        metadata={"status": report.status, "error": report.error or ""},
    )
    yield dg.AssetCheckResult(
        asset_key="raw_video",
        check_name="no_timestamp_gaps",
        passed=report.timestamp_gaps == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"gaps": report.timestamp_gaps, "max_gap_s": report.max_gap_s},
    )
    if frames is None:
        context.log.error(report.error)
        yield dg.AssetCheckResult(  # declared, so always reported: here with why it did not run
            asset_key="frames",
            check_name="frame_quality",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"skipped": f"no frames sampled: video is {report.status}: {report.error}"},
        )
        return
    bad = frames.filter(
        (pl.col("brightness") < DARK_BRIGHTNESS) | (pl.col("sharpness") < BLURRY_SHARPNESS)
    )
    yield dg.MaterializeResult(
        asset_key="frames",
        # the sampled frames' content: re-ingesting identical bytes changes nothing downstream
        data_version=dg.DataVersion(
            hashlib.sha256("".join(frames.sort("frame_index")["sha256"]).encode()).hexdigest()[:20]
        ),
        metadata={
            "frames": frames.height,
            "labeled_frames": int(frames["labeled"].sum()),
            "mean_brightness": round(float(frames["brightness"].mean()), 2),
            "mean_sharpness": round(float(frames["sharpness"].mean()), 2),
            "frames_table_version": storage.table_version("frames"),
            "preview": dg.MetadataValue.md(thumbnail_strip_md([f.jpeg for f in encoded])),
        },
    )
    yield dg.AssetCheckResult(
        asset_key="frames",
        check_name="frame_quality",
        passed=len(bad) <= 0.2 * frames.height,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"dark_or_blurry": len(bad), "frames": frames.height},
    )


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


def _store_frames(storage: LensStorage, video_id: str, camera: str, encoded, keep) -> pl.DataFrame:
    """Write the JPEGs, then replace the video's rows in ``frames`` in one Delta commit; drop stale files."""
    uris = [
        storage.uri("artifacts", "frames", video_id, f"{f.frame_index:06d}.jpg") for f in encoded
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:  # file/object writes overlap
        list(pool.map(storage.write_bytes, uris, [f.jpeg for f in encoded]))
    frames = contract.conform(
        [
            {
                "video_id": video_id,
                "camera_id": camera,
                "frame_index": f.frame_index,
                "timestamp_s": f.timestamp_s,
                "uri": uri,
                "sha256": f.sha256,
                "width": f.width,
                "height": f.height,
                "labeled": f.frame_index in keep,
                **f.stats,
            }
            for f, uri in zip(encoded, uris, strict=True)
        ],
        contract.FRAMES,
    )
    storage.write_table(frames, "frames", replace_where=storage.eq_predicate("video_id", video_id))
    stale = set(_frame_files(storage, video_id)) - set(uris)
    storage.delete(sorted(stale))
    return frames


def _labeled_frames(storage: LensStorage, video_id: str, file: str) -> set[int]:
    """Frames any label file (CSV, COCO, FiftyOne) gives for this video: always sampled.

    Read from the label frame index (``artifacts/label_frame_index.json``, see
    ``data_quality.label_formats.frame_index``), re-read only for new or changed label files.
    """
    from contextlib import contextmanager

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
    def open_local(f):
        with storage.local_path(f.uri) as local:
            yield local, (local.parent if storage.is_s3 else Path(storage.uri("landing")))

    if index.refresh(label_files(storage), open_local):
        storage.write_bytes(uri, index.dumps())
    return index.frames_for_video(video_id, file)

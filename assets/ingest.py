"""raw_video and frames: one decode pass per video proves integrity and samples frames.

The ingest transaction: ``data_quality.ingest.sample_video`` scans the video and samples its
frames (labelled frames always kept), ``lake.ingest.commit_ingest`` writes the frame files and
replaces the video's rows in ``frames`` and ``videos`` (its docstring gives the order of the
commits and what a crash between two leaves: ``videos`` says ``ok`` only once the frames are
committed; readers use only ``ok`` videos), ``data_quality.ingest.summarize_ingest`` gives the
metadata, data versions and check verdicts.
"""

import time

import dagster as dg
from pydantic import Field

from assets.previews import thumbnail_strip_md
from assets.provenance import code_version
from data_quality.ingest import CheckVerdict, sample_video, summarize_ingest
from lake import pools
from lake.ingest import commit_ingest, labeled_frames
from lake.landing import discover_videos
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
    pool=pools.INGEST,
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
    """Scan one landed video, store its sampled frames and record it in ``videos``."""
    video_id = context.partition_key
    source = discover_videos(storage).get(video_id)
    if source is None:
        raise dg.Failure(
            f"video {video_id!r} is registered but no longer in {storage.uri('landing', 'videos')}"
        )
    started = time.perf_counter()
    keep = labeled_frames(storage, video_id, source.key.split("/")[-1])
    with storage.local_path(source.uri) as local:
        sampled = sample_video(local, name=source.uri, labeled=keep, **config.model_dump())
    ingested = commit_ingest(storage, video_id, source, sampled)
    ingest_s = time.perf_counter() - started  # all of Lensline's work, before Dagster's events
    summary = summarize_ingest(sampled.report, ingested.frames, ingest_s=ingest_s)

    yield dg.MaterializeResult(
        asset_key="raw_video",
        data_version=dg.DataVersion(summary.video_data_version),
        metadata={**summary.video_metadata, "videos_table_version": ingested.videos_version},
    )
    yield from (_check_result(c) for c in summary.video_checks)
    if summary.frames_metadata is None or summary.frames_data_version is None:
        context.log.error(sampled.report.error)
    else:
        yield dg.MaterializeResult(
            asset_key="frames",
            data_version=dg.DataVersion(summary.frames_data_version),
            metadata={
                **summary.frames_metadata,
                "frames_table_version": storage.table_version("frames"),
                "preview": dg.MetadataValue.md(
                    thumbnail_strip_md([f.jpeg for f in sampled.frames])
                ),
            },
        )
    # declared, so always reported: for a bad video with why it did not run
    yield _check_result(summary.frame_quality)


def _check_result(verdict: CheckVerdict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=verdict.asset,
        check_name=verdict.name,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity(verdict.severity),
        metadata=verdict.metadata,
    )

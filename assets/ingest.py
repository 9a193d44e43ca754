"""raw_video and frames: one decode pass per video proves integrity and samples frames.

The ingest transaction: ``data_quality.ingest.sample_video`` scans the video and samples its
frames (labelled frames always kept), ``lake.ingest.commit_ingest`` writes the frame files and
replaces the video's rows in ``frames`` and ``videos`` (its docstring gives the order of the
commits and what a crash between two leaves: ``videos`` says ``ok`` only once the frames are
committed; readers use only ``ok`` videos), ``data_quality.ingest.summarize_ingest`` gives the
metadata, data versions and check verdicts.
"""

import hashlib
import time
import warnings

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

# videos per ingestion run when many are due: ``lensline run`` and the UI's backfills both ingest
# ranges of at most this many videos in one run (the run's fixed cost, ~0.4 s of Dagster
# events and process start, is then paid once per batch, not per video); one video keeps its
# own run
BATCH = dg.BackfillPolicy.multi_run(max_partitions_per_run=8)
# `backfill_policy=` on an asset is "beta" in Dagster 1.13: said once here, not on every import
warnings.filterwarnings("ignore", "Parameter `backfill_policy`", dg.BetaWarning)


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
    backfill_policy=BATCH,
    code_version=code_version("ingest", 1, IngestConfig().model_dump()),
)
def raw_video_and_frames(
    context: dg.AssetExecutionContext, config: IngestConfig, storage: LensStorage
):
    """Scan the run's landed videos (one, or a batch: a partition range), store their sampled
    frames and record them in ``videos``."""
    videos = context.partition_keys
    if len(videos) > 1:
        yield from _ingest_batch(context, config, storage, videos)
        return
    sampled, summary = _ingest(config, storage, videos[0])
    yield dg.MaterializeResult(
        asset_key="raw_video",
        data_version=dg.DataVersion(summary.video_data_version),
        metadata=summary.video_metadata,
    )
    yield from (_check_result(c) for c in summary.video_checks)
    if summary.frames_metadata is None or summary.frames_data_version is None:
        context.log.error(sampled.report.error)
    else:
        yield dg.MaterializeResult(
            asset_key="frames",
            data_version=dg.DataVersion(summary.frames_data_version),
            metadata=_frames_metadata(storage, sampled, summary),
        )
    # declared, so always reported: for a bad video with why it did not run
    yield _check_result(summary.frame_quality)


def _ingest(config: IngestConfig, storage: LensStorage, video_id: str):
    """The ingest transaction of one video: ``(sampled, summary)``; the summary's video
    metadata carries the ``videos`` table version it committed."""
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
    summary.video_metadata["videos_table_version"] = ingested.videos_version
    return sampled, summary


def _frames_metadata(storage: LensStorage, sampled, summary) -> dict:
    return {
        **summary.frames_metadata,
        "frames_table_version": storage.table_version("frames"),
        "preview": dg.MetadataValue.md(thumbnail_strip_md([f.jpeg for f in sampled.frames])),
    }


def _ingest_batch(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    storage: LensStorage,
    videos: list[str],
):
    """A partition range (a batch of videos in one run: ``BATCH``): each video's ingest
    transaction in turn, its metadata on its own partition's materializations, one data version
    and one verdict per check for the batch (Dagster records a range's partitions together).

    A rejected video fails the batch with its name, before the rest is read: a range cannot
    record frames for some of its partitions only. ``lensline run`` then ingests that batch's
    videos one per run, where the rejected video's checks say why (the others' rows are
    replaced with the same content: ingesting is idempotent)."""
    summaries = []
    for n, video_id in enumerate(videos, start=1):
        sampled, summary = _ingest(config, storage, video_id)
        if summary.frames_metadata is None or summary.frames_data_version is None:
            raise dg.Failure(
                f"video {video_id!r} was rejected ({sampled.report.error}); this batch of "
                f"{len(videos)} videos ({videos[0]} .. {videos[-1]}) is not recorded: ingest its "
                "videos one per run (lensline run does) to record the rejection with its checks",
                metadata={"rejected_video": video_id, "error": str(sampled.report.error)},
            )
        context.add_asset_metadata(
            summary.video_metadata, asset_key="raw_video", partition_key=video_id
        )
        context.add_asset_metadata(
            _frames_metadata(storage, sampled, summary), asset_key="frames", partition_key=video_id
        )
        context.log.info(f"ingested {video_id} ({n}/{len(videos)})")
        summaries.append((video_id, summary))
    batch = {"batch_videos": len(videos), "batch": f"{videos[0]} .. {videos[-1]}"}
    yield dg.MaterializeResult(
        asset_key="raw_video",
        data_version=dg.DataVersion(_digest(s.video_data_version for _, s in summaries)),
        metadata=batch,
    )
    checks: dict[tuple[str, str], list[tuple[str, CheckVerdict]]] = {}
    for video_id, summary in summaries:
        for verdict in summary.video_checks:
            checks.setdefault((verdict.asset, verdict.name), []).append((video_id, verdict))
    yield from (_batch_check(verdicts) for verdicts in checks.values())
    yield dg.MaterializeResult(
        asset_key="frames",
        data_version=dg.DataVersion(_digest(str(s.frames_data_version) for _, s in summaries)),
        metadata={**batch, "frames_table_version": storage.table_version("frames")},
    )
    yield _batch_check([(video_id, s.frame_quality) for video_id, s in summaries])


def _digest(versions) -> str:
    return hashlib.sha256("\n".join(versions).encode()).hexdigest()[:24]


def _batch_check(verdicts: list[tuple[str, CheckVerdict]]) -> dg.AssetCheckResult:
    """One check over a batch: passed when every video passed, at the worst failure's
    severity; which videos failed and each video's verdict in the metadata."""
    first = verdicts[0][1]
    failed = [(v, c) for v, c in verdicts if not c.passed]
    severity = "ERROR" if any(c.severity == "ERROR" for _, c in failed) else "WARN"
    rows = "\n".join(
        f"| {v} | {'pass' if c.passed else 'FAIL'} | "
        f"{', '.join(f'{k}={x}' for k, x in c.metadata.items())[:160]} |"
        for v, c in verdicts
    )
    return dg.AssetCheckResult(
        asset_key=first.asset,
        check_name=first.name,
        passed=not failed,
        severity=dg.AssetCheckSeverity(severity if failed else first.severity),
        metadata={
            "videos": len(verdicts),
            "failed_videos": ", ".join(v for v, _ in failed) or "none",
            "per_video": dg.MetadataValue.md(
                "| video | verdict | detail |\n|---|---|---|\n" + rows
            ),
        },
    )


def _check_result(verdict: CheckVerdict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=verdict.asset,
        check_name=verdict.name,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity(verdict.severity),
        metadata=verdict.metadata,
    )

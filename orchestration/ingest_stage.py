"""``lensline run``'s ingestion stage: which videos are due, in which batches, and what became
of each (split from ``orchestration.runner``).

Due: a video not complete in the lake (``lake.landing.stale_videos``), one whose Dagster record is
missing (``unrecorded_videos``), or every one when forced. They are submitted to the instance's
queue in batches of consecutive partitions (``orchestration.batches``); a batch that fails is
retried one video per run, where a rejected video's checks say why. The store going away stops
the stage with one line that names it (``storage_unreachable``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import dagster as dg
from botocore.exceptions import BotoCoreError

from assets.ingest import BATCH as INGEST_BATCH
from lake.landing import stale_videos
from lake.partitions import videos_partitions
from lake.storage import LensStorage
from orchestration.batches import (
    BATCH_TAG,
    RANGE_START_TAG,
    in_flight,
    plan_batches,
    will_not_open,
)
from orchestration.instance_home import worker_alive
from orchestration.queue import QUIET, QueueClient, daemon_alive, is_queued_instance
from orchestration.run_report import RunSummary, VideoOutcome, video_outcome


def ingest_pending(
    queue: QueueClient,
    storage: LensStorage,
    instance: dg.DagsterInstance,
    summary: RunSummary,
    videos: dict,
    *,
    job: dg.JobDefinition,
    run_tags: dict[str, str],
    force: bool,
    on_progress: Callable[[str, int, int], None] | None,
) -> None:
    """Ingest the due videos of ``videos`` (``video_id -> landed file``) with ``job``; record
    each one's outcome in ``summary.ingested`` (``summary.stopped_reason`` when the store went
    away)."""
    todo = (
        sorted(videos)
        if force
        else sorted({*stale_videos(storage, videos), *unrecorded_videos(instance, storage, videos)})
    )
    summary.up_to_date = len(videos) - len(todo)
    order = instance.get_dynamic_partitions(videos_partitions.name)
    # due videos another client's unfinished run holds (a sensor's batch): waited for, not
    # ingested twice; if that run fails, they are ingested here one per run
    daemon_up = daemon_alive(instance)
    held = _held(instance, order, set(todo), daemon_up=daemon_up)
    mine = [vid for vid in todo if vid not in held]
    queue.warm(len(mine))  # run workers start while the batches are planned and submitted
    reason = "forced" if force else "new, changed or incomplete video"
    if on_progress and todo:  # nothing due: no "ingest 0/1" bar
        on_progress("ingest (queued)", 0, len(todo))
    batches = plan_batches(
        order,
        mine,
        {vid: videos[vid].size for vid in mine},
        workers=queue.workers,
        max_per_run=INGEST_BATCH.max_partitions_per_run or 1,
        alone=will_not_open(storage, {vid: videos[vid] for vid in mine}),
    )
    runs: dict[str, list[str]] = {}
    for vid, run_id in held.items():
        runs.setdefault(run_id, []).append(vid)
    outcomes: dict[str, VideoOutcome] = {}
    retry: list[str] = []

    def submit(batch: list[str]) -> str:
        run_id = queue.submit(
            job,
            partition_key=batch[0] if len(batch) == 1 else None,
            partition_range=(batch[0], batch[-1]) if len(batch) > 1 else None,
            run_config=QUIET,
            tags={**run_tags, "lensline/reason": reason},
        )
        runs[run_id] = batch
        return run_id

    def ingested(run: dg.DagsterRun) -> None:
        batch = runs[run.run_id]
        # a range fails whole for one rejected video: its videos get a run each (a sensor's
        # batch under a live daemon: ingest_batch_retry_sensor does that)
        failed = RANGE_START_TAG in run.tags and run.status != dg.DagsterRunStatus.SUCCESS
        failed = failed and not (BATCH_TAG in run.tags and daemon_up)
        if failed and not summary.stopped_reason:  # e.g. a rejected video: one run each
            retry.extend(batch)
            return
        for vid in batch:
            try:
                outcomes[vid] = video_outcome(storage, vid)
            except (OSError, BotoCoreError) as exc:  # the store is unreachable: stop
                outcomes[vid] = VideoOutcome(vid, "failed", storage_unreachable(storage, exc))
                summary.stopped_reason = summary.stopped_reason or outcomes[vid].error
                queue.cancel_queued()
        if on_progress:
            on_progress("ingest", len(outcomes), len(todo))

    for batch in batches:
        submit(batch)
        if len(batches) > 1:  # start executing while the rest are being submitted
            queue.pump()
    queue.wait(list(runs), on_done=ingested)
    if retry and not summary.stopped_reason:
        queue.wait([submit([vid]) for vid in sorted(retry)], on_done=ingested)
    summary.ingested = [
        outcomes.get(vid) or VideoOutcome(vid, "failed", "not run: " + str(summary.stopped_reason))
        for vid in todo
    ]
    if summary.stopped_reason:
        return
    if on_progress and todo:
        on_progress("ingest", len(todo), len(todo))


def _held(
    instance: dg.DagsterInstance, order: list[str], due: set[str], *, daemon_up: bool
) -> dict[str, str]:
    """Due videos an unfinished run of another client holds and that will end: queued (this
    client drives the queue when no daemon does), or running under a live daemon (its run
    monitoring fails a run whose worker died) or in a live run worker of this host. A run
    left STARTED by a process gone, with no daemon to notice, holds nothing: waiting for it
    would never end, so its videos are ingested here. None on an instance without a queue."""
    if not is_queued_instance(instance):
        return {}

    def will_end(run: dg.DagsterRun) -> bool:
        waiting = run.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)
        return waiting or daemon_up or worker_alive(run)

    held = in_flight(instance, order, counts=will_end)
    return {vid: run_id for vid, run_id in held.items() if vid in due}


def unrecorded_videos(instance: dg.DagsterInstance, storage: LensStorage, videos: dict) -> set[str]:
    """Videos the lake holds but Dagster has no materialisation of (``raw_video``, and ``frames``
    and ``drift_report`` for an ``ok`` video): a process killed after the lake commits and
    before Dagster stored the events, or before the run's drift step. The automation would treat such a partition as missing and hold back everything
    downstream of ``frames``, so the video is ingested again (same bytes, same data version)."""
    table = storage.read_table("videos", columns=["video_id", "status"])
    if table is None:
        return set()
    status = dict(table.iter_rows())
    raw = instance.get_materialized_partitions(dg.AssetKey("raw_video"))
    frames = instance.get_materialized_partitions(dg.AssetKey("frames"))
    drift = instance.get_materialized_partitions(dg.AssetKey("drift_report"))
    return {
        vid
        for vid in videos
        if vid in status
        and (vid not in raw or (status[vid] == "ok" and (vid not in frames or vid not in drift)))
    }


def storage_unreachable(storage: LensStorage, exc: BaseException) -> str:
    """One line naming the store, its endpoint and the error (after the bounded retries)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    where = storage.resolved_root() + (f" at {endpoint}" if endpoint else "")
    detail = " ".join(str(exc).split())
    return f"storage {where} unreachable (gave up after the configured retries): {detail[:400]}"

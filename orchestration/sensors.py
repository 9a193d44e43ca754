"""Sensors and schedules: new videos, new label files and FiftyOne reviews start runs; nightly retraining."""

import hashlib
import json
from collections.abc import Mapping, Sequence

import dagster as dg

from assets.ingest import BATCH as INGEST_BATCH
from lake.landing import LandingProblems, discover_videos, label_files, stale_videos
from lake.partitions import videos_partitions
from lake.resources import FiftyOneResource
from lake.storage import LensStorage
from orchestration.batches import (
    BATCH_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    in_flight,
    plan_batches,
    will_not_open,
)
from orchestration.jobs import ingest_job
from orchestration.launcher import run_workers


def plan_video_runs(
    storage: LensStorage,
    cursor: str | None,
    known: set[str],
    *,
    order: Sequence[str] = (),
    workers: int = 1,
    held: Mapping[str, str] | None = None,
):
    """New partitions, run requests and the next cursor for the videos in the landing zone.

    The cursor maps ``video_id -> "size:mtime"``; a file whose size or mtime changed is
    ingested again (tagged ``lensline/reason=changed``), and so is one that is not complete in
    the lake (e.g. its frames never committed). Also returns the files left out
    (``LandingProblems``: another file already maps to their video id, or they link outside the
    landing zone).

    Several due videos (a backlog: an outage, a box that uploads a day at once) are ingested in
    batches, as ``lensline run`` does (``orchestration.batches``): one run per partition range of
    consecutive videos in ``order`` (the registered partitions; new ones follow in name order),
    at least ``workers`` runs when there are that many videos, at most 8 videos a run, a file that
    is empty or will not open in a run of its own. A batch run that fails is retried one video
    per run by ``ingest_batch_retry_sensor``, since this cursor already counts its videos seen.
    A video that an unfinished run already holds (``held``: ``video_id -> run id``, e.g. a
    ``lensline run`` batch) is left to it and not counted seen: the next tick looks again.
    """
    seen: dict[str, str] = json.loads(cursor) if cursor else {}
    problems = LandingProblems()
    videos = discover_videos(storage, problems=problems)
    new_keys = sorted(set(videos) - known)
    stale = set(stale_videos(storage, videos))  # never ingested, or changed since
    due: dict[str, tuple[str, str]] = {}  # video_id -> (reason, stamp)
    for video_id, f in sorted(videos.items()):
        stamp = f"{f.size}:{f.mtime:.0f}"
        if video_id not in stale or (seen.get(video_id) == stamp and video_id in known):
            seen[video_id] = stamp
            continue
        if held and video_id in held:
            continue  # its run ends first; a later tick sees whether it landed
        due[video_id] = ("changed" if video_id in known else "new", stamp)
        seen[video_id] = stamp
    registered = set(order)
    partitions = [*order, *(k for k in new_keys if k not in registered)]
    batches = (
        plan_batches(
            partitions,
            list(due),
            {vid: videos[vid].size for vid in due},
            workers=max(1, workers),
            max_per_run=INGEST_BATCH.max_partitions_per_run or 1,
            alone=will_not_open(storage, {vid: videos[vid] for vid in due}),
        )
        if len(due) > 1 and set(due) <= set(partitions)
        else [[vid] for vid in due]
    )
    requests = [_ingest_request(batch, due, videos) for batch in batches]
    return new_keys, requests, json.dumps(seen, sort_keys=True), problems


def _ingest_request(batch: list[str], due: dict, videos: dict) -> dg.RunRequest:
    """One video's run (its partition), or a batch's: a partition range, tagged ``lensline/batch``
    so that ``ingest_batch_retry_sensor`` retries it one video per run if it fails."""
    if len(batch) == 1:
        [video_id] = batch
        reason, stamp = due[video_id]
        return dg.RunRequest(
            run_key=f"{video_id}:{stamp}",
            partition_key=video_id,
            tags={"lensline/reason": f"{reason} video", "lensline/source": videos[video_id].key},
        )
    stamps = "\n".join(f"{vid}:{due[vid][1]}" for vid in batch)
    reasons = sorted({due[vid][0] for vid in batch})
    return dg.RunRequest(
        run_key=f"batch:{hashlib.sha256(stamps.encode()).hexdigest()[:16]}",
        tags={
            RANGE_START_TAG: batch[0],
            RANGE_END_TAG: batch[-1],
            BATCH_TAG: json.dumps(batch),  # at most 8 ids: what the retry sensor retries
            "lensline/reason": f"{' and '.join(reasons)} videos ({len(batch)}, one batch)",
        },
    )


@dg.sensor(
    job=ingest_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def new_video_sensor(context: dg.SensorEvaluationContext, storage: LensStorage):
    """Register each new landing/videos/<camera>/<file> as a partition and ingest it (a backlog
    in batches of consecutive videos)."""
    order = context.instance.get_dynamic_partitions(videos_partitions.name)
    new_keys, requests, cursor, problems = plan_video_runs(
        storage, context.cursor, set(order), order=order, workers=run_workers(),
        held=in_flight(context.instance, order),
    )  # fmt: skip
    for message in problems.messages():
        context.log.warning(message)
    if not requests and not new_keys:
        ignored = "; ".join(problems.messages())
        return dg.SkipReason(
            f"no new videos under {storage.uri('landing', 'videos')}"
            + (f"; ignored: {ignored}" if ignored else "")
        )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[videos_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
        cursor=cursor,
    )


def retry_requests(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[dg.RunRequest]:
    """One run request per video of a failed batch run (``lensline/batch``): the rejected video's
    run records why with its checks, the others' ingest as they would have alone. Nothing for a
    run of one video, or a batch that ``lensline run`` started (it retries its own)."""
    if BATCH_TAG not in run.tags or RANGE_START_TAG not in run.tags:
        return []
    registered = set(instance.get_dynamic_partitions(videos_partitions.name))
    # the batch's own list: a partition deleted since (even an end of the range) is skipped,
    # the others are still retried
    batch = [vid for vid in json.loads(run.tags[BATCH_TAG]) if vid in registered]
    return [
        dg.RunRequest(
            run_key=f"retry:{run.run_id}:{video_id}",
            partition_key=video_id,
            tags={"lensline/reason": f"retry of failed batch run {run.run_id[:8]}"},
        )
        for video_id in batch
    ]


@dg.run_failure_sensor(
    monitored_jobs=[ingest_job],
    request_job=ingest_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed batch of new videos (new_video_sensor) is retried one video per run.",
)
def ingest_batch_retry_sensor(context: dg.RunFailureSensorContext):
    """Retry each video of a failed ingestion batch in a run of its own."""
    requests = retry_requests(context.instance, context.dagster_run)
    if not requests:
        return dg.SkipReason(f"run {context.dagster_run.run_id[:8]} is not a sensor's batch")
    return requests


def pending_reviews(fiftyone: FiftyOneResource) -> int:
    """Corrections made in FiftyOne and not imported yet (0 when there is no database)."""
    if not fiftyone.has_database():
        return 0
    fiftyone.connect()
    import fiftyone as fo

    from data_quality.fiftyone_sync import pull_corrections

    if fiftyone.dataset_name not in fo.list_datasets():
        return 0
    return pull_corrections(fiftyone.dataset_name).height


@dg.sensor(
    target=dg.AssetSelection.assets("label_reviews", "labels"),
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def fiftyone_review_sensor(context: dg.SensorEvaluationContext, fiftyone: FiftyOneResource):
    """Reviewers' label edits in FiftyOne become a new label version; the automation sensor
    (orchestration.automation) then retrains what depends on it."""
    pending = pending_reviews(fiftyone)
    if not pending:
        return dg.SkipReason("no new corrections in FiftyOne")
    return dg.RunRequest(
        tags={"lensline/reason": f"{pending} label correction(s) from FiftyOne review"}
    )


DOWNSTREAM_OF_LABELS = dg.AssetSelection.assets("labels").downstream()


def drift_tags(storage: LensStorage) -> dict[str, str]:
    """``lensline/trigger=drift`` tags when drifted videos have frames queued for labels: the
    labels that arrive now are (at least partly) the answer to that drift."""
    queue, drift = storage.read_table("drift_queue"), storage.read_table("drift")
    if queue is None or drift is None or queue.is_empty():
        return {}
    import polars as pl

    hit = drift.filter(
        pl.col("drifted") & pl.col("video_id").is_in(queue["video_id"].unique().implode())
    )
    if hit.is_empty():
        return {}
    return {
        "lensline/trigger": "drift",
        "lensline/video": ",".join(sorted(hit["video_id"].unique().to_list()))[:200],
        "lensline/statistic": ",".join(sorted(hit["statistic"].unique().to_list()))[:200],
    }


@dg.sensor(
    target=dg.AssetSelection.assets("labels"),
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_labels_sensor(context: dg.SensorEvaluationContext, storage: LensStorage):
    """New, changed or removed files in landing/labels re-import labels; the automation sensor
    (orchestration.automation) then rematerialises what depends on their data version."""
    files = label_files(storage)
    stamps = {f.key: f"{f.size}:{f.mtime:.0f}" for f in files}
    before: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    changed = sorted(k for k, v in stamps.items() if before.get(k) != v)
    removed = sorted(set(before) - set(stamps))  # a deleted file is a change: its labels go
    if (
        context.cursor is None
        and files
        and context.instance.get_latest_materialization_event(dg.AssetKey("labels"))
    ):
        context.update_cursor(
            json.dumps(stamps, sort_keys=True)
        )  # first tick after the fact: baseline only
        return dg.SkipReason("recorded the current label files as the baseline")
    if not changed and not removed:
        return dg.SkipReason(f"no new label files under {storage.uri('landing', 'labels')}")
    what = [f"changed: {', '.join(changed)}"] if changed else []
    what += [f"removed: {', '.join(removed)}"] if removed else []
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=":".join(
                    [*(f"{k}@{stamps[k]}" for k in changed), *(f"-{k}" for k in removed)]
                )[:500],
                tags={
                    "lensline/reason": f"label files {'; '.join(what)}"[:250],
                    **drift_tags(storage),
                },
            )
        ],
        cursor=json.dumps(stamps, sort_keys=True),
    )


@dg.sensor(
    target=dg.AssetSelection.assets("shadow_comparison"),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Edge runners' shadow A/B logs (landing/shadow/*.jsonl) refresh shadow_comparison.",
)
def shadow_sensor(context: dg.SensorEvaluationContext, storage: LensStorage):
    """New, changed or removed shadow logs in landing/shadow request a shadow_comparison run."""
    files = storage.list_files("landing", "shadow", suffixes=(".jsonl",))
    stamps = {f.key: f"{f.size}:{f.mtime:.0f}" for f in files}
    if context.cursor and json.loads(context.cursor) == stamps:
        return dg.SkipReason(f"no new shadow logs under {storage.uri('landing', 'shadow')}")
    if not stamps:
        return dg.SensorResult(skip_reason=dg.SkipReason("no shadow logs yet"), cursor="{}")
    cursor = json.dumps(stamps, sort_keys=True)
    digest = hashlib.sha256(cursor.encode()).hexdigest()[:16]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"shadow:{digest}",
                tags={"lensline/reason": f"shadow logs: {', '.join(sorted(stamps))}"[:250]},
            )
        ],
        cursor=cursor,
    )


@dg.sensor(
    target=dg.AssetSelection.assets("capture_requests"),
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Boxes' capture reports (landing/captures/<box>/<camera>/req-*.json) refresh "
    "capture_requests (capture_reports; what each request has sent).",
)
def capture_reports_sensor(context: dg.SensorEvaluationContext, storage: LensStorage):
    """New capture reports from the boxes request a capture_requests run."""
    files = storage.list_files("landing", "captures", suffixes=(".json",))
    keys = sorted(f.key for f in files if f.key.rsplit("/", 1)[-1].startswith("req-"))
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    if not keys or context.cursor == digest:
        return dg.SkipReason(f"no new capture reports under {storage.uri('landing', 'captures')}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"capture_reports:{digest}",
                tags={"lensline/reason": f"{len(keys)} capture report(s) from the boxes"},
            )
        ],
        cursor=digest,
    )


FLEET_RECHECK_S = 60.0
"""With no new heartbeat segment, ``fleet_sensor`` still re-runs ``edge_fleet`` this often, so
that a box that went silent fails ``fleet_reporting`` without anything new arriving."""


@dg.sensor(
    target=dg.AssetSelection.assets("edge_fleet", "line_drift"),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Boxes' heartbeat segments (landing/telemetry/<box>/*.jsonl) refresh edge_fleet "
    "and line_drift; every minute without new ones, edge_fleet re-checks for silent boxes.",
)
def fleet_sensor(context: dg.SensorEvaluationContext, storage: LensStorage):
    """New heartbeat segments in landing/telemetry (or a minute without any, once boxes have
    reported) request edge_fleet and line_drift."""
    import time

    files = storage.list_files("landing", "telemetry", suffixes=(".jsonl",))
    stamps = {f.key: f"{f.size}:{f.mtime:.0f}" for f in files}
    before = json.loads(context.cursor) if context.cursor else {}
    now = time.time()
    if not stamps:
        return dg.SkipReason(f"no heartbeat segments under {storage.uri('landing', 'telemetry')}")
    new = sorted(set(stamps.items()) - set(before.get("stamps", {}).items()))
    if not new and now - before.get("at", 0.0) < FLEET_RECHECK_S:
        return dg.SkipReason("no new heartbeat segments")
    digest = hashlib.sha256(json.dumps([stamps, now]).encode()).hexdigest()[:16]
    reason = f"heartbeats: {', '.join(k for k, _ in new)}" if new else "silence re-check"
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"fleet:{digest}", tags={"lensline/reason": reason[:250]})
        ],
        cursor=json.dumps({"stamps": stamps, "at": now}, sort_keys=True),
    )


retrain_schedule = dg.ScheduleDefinition(
    name="nightly_retrain",
    target=DOWNSTREAM_OF_LABELS,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    tags={"lensline/reason": "scheduled retraining"},
    description="Rebuild labels -> dataset -> model every night (switch on in the UI).",
)

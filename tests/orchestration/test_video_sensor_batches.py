"""new_video_sensor ingests a backlog in batches (partition ranges), and
ingest_batch_retry_sensor retries a failed batch one video per run: evaluated directly, their
run requests executed as real runs of the ingest_video job."""

from __future__ import annotations

import json

import dagster as dg

from lake.storage import LensStorage
from orchestration.batches import BATCH_TAG, RANGE_END_TAG, RANGE_START_TAG
from orchestration.definitions import defs
from orchestration.sensors import (
    ingest_batch_retry_sensor,
    new_video_sensor,
    plan_video_runs,
)
from tests.conftest import corrupt_in_the_middle


def _sensor(instance, cursor=None):
    return new_video_sensor(
        dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"storage": LensStorage()}
        )
    )


def _execute(instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run a request as the daemon would: its tags (a range) or its partition."""
    return defs.resolve_job_def("ingest_video").execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        raise_on_error=False,
    )


def test_a_backlog_is_one_batch_and_a_failed_batch_is_retried_one_video_per_run(
    home, write_video, monkeypatch
):
    monkeypatch.setenv("LENSLINE_RUN_WORKERS", "1")
    write_video(home / "landing/videos/cam1/a.mp4", 10)
    corrupt_in_the_middle(home / "landing/videos/cam1/c.mp4")
    write_video(home / "landing/videos/cam1/d.mp4", 10)
    with dg.DagsterInstance.get() as instance:
        result = _sensor(instance)
        [request] = result.run_requests
        assert request.partition_key is None
        assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
            "cam1__a",
            "cam1__d",
        )
        assert json.loads(request.tags[BATCH_TAG]) == ["cam1__a", "cam1__c", "cam1__d"]
        assert request.run_key.startswith("batch:")
        [add] = result.dynamic_partitions_requests
        instance.add_dynamic_partitions("videos", add.partition_keys)

        batch = _execute(instance, request)
        assert not batch.success  # cam1__c is rejected by name; nothing of the batch recorded
        assert instance.get_materialized_partitions(dg.AssetKey("frames")) == set()
        # the cursor counts the three seen: the next tick asks for nothing ...
        assert isinstance(_sensor(instance, cursor=result.cursor), dg.SkipReason)

        # ... and the failure sensor retries each video in a run of its own
        failure = instance.all_logs(batch.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="ingest_batch_retry_sensor",
            dagster_instance=instance,
            dagster_run=batch.dagster_run,
            dagster_event=failure[0].dagster_event,
        ).for_run_failure()
        retries = ingest_batch_retry_sensor(context)
        assert [r.partition_key for r in retries] == ["cam1__a", "cam1__c", "cam1__d"]
        assert len({r.run_key for r in retries}) == 3
        instance.delete_dynamic_partition("videos", "cam1__d")  # an end of the range gone:
        gone = ingest_batch_retry_sensor(context)  # the rest of the batch is still retried
        assert [r.partition_key for r in gone] == ["cam1__a", "cam1__c"]
        instance.add_dynamic_partitions("videos", ["cam1__d"])
        outcomes = {r.partition_key: _execute(instance, r).success for r in retries}
        assert outcomes == {"cam1__a": True, "cam1__c": False, "cam1__d": True}
        assert instance.get_materialized_partitions(dg.AssetKey("frames")) == {
            "cam1__a",
            "cam1__d",
        }
        # a single video's failed run (the corrupt one) is not retried again
        [single] = instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/partition": "cam1__c"}), limit=1
        )
        again = dg.build_run_status_sensor_context(
            sensor_name="ingest_batch_retry_sensor",
            dagster_instance=instance,
            dagster_run=single,
            dagster_event=failure[0].dagster_event,
        ).for_run_failure()
        assert isinstance(ingest_batch_retry_sensor(again), dg.SkipReason)
    rows = LensStorage().read_table("videos").sort("video_id")
    assert dict(zip(rows["video_id"], rows["status"], strict=True)) == {
        "cam1__a": "ok",
        "cam1__c": "corrupt",
        "cam1__d": "ok",
    }


def test_batches_follow_the_partitions_and_keep_bad_files_alone(home, write_video):
    for name in ("a", "b", "d", "e", "f"):
        write_video(home / f"landing/videos/cam1/{name}.mp4", 4)
    (home / "landing/videos/cam1/c.mp4").write_bytes(b"")  # zero bytes: a run of its own
    storage = LensStorage()
    _, requests, _, _ = plan_video_runs(storage, None, set(), workers=2)
    spans = [
        (r.partition_key,)
        if r.partition_key
        else (r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG], len(json.loads(r.tags[BATCH_TAG])))
        for r in requests
    ]
    assert spans == [("cam1__a", "cam1__b", 2), ("cam1__c",), ("cam1__d", "cam1__f", 3)]
    # one due video, or one worker's worth: the run of one partition, as before
    _, one, _, _ = plan_video_runs(storage, None, set(), workers=8)
    assert all(r.partition_key for r in one) and len(one) == 6
    # registered partitions keep their order; a video not yet due is never inside a range
    order = ["cam1__f", "cam1__e", "cam1__d", "cam1__c", "cam1__b", "cam1__a"]
    _, ranged, _, _ = plan_video_runs(storage, None, set(order), order=order, workers=1)
    assert [(r.tags.get(RANGE_START_TAG), r.tags.get(RANGE_END_TAG)) for r in ranged] == [
        ("cam1__f", "cam1__d"),
        (None, None),
        ("cam1__b", "cam1__a"),
    ]


def test_a_batch_run_records_every_video_of_its_range(home, write_video, monkeypatch):
    monkeypatch.setenv("LENSLINE_RUN_WORKERS", "1")
    for name in ("a", "b"):
        write_video(home / f"landing/videos/cam2/{name}.mp4", 6)
    with dg.DagsterInstance.get() as instance:
        result = _sensor(instance)
        instance.add_dynamic_partitions(
            "videos", result.dynamic_partitions_requests[0].partition_keys
        )
        [request] = result.run_requests
        assert _execute(instance, request).success
        assert instance.get_materialized_partitions(dg.AssetKey("frames")) == {
            "cam2__a",
            "cam2__b",
        }
        assert isinstance(_sensor(instance, cursor=result.cursor), dg.SkipReason)
        assert isinstance(_sensor(instance), dg.SkipReason)  # a fresh cursor: the lake has both


def test_videos_an_unfinished_run_holds_are_left_to_it(home, write_video, monkeypatch):
    """Dagster's one-run-per-partition limit does not see ranges: a sensor tick and lensline run
    each leave the videos of another client's unfinished batch to it."""
    from orchestration.batches import in_flight
    from orchestration.queue import QueueClient
    from orchestration.runner import run_pending

    monkeypatch.setenv("LENSLINE_RUN_WORKERS", "1")
    for name in ("a", "b", "c"):
        write_video(home / f"landing/videos/cam1/{name}.mp4", 6)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", ["cam1__a", "cam1__b", "cam1__c"])
        job = defs.resolve_job_def("ingest_video")
        with QueueClient(defs, instance) as other:  # a sensor's batch, queued, not yet run
            held = other.submit(job, partition_range=("cam1__a", "cam1__b"), tags={BATCH_TAG: "2"})
        order = instance.get_dynamic_partitions("videos")
        assert in_flight(instance, order) == {"cam1__a": held, "cam1__b": held}
        _, requests, cursor, _ = plan_video_runs(
            LensStorage(), None, set(order), order=order, held=in_flight(instance, order)
        )
        assert [r.partition_key for r in requests] == ["cam1__c"]
        assert set(json.loads(cursor)) == {"cam1__c"}  # the held ones are looked at again

        summary = run_pending(defs, instance, select="key:raw_video")
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_video"))
        assert len(runs) == 2  # the held batch (executed, not duplicated) and cam1__c's run
        assert instance.get_run_by_id(held).status == dg.DagsterRunStatus.SUCCESS
        assert {o.video_id: o.status for o in summary.ingested} == {
            "cam1__a": "ok",
            "cam1__b": "ok",
            "cam1__c": "ok",
        }
        assert in_flight(instance, order) == {}


def test_a_foreign_run_nobody_executes_holds_nothing(home, write_video, monkeypatch):
    """A sensor's batch left STARTED by a dead run worker of lensline run is marked failed; one
    left STARTED with no daemon and no worker holds nothing: lensline run ingests its videos
    instead of waiting for ever."""
    import socket

    from orchestration.runner import run_pending

    monkeypatch.setenv("LENSLINE_RUN_WORKERS", "1")
    for name in ("a", "b"):
        write_video(home / f"landing/videos/cam1/{name}.mp4", 6)
    batch = {
        RANGE_START_TAG: "cam1__a",
        RANGE_END_TAG: "cam1__b",
        BATCH_TAG: json.dumps(["cam1__a", "cam1__b"]),
    }
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", ["cam1__a", "cam1__b"])
        worker_died = dg.DagsterRun(
            job_name="ingest_video",
            run_id="deadbeef-0000-0000-0000-00000000000a",
            status=dg.DagsterRunStatus.STARTED,
            tags={
                **batch,
                "lensline/worker_pid": "999999999",
                "lensline/worker_host": socket.gethostname(),
            },
        )
        orphan = dg.DagsterRun(
            job_name="ingest_video",
            run_id="deadbeef-0000-0000-0000-00000000000b",
            status=dg.DagsterRunStatus.STARTED,
            tags=batch,
        )
        instance.add_run(worker_died)
        instance.add_run(orphan)
        summary = run_pending(defs, instance, select="key:raw_video")
        assert summary.recovered_runs == [worker_died.run_id]  # the orphan is not ours to fail
        assert instance.get_run_by_id(worker_died.run_id).status == dg.DagsterRunStatus.FAILURE
        assert {o.video_id: o.status for o in summary.ingested} == {
            "cam1__a": "ok",
            "cam1__b": "ok",
        }

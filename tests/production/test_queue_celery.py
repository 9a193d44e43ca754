"""The production profile's run queue with `lensline run` as its client: the runs are QUEUED in
PostgreSQL, admitted by the lake's pools, and their steps execute in two real
``dagster-celery`` workers (Redis broker) side by side."""

from __future__ import annotations

import os
import subprocess

import dagster as dg
import pytest

from lake.storage import LensStorage
from orchestration.profiles import write_profile
from tests.orchestration.test_runner import lensline_exe
from tests.production.conftest import celery_worker


@pytest.mark.slow
def test_lensline_run_queues_in_postgres_and_two_celery_workers_ingest_side_by_side(
    home, postgres, redis_url, monkeypatch, tmp_path, write_video
):
    backend = redis_url.rsplit("/", 1)[0] + "/1"
    monkeypatch.setenv("LENSLINE_EXECUTOR", "celery")
    monkeypatch.setenv("LENSLINE_CELERY_BROKER", redis_url)
    monkeypatch.setenv("LENSLINE_CELERY_BACKEND", backend)
    monkeypatch.setenv("LENSLINE_RUN_WORKERS", "4")  # two per Celery worker
    write_profile(home / "dagster", "production", force=True)
    for i in range(8):
        write_video(home / f"landing/videos/cam{i % 2 + 1}/v{i}.mp4", 120, size=(320, 240))

    with (
        celery_worker(redis_url, backend, tmp_path, suffix="-a") as first,
        celery_worker(redis_url, backend, tmp_path, suffix="-b") as second,
    ):
        out = subprocess.run(
            [lensline_exe(), "run", "--select", "key:raw_video"],
            env=dict(os.environ),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        worker_pids = {"a": first.pids(), "b": second.pids()}

    assert LensStorage().read_table("videos")["status"].to_list() == ["ok"] * 8
    rows = postgres.query("SELECT run_id, status FROM runs WHERE pipeline_name = 'ingest_video'")
    # four batches (partition ranges) of two videos, one per run worker
    assert len(rows) == 4 and {status for _, status in rows} == {"SUCCESS"}  # in Postgres
    windows = []
    with dg.DagsterInstance.get() as instance:
        for run_id, _ in rows:
            run = instance.get_run_by_id(run_id)
            assert "dagster/asset_partition_range_start" in run.tags
            logs = [e for e in instance.all_logs(run_id) if e.dagster_event]
            types = [e.dagster_event.event_type_value for e in logs]
            assert types.index("PIPELINE_ENQUEUED") < types.index("PIPELINE_STARTING")
            starts = {
                e.dagster_event.step_key: e
                for e in logs
                if e.dagster_event.event_type_value == "STEP_START"
            }
            for e in logs:  # each step's window and the Celery worker that executed it
                if e.dagster_event.event_type_value == "STEP_SUCCESS":
                    start = starts[e.dagster_event.step_key]
                    pid = start.dagster_event.pid
                    owner = next(k for k, pids in worker_pids.items() if pid in pids)
                    windows.append((start.timestamp, e.timestamp, owner))
        partitions = instance.get_materialized_partitions(dg.AssetKey("drift_report"))
        assert partitions == {f"cam{i % 2 + 1}__v{i}" for i in range(8)}
    assert {w for *_, w in windows} == {"a", "b"}, windows  # both workers took steps
    assert any(a[2] != b[2] and a[0] < b[1] and b[0] < a[1] for a in windows for b in windows), (
        windows
    )  # two steps in the two workers at the same moment

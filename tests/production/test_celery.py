"""The production profile end to end on 127.0.0.1: a video lands in S3 (moto server), the
new-video sensor asks for its ingestion, the run's steps execute in a real ``dagster-celery
worker`` (Redis broker), the rows land in the S3 lake and the run is in PostgreSQL."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from lake.storage import LensStorage
from orchestration.executors import ExecutorConfigError, choose
from orchestration.profiles import write_profile
from orchestration.sensors import new_video_sensor
from tests.production.conftest import celery_worker


def test_choose_reads_run_config_then_environment(monkeypatch):
    monkeypatch.delenv("LENSLINE_EXECUTOR", raising=False)
    assert choose({}) == ("in_process", {})
    monkeypatch.setenv("LENSLINE_EXECUTOR", "multiprocess")
    monkeypatch.setenv("LENSLINE_MAX_CONCURRENT", "3")
    assert choose({}) == ("multiprocess", {"max_concurrent": 3})
    assert choose({"kind": "in_process"})[0] == "in_process"
    monkeypatch.setenv("LENSLINE_EXECUTOR", "celery")
    with pytest.raises(ExecutorConfigError, match="LENSLINE_CELERY_BROKER"):
        choose({})
    monkeypatch.setenv("LENSLINE_CELERY_BROKER", "redis://127.0.0.1:1/0")
    monkeypatch.delenv("LENSLINE_CELERY_POLL_S", raising=False)
    assert choose({}) == (
        "celery",
        {"broker": "redis://127.0.0.1:1/0", "backend": "rpc://", "poll_seconds": 0.1},
    )
    assert choose({"poll_seconds": "0.5"})[1]["poll_seconds"] == 0.5
    for bad in ("0", "soon", "60"):
        monkeypatch.setenv("LENSLINE_CELERY_POLL_S", bad)
        with pytest.raises(ExecutorConfigError, match=f"LENSLINE_CELERY_POLL_S='{bad}'.*seconds"):
            choose({})
    monkeypatch.delenv("LENSLINE_CELERY_POLL_S")
    monkeypatch.setenv("LENSLINE_EXECUTOR", "dask")
    with pytest.raises(ExecutorConfigError, match="in_process, multiprocess, celery"):
        choose({})


@pytest.mark.slow
def test_multiprocess_kind_runs_steps_in_child_processes(home, monkeypatch, write_video):
    """Configuration only: LENSLINE_EXECUTOR=multiprocess, same job, steps in other processes."""
    import os

    from tests.production.celery_defs import ingest_video_job

    monkeypatch.setenv("LENSLINE_EXECUTOR", "multiprocess")
    write_profile(home / "dagster", "embedded", force=True)
    write_video(home / "landing/videos/cam1/a.mp4", 20)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", ["cam1__a"])
        result = dg.execute_job(
            dg.reconstructable(ingest_video_job), instance, tags={"dagster/partition": "cam1__a"}
        )
        assert result.success
        pids = {e.pid for e in result.all_events if e.is_step_start}
    assert pids and os.getpid() not in pids
    assert LensStorage().read_table("frames").height >= 2


@pytest.mark.slow
def test_sensor_run_executes_in_celery_worker(
    home, s3_env, postgres, redis_url, monkeypatch, tmp_path, write_video
):
    from tests.production.celery_defs import ingest_video_job

    backend = redis_url.rsplit("/", 1)[0] + "/1"
    monkeypatch.setenv("LENSLINE_EXECUTOR", "celery")
    monkeypatch.setenv("LENSLINE_CELERY_BROKER", redis_url)
    monkeypatch.setenv("LENSLINE_CELERY_BACKEND", backend)
    write_profile(home / "dagster", "production", force=True)
    storage = LensStorage()
    video = write_video(tmp_path / "a.mp4", 20)
    storage.put_file(video, storage.uri("landing", "videos", "cam1", "a.mp4"))

    started = time.perf_counter()
    with celery_worker(redis_url, backend, tmp_path) as worker:
        ready = time.perf_counter() - started
        with dg.DagsterInstance.get() as instance:
            context = dg.build_sensor_context(instance=instance, resources={"storage": storage})
            result = new_video_sensor(context)
            assert isinstance(result, dg.SensorResult) and len(result.run_requests or []) == 1
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            request = result.run_requests[0]
            with dg.execute_job(
                dg.reconstructable(ingest_video_job),
                instance,
                run_config=request.run_config,
                tags={**request.tags, "dagster/partition": request.partition_key},
            ) as run:
                assert run.success, worker.log.read_text()[-3000:]
                steps = {e.step_key: e.pid for e in run.all_events if e.is_step_start}
                hosts = {
                    e.event_specific_data.metadata["Celery worker"].value
                    for e in run.all_events
                    if e.is_engine_event
                    and e.event_specific_data
                    and "Celery worker" in e.event_specific_data.metadata
                }
                run_id = run.run_id
            worker_pids = worker.pids()
        elapsed = time.perf_counter() - started
    assert steps and set(steps.values()) <= worker_pids, (steps, worker_pids)
    assert hosts and all(h.startswith(worker.name + "@") for h in hosts)
    frames = storage.read_table("frames")
    assert frames is not None and frames.height >= 2
    assert storage.read_table("videos")["status"].to_list() == ["ok"]
    assert postgres.query(f"SELECT status FROM runs WHERE run_id = '{run_id}'") == [("SUCCESS",)]
    assert not (home / "lake").exists()  # the lake is in S3
    print(f"celery worker ready {ready:.1f}s; sensor -> run done {elapsed - ready:.1f}s")


def test_celery_app_is_dagster_celerys_with_the_code_location_preloaded():
    """``-A orchestration.celery_app``: dagster-celery's three tasks on its app, and what a step
    imports loaded before the worker forks its pool (in a fresh interpreter, as a worker)."""
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import sys, orchestration.celery_app as c, dagster_celery.app as d;"
        "print(c.app is d.app, sorted(n for n in c.app.tasks if not n.startswith('celery.')),"
        "all(m in sys.modules for m in ['orchestration.definitions', 'data_quality.drift',"
        "'scipy.stats', 'dagster_postgres']))"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        "True",
        "['execute_job',",
        "'execute_plan',",
        "'resume_job']",
        "True",
    ]

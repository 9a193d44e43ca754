"""lensline run as a client of the instance's run queue (orchestration.queue): its runs are
QUEUED in the instance and admitted by the lake's pools (lake.pools), whoever created them."""

from __future__ import annotations

import os
import subprocess

import dagster as dg
import polars as pl
import pytest

from lake import pools
from lake.storage import LensStorage
from orchestration.dagster_internals import (
    ConfigurableClass,
    ConfigurableClassData,
    QueuedRunCoordinatorDaemon,
    RunLauncher,
)
from orchestration.instance_home import INSTANCE_YAML
from orchestration.launcher import run_workers
from orchestration.queue import QUIET, QueueClient, _Workspace, daemon_alive
from tests.orchestration.test_runner import lensline_exe

LAUNCHED: list[str] = []


class HoldingLauncher(RunLauncher, ConfigurableClass):
    """Records what the queue admits and starts nothing: the admitted runs stay in progress."""

    def __init__(self, inst_data=None):
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self):
        return self._inst_data

    @classmethod
    def config_type(cls):
        return {}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data)

    def launch_run(self, context) -> None:
        LAUNCHED.append(context.dagster_run.run_id)

    def terminate(self, run_id: str) -> bool:
        return False


@dg.asset(pool=pools.GRAPH)
def graph_a() -> None: ...


@dg.asset(pool=pools.GRAPH)
def graph_b() -> None: ...


@dg.asset(pool=pools.INGEST)
def ingest_a() -> None: ...


@dg.asset(pool=pools.INGEST)
def ingest_b() -> None: ...


@dg.asset(pool=pools.FLEET)
def fleet_a() -> None: ...


DEFS = dg.Definitions(assets=[graph_a, graph_b, ingest_a, ingest_b, fleet_a])


def _admit_once(instance: dg.DagsterInstance) -> list[str]:
    """One pass of Dagster's queue daemon over ``instance`` with the holding launcher."""
    LAUNCHED.clear()
    data = ConfigurableClassData("tests.orchestration.test_queue", "HoldingLauncher", "{}\n")
    driver = dg.DagsterInstance.from_ref(instance.get_ref()._replace(run_launcher_data=data))
    with QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
        list(daemon.run_iteration(_Workspace(driver)))  # type: ignore[arg-type]
    return list(LAUNCHED)


def test_the_pools_admit_ingestion_side_by_side_and_the_graph_one_at_a_time(home):
    (home / "dagster/dagster.yaml").write_text(INSTANCE_YAML)
    job = DEFS.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance, QueueClient(DEFS, instance) as queue:

        def submit(key: str) -> str:
            return queue.submit(job, asset_selection=[dg.AssetKey(key)], tags={}, run_config=QUIET)

        first_graph, second_graph = submit("graph_a"), submit("graph_b")
        ingests = [submit("ingest_a"), submit("ingest_b")]
        fleet = submit("fleet_a")
        statuses = {r.run_id: r.status for r in instance.get_runs()}
        assert set(statuses.values()) == {dg.DagsterRunStatus.QUEUED}  # in the UI's queue
        admitted = _admit_once(instance)
        # one lake_graph writer; both ingestion runs; the fleet beside them all
        assert set(admitted) == {first_graph, *ingests, fleet}
        assert instance.get_run_by_id(second_graph).status == dg.DagsterRunStatus.QUEUED
        assert _admit_once(instance) == []  # still held: the first graph run is in progress

        instance.report_run_failed(instance.get_run_by_id(first_graph))  # it ends
        assert _admit_once(instance) == [second_graph]
        # the slots are the instance's: an operator's limit holds for every client
        assert {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()} == {
            pools.INGEST: pools.INGEST_SLOTS,
            pools.GRAPH: 1,
            pools.FLEET: 1,
        }


def test_one_run_per_video_at_a_time(home):
    """A sensor's and lensline run's ingestion of one new video never overlap; two videos do."""
    (home / "dagster/dagster.yaml").write_text(INSTANCE_YAML)
    parts = dg.DynamicPartitionsDefinition(name="videos")

    @dg.asset(pool=pools.INGEST, partitions_def=parts)
    def video() -> None: ...

    defs = dg.Definitions(assets=[video], jobs=[dg.define_asset_job("ingest", [video])])
    job = defs.resolve_job_def("ingest")
    with dg.DagsterInstance.get() as instance, QueueClient(defs, instance) as queue:
        instance.add_dynamic_partitions("videos", ["a", "b"])
        first = queue.submit(job, partition_key="a", tags={})
        again = queue.submit(job, partition_key="a", tags={"dagster/sensor_name": "new_video"})
        other = queue.submit(job, partition_key="b", tags={})
        assert set(_admit_once(instance)) == {first, other}
        assert instance.get_run_by_id(again).status == dg.DagsterRunStatus.QUEUED


def test_a_sensors_run_waits_behind_lensline_runs_graph_run(home):
    """A run another client queued (as a sensor's RunRequest would) obeys the same pool."""
    (home / "dagster/dagster.yaml").write_text(INSTANCE_YAML)
    job = DEFS.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        with QueueClient(DEFS, instance) as ours:
            mine = ours.submit(job, asset_selection=[dg.AssetKey("graph_a")], tags={})
        with QueueClient(DEFS, instance) as sensor:
            theirs = sensor.submit(
                job, asset_selection=[dg.AssetKey("graph_b")], tags={"dagster/sensor_name": "x"}
            )
        assert _admit_once(instance) == [mine]
        assert instance.get_run_by_id(theirs).status == dg.DagsterRunStatus.QUEUED


def test_settings_and_no_daemon(home, monkeypatch):
    monkeypatch.setenv("LENSLINE_RUN_WORKERS", "3")
    assert run_workers() == 3
    monkeypatch.setenv("LENSLINE_RUN_WORKERS", "none")
    with pytest.raises(ValueError, match="LENSLINE_RUN_WORKERS='none' is not a whole number"):
        run_workers()
    with dg.DagsterInstance.get() as instance:
        assert not daemon_alive(instance)  # so lensline run drives the queue itself


@pytest.mark.slow
def test_lensline_run_ingests_in_two_run_workers_side_by_side(home, write_video):
    """The CLI as a user runs it: 4 videos in two batches (partition-range runs of 2 videos),
    QUEUED then executed by two run workers whose ingestion steps overlap in time; every video
    complete in the lake and recorded as its own partition."""
    for i in range(4):
        write_video(home / f"landing/videos/cam{i % 2 + 1}/v{i}.mp4", 240, size=(320, 240))
    env = {**os.environ, "LENSLINE_RUN_WORKERS": "2"}
    out = subprocess.run(
        [lensline_exe(), "run", "--select", "key:raw_video"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    storage = LensStorage()
    assert storage.read_table("videos")["status"].to_list() == ["ok"] * 4
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_video"))
        assert len(runs) == 2 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        ranges = sorted(
            (
                r.tags["dagster/asset_partition_range_start"],
                r.tags["dagster/asset_partition_range_end"],
            )
            for r in runs
        )
        assert ranges == [("cam1__v0", "cam1__v2"), ("cam2__v1", "cam2__v3")]
        for key in ("raw_video", "frames", "drift_report"):
            done = instance.get_materialized_partitions(dg.AssetKey(key))
            assert done == {"cam1__v0", "cam1__v2", "cam2__v1", "cam2__v3"}, key
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(dg.AssetKey("frames"), asset_partitions=["cam2__v1"]), limit=1
        ).records[0]
        meta = record.asset_materialization.metadata  # the video's own numbers, not the batch's
        assert (
            meta["frames"].value
            == storage.read_table("frames").filter(pl.col("video_id") == "cam2__v1").height
        )
        windows = []
        for run in runs:
            types = [
                e.dagster_event.event_type_value
                for e in instance.all_logs(run.run_id)
                if e.dagster_event
            ]
            assert types.index("PIPELINE_ENQUEUED") < types.index("PIPELINE_STARTING")  # queued
            logs = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
            start = next(e for e in logs if e.dagster_event.event_type_value == "STEP_START")
            end = [e for e in logs if e.dagster_event.event_type_value == "STEP_SUCCESS"][-1]
            windows.append((start.timestamp, end.timestamp, start.dagster_event.pid))
            assert int(run.tags["lensline/worker_pid"]) == start.dagster_event.pid  # a run worker
    assert len({pid for *_, pid in windows}) == 2  # two run workers
    assert any(a[2] != b[2] and a[0] < b[1] and b[0] < a[1] for a in windows for b in windows), (
        windows
    )  # two videos were being ingested at the same moment
    print(
        f"ingestion windows: {[(round(a - windows[0][0], 2), round(b - windows[0][0], 2)) for a, b, _ in windows]}"
    )

"""The Dagster instance of a Lensline home: the ``dagster.yaml`` Lensline writes, and the runs a
killed ``lensline run`` left behind (split from ``orchestration.runner``).

``prepare_instance_home`` points ``DAGSTER_HOME`` at ``<LENSLINE_HOME>/dagster`` and writes the
embedded profile's instance (SQLite; the run queue admitting runs by the lake's pools,
``lake.pools``) unless one is there; what an earlier Lensline wrote is upgraded in place.
``fail_dead_runs`` marks the runs of a dead ``lensline run`` (its client or its run worker gone)
failed, so the next one starts from a true picture.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg

from edge_export.fsutil import process_alive
from lake.storage import lensline_home
from orchestration.launcher import WORKER_HOST_TAG, WORKER_PID_TAG

RUNNER_TRIGGER = "lensline run"  # the lensline/trigger tag of lensline run's runs

# the instance Lensline creates: no telemetry, run monitoring, and the run queue admitting runs by
# the lake's concurrency pools (lake.pools: one graph writer, ingestion of several videos at once)
# and one run per video at a time (a sensor's and lensline run's runs of one new video)
INSTANCE_YAML = """telemetry:
  enabled: false
run_monitoring:
  enabled: true
run_queue: {}
concurrency:
  runs:
    max_concurrent_runs: 10
    tag_concurrency_limits:
      - key: "dagster/partition"
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    granularity: run
    default_limit: 1
"""
# what earlier Lensline versions wrote (one global lake-writer tag): replaced by INSTANCE_YAML
PREVIOUS_INSTANCE_YAMLS = (
    """telemetry:
  enabled: false
run_monitoring:
  enabled: true
run_queue:
  tag_concurrency_limits:
    - key: "lensline/lake"
      value: "writer"
      limit: 1
""",
)


def prepare_instance_home(home: Path | None = None) -> Path:
    """Point ``DAGSTER_HOME`` at ``<LENSLINE_HOME>/dagster`` (SQLite) unless already set."""
    if os.environ.get("DAGSTER_HOME"):
        path = Path(os.environ["DAGSTER_HOME"])
    else:
        path = (home or lensline_home()) / "dagster"
        os.environ["DAGSTER_HOME"] = str(path)
    path.mkdir(parents=True, exist_ok=True)
    yaml = path / "dagster.yaml"
    if not yaml.exists() or yaml.read_text() in PREVIOUS_INSTANCE_YAMLS:
        from edge_export.fsutil import atomic_write

        with atomic_write(yaml, "w") as f:  # Lensline's own earlier default: upgraded in place
            f.write(INSTANCE_YAML)
    return path


def worker_alive(run: dg.DagsterRun) -> bool:
    """A run worker of ``lensline run`` on this host is executing ``run`` (its recorded pid
    runs)."""
    pid, host = run.tags.get(WORKER_PID_TAG), run.tags.get(WORKER_HOST_TAG)
    return bool(pid) and host == socket.gethostname() and process_alive(int(pid))  # type: ignore[arg-type]


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark runs of ``lensline run`` left QUEUED, STARTING or STARTED by a killed process as
    failed (queued ones as canceled: the next run plans its own), and other clients' runs (a
    sensor's, queued while no daemon ran) that a dead run worker of ``lensline run`` was
    executing.

    Call it holding the home's writer lock: no other ``lensline run`` of this home is alive then,
    so such a run is dead unless its recorded client (``lensline/pid`` on this host) or the run
    worker executing it (``lensline/worker_pid``) still runs. Runs launched by ``dagster dev`` are
    left to Dagster's run monitoring (enabled in the instance Lensline creates). Returns the ids
    of the runs marked.
    """
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.STARTED,
                dg.DagsterRunStatus.STARTING,
            ]
        )
    )
    failed = []
    for run in runs:
        if run.tags.get("lensline/trigger") != RUNNER_TRIGGER:
            # another client's run: ours to judge only if our run worker took it and died
            if run.tags.get(WORKER_HOST_TAG) != socket.gethostname() or worker_alive(run):
                continue
            instance.report_run_failed(
                run,
                message=f"the lensline run worker executing it (pid {run.tags.get(WORKER_PID_TAG)}) "
                "died before the run finished; marked failed by the next lensline run",
            )
            failed.append(run.run_id)
            continue
        pid, host = run.tags.get("lensline/pid"), run.tags.get("lensline/host")
        worker = run.tags.get(WORKER_PID_TAG)
        here = host == socket.gethostname()
        if here and any(p and process_alive(int(p)) for p in (pid, worker)):
            continue  # its client, or the run worker executing it, still runs
        why = (
            f"the lensline run process (pid {pid or 'unknown'} on {host or 'unknown'}) died "
            "before the run finished"
        )
        if run.status == dg.DagsterRunStatus.QUEUED:
            instance.report_run_canceled(run, message=f"{why}; canceled by the next lensline run")
        else:
            instance.report_run_failed(
                run, message=f"{why}; marked failed by the next lensline run"
            )
        failed.append(run.run_id)
    return failed

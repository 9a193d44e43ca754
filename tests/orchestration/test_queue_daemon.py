"""With a ``dagster-daemon`` of the instance running (as ``lensline ui`` starts it), ``lensline
run`` only submits: the daemon dequeues its runs and launches them with the instance's run
launcher, found through the same code location name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from lake.storage import LensStorage
from orchestration.instance_home import INSTANCE_YAML, RUNNER_TRIGGER
from orchestration.launcher import LOCATION, MODULE, REPO_ROOT
from orchestration.queue import daemon_alive
from tests.orchestration.test_runner import lensline_exe


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_running_daemon_launches_lensline_runs_runs(home, write_video, tmp_path):
    (home / "dagster/dagster.yaml").write_text(INSTANCE_YAML)
    for i in range(2):
        write_video(home / f"landing/videos/cam1/v{i}.mp4", 30)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_module:\n      module_name: {MODULE}\n"
        f"      location_name: {LOCATION}\n      working_directory: {REPO_ROOT}\n"
    )
    with dg.DagsterInstance.get() as instance:  # its SQLite schema, before two processes race
        instance.get_runs(limit=1)
    # new_video_sensor would ingest the videos first, and lensline run leaves what another
    # client's run holds to it (orchestration.batches.in_flight): this test is about lensline
    # run's own runs, so the sensor is stopped the way an operator would
    stop = [str(Path(sys.executable).parent / "dagster"), "sensor", "stop", "new_video_sensor"]
    subprocess.run([*stop, "-w", str(workspace)], cwd=tmp_path, check=True, capture_output=True)
    exe = str(Path(sys.executable).parent / "dagster-daemon")
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 (closed below)
    daemon = subprocess.Popen(
        [exe, "run", "-w", str(workspace)],
        cwd=tmp_path,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with dg.DagsterInstance.get() as instance:
            deadline = time.time() + 180
            while not daemon_alive(instance):
                assert daemon.poll() is None and time.time() < deadline, (
                    tmp_path / "daemon.log"
                ).read_text()[-3000:]
                time.sleep(1)
        out = subprocess.run(
            [lensline_exe(), "run", "--select", "key:raw_video"],
            env=dict(os.environ),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
        log.close()
    assert LensStorage().read_table("videos")["status"].to_list() == ["ok", "ok"]
    with dg.DagsterInstance.get() as instance:
        ours = instance.get_runs(filters=dg.RunsFilter(tags={"lensline/trigger": RUNNER_TRIGGER}))
        assert len(ours) == 2 and {r.status for r in ours} == {dg.DagsterRunStatus.SUCCESS}
        for run in ours:
            assert "lensline/worker_pid" not in run.tags  # not lensline run's own workers
            messages = [e.message or "" for e in instance.all_logs(run.run_id)]
            assert any("Started process for run" in m for m in messages), messages

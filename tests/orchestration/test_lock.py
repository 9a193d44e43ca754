"""One writer per home (issue 7.5): two real processes on a local home, and the S3 lock on moto."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lake.storage import LensStorage
from orchestration.lock import HomeLocked, LocalLock, S3Lock, home_lock

HOLD = """
import sys, time
from orchestration.lock import home_lock
with home_lock().hold():
    print("held", flush=True)
    sys.stdin.readline()  # until the test closes stdin (or the process is killed)
    print(f"released {time.time()}", flush=True)
"""


def lensline_exe() -> str:
    return shutil.which("lensline") or str(Path(sys.executable).parent / "lensline")


def hold_in_subprocess() -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_lensline_run_waits_or_exits_with_no_wait(home, write_video):
    write_video(home / "landing/videos/cam1/a.mp4", 6)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    holder = hold_in_subprocess()
    try:
        assert isinstance(home_lock(), LocalLock)
        with pytest.raises(HomeLocked, match=f"pid {holder.pid}"), home_lock().hold(wait=False):
            pass
        refused = subprocess.run(
            [lensline_exe(), "run", "--no-wait", "--select", "group:ingest"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1
        out = " ".join(refused.stdout.split())
        assert f"pid {holder.pid}" in out and "--no-wait" in out
        assert not (home / "lake/videos").exists()  # it wrote nothing

        waiting = subprocess.Popen(
            [lensline_exe(), "run", "--select", "group:ingest"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first_line = waiting.stdout.readline()  # printed while it waits
        assert f"held by pid {holder.pid}" in first_line
        holder.stdin.close()
        released = float(holder.stdout.readline().split()[1])
        got = ""
        while "got " not in got and waiting.poll() is None:
            got = waiting.stdout.readline()
        handoff = time.time() - released
        rest, err = waiting.communicate(timeout=180)
        rest = got + rest
    finally:
        holder.kill()
        holder.wait()
    waited = subprocess.CompletedProcess(waiting.args, waiting.returncode, first_line + rest, err)
    assert waited.returncode == 0, waited.stdout[-2000:] + waited.stderr[-2000:]
    out = " ".join(waited.stdout.split())
    assert "got " in out and "lensline.lock after" in out
    assert LensStorage().read_table("videos")["status"].to_list() == ["ok"]
    assert handoff < 5
    print(f"waiting lensline run got the lock {handoff:.2f}s after the holder released it")


def test_lock_of_a_killed_holder_is_free_at_once(home):
    holder = hold_in_subprocess()
    holder.kill()
    holder.wait()
    started = time.perf_counter()
    with home_lock().hold(wait=False) as lock:
        assert lock.owner().pid == os.getpid()
    assert time.perf_counter() - started < 1.0


def test_s3_lock_conditional_put_and_stale_takeover(s3_env):
    """moto (server mode) honours IfNoneMatch='*' and IfMatch on put and delete."""
    storage = LensStorage()
    first, second = S3Lock(storage, stale_s=30), S3Lock(storage, stale_s=30)
    assert isinstance(home_lock(storage), S3Lock)
    with (
        first.hold(wait=False),
        pytest.raises(HomeLocked, match=f"pid {os.getpid()}"),
        second.hold(wait=False),
    ):
        pass
    with second.hold(wait=False):  # released: free again
        pass

    # a holder that died without releasing: stale after stale_s, then taken over exactly once
    dead = S3Lock(storage, stale_s=30)
    assert dead.try_acquire()
    dead._stop.set()  # its heartbeat stops, as if the process died
    taker = S3Lock(storage, stale_s=1.0)
    time.sleep(1.5)
    messages: list[str] = []
    started = time.perf_counter()
    with taker.hold(wait=True, on_wait=messages.append, poll_s=0.2, timeout_s=10):
        assert taker.owner() is not None
    assert time.perf_counter() - started < 5
    import boto3

    bucket = s3_env.removeprefix("s3://").split("/")[0]
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="plant-a/lensline.lock")
    assert listed["KeyCount"] == 0  # released

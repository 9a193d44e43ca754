"""The S3 endpoint stops mid-run: bounded retries with backoff, a clear failure, nothing half
written, and the next run completes once the endpoint is back on the same port.

The endpoint Lensline talks to is a TCP front process (``tcp_front.py``) on its own port,
forwarding to a moto server this test starts: the test stops the front by PID once the first
video is in the lake (the endpoint then refuses connections, as a stopped S3 server does) and
starts it again on the same port. moto keeps its buckets only in its own memory, so its
process stays up behind the front and the bucket survives the outage. Runs the real
``lensline run --select group:ingest`` (the CLI) in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import free_port
from tests.reliability.harness import print_table, record

FRONT = Path(__file__).with_name("tcp_front.py")


def _lensline() -> str:
    return shutil.which("lensline") or str(Path(sys.executable).parent / "lensline")


def _start_front(port: int, target: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(FRONT), str(port), str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture
def endpoint(tmp_path):
    """(front port, moto port, processes dict): moto and its front, both stopped by PID."""
    moto_port, front_port = free_port(), free_port()
    procs = {
        "moto": subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    }
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{moto_port}/moto-api/", timeout=1)
            break
        except OSError:
            assert time.time() < deadline, "moto did not start"
            time.sleep(0.2)
    procs["front"] = _start_front(front_port, moto_port)
    yield front_port, moto_port, procs
    for proc in procs.values():
        if proc.poll() is None:
            _stop(proc)


def _lake_state(bucket: str) -> dict:
    """Tables read through moto directly; ok videos have all their frame objects."""
    import hashlib

    from lake.storage import LensStorage

    storage = LensStorage(root=f"s3://{bucket}/plant")  # AWS_ENDPOINT_URL: moto, not the front
    videos, frames = storage.read_table("videos"), storage.read_table("frames")
    ok = videos.filter(pl.col("status") == "ok") if videos is not None else pl.DataFrame()
    for row in ok.iter_rows(named=True):
        rows = frames.filter(pl.col("video_id") == row["video_id"])
        assert rows.height == row["kept_frames"], row["video_id"]
        for uri, digest in rows.select("uri", "sha256").iter_rows():
            assert hashlib.sha256(storage.read_bytes(uri)).hexdigest() == digest, uri
    return {"ok": sorted(ok["video_id"]) if ok.height else [], "videos": videos}


@pytest.mark.slow
def test_s3_endpoint_stopped_mid_run_fails_clearly_and_the_next_run_completes(
    endpoint, home, tmp_path, write_video, monkeypatch
):
    import boto3

    front_port, moto_port, procs = endpoint
    url = f"http://127.0.0.1:{front_port}"
    bucket = "outage"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(
        LENSLINE_HOME=str(home),
        LENSLINE_STORAGE=f"s3://{bucket}/plant",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
        LENSLINE_S3_MAX_ATTEMPTS="4",
    )
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{moto_port}")  # this test: moto
    direct = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}")
    direct.create_bucket(Bucket=bucket)
    for name, n in (("a", 20), ("b", 240), ("c", 240)):  # b and c keep the run busy after a
        local = write_video(tmp_path / "src" / f"{name}.mp4", n, size=(160, 120))
        direct.upload_file(str(local), bucket, f"plant/landing/videos/cam1/{name}.mp4")

    outcomes = []
    proc = subprocess.Popen(
        [_lensline(), "run", "--select", "group:ingest"],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    first = "plant/lake/videos/_delta_log/00000000000000000000.json"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        listed = direct.list_objects_v2(Bucket=bucket, Prefix=first)
        if listed.get("KeyCount"):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the first video was in the lake"
    _stop(procs["front"])  # the endpoint is gone: connections are refused
    stopped = time.perf_counter()
    out, _ = proc.communicate(timeout=300)
    failed_after = time.perf_counter() - stopped
    print(out[-3000:])
    outcomes.append(
        {
            "fault": f"S3 endpoint {url} stopped by PID after the first video's commit",
            "outcome": f"exit {proc.returncode} after {failed_after:.1f}s; "
            + ("endpoint named in the output" if url in out else "endpoint NOT named"),
        }
    )
    assert proc.returncode == 1, out[-4000:]
    assert url in out, out[-4000:]  # the failure names the endpoint
    assert failed_after < 120  # bounded: retries with backoff, then the failure
    assert "Traceback" not in out, out[-4000:]

    state = _lake_state(bucket)  # nothing half-written: every ok video is complete
    outcomes.append(
        {
            "fault": "lake after the outage (read through moto)",
            "outcome": f"ok videos {state['ok']}",
        }
    )
    # the video committed before the outage is complete, the rest not ok; which one committed
    # first depends on timing (batches of videos run side by side in two run workers)
    assert 1 <= len(state["ok"]) < 3

    # the run could not delete its lock object while the endpoint was down: the next run on
    # this host takes it over at once (its holder is dead) instead of waiting 600 s for staleness
    left = direct.list_objects_v2(Bucket=bucket, Prefix="plant/lensline.lock")
    outcomes.append(
        {
            "fault": "lock object the failed run could not delete",
            "outcome": f"{left.get('KeyCount', 0)} left; the next run takes it over at once",
        }  # fmt: skip
    )
    assert left.get("KeyCount") == 1

    procs["front"] = _start_front(front_port, moto_port)  # the endpoint is back, same port
    rerun_started = time.perf_counter()
    again = subprocess.run(
        [_lensline(), "run", "--select", "group:ingest"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-3000:]
    assert time.perf_counter() - rerun_started < 120  # not the 600 s staleness wait
    state = _lake_state(bucket)
    assert state["ok"] == ["cam1__a", "cam1__b", "cam1__c"]
    outcomes.append(
        {
            "fault": f"endpoint restarted on port {front_port}; lensline run again",
            "outcome": f"exit 0; ok videos {state['ok']}; no STARTED run left",
        }  # fmt: skip
    )
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        assert instance.get_runs(filters=started) == []
    print_table("S3 outage", [(o["fault"], o["outcome"]) for o in outcomes], ("fault", "outcome"))
    record(tmp_path, "s3_outage", outcomes)


def test_s3_clients_have_bounded_retries_and_timeouts(monkeypatch):
    """The configuration behind the outage test: boto3 and deltalake both retry a bounded number
    of times with backoff (botocore standard mode; object_store max_retries/retry_timeout)."""
    from lake.storage import LensStorage

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("LENSLINE_S3_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    storage = LensStorage(root="s3://b/p")
    config = storage._s3().meta.config
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert config.connect_timeout == 5
    opts = storage.storage_options()
    assert opts["max_retries"] == "2" and opts["retry_timeout"] == "60s"
    started = time.perf_counter()
    with pytest.raises(OSError, match=r"(?s)127\.0\.0\.1:9/.*after 2 retries"):
        storage.table_version("videos")
    assert time.perf_counter() - started < 30

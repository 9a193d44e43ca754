"""Shared fixtures: a temp Lensline home per test, a real moto S3 server on 127.0.0.1, tiny videos."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest


def unavailable(reason: str) -> None:
    """Skip with ``reason`` (a developer machine without that tool), or fail under ``CI=true``:
    in CI a suite that did not run is a failure, not a pass."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty LENSLINE_HOME (and DAGSTER_HOME inside it) for one test."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("LENSLINE_HOME", str(h))
    monkeypatch.setenv("DAGSTER_HOME", str(h / "dagster"))
    monkeypatch.delenv("LENSLINE_STORAGE", raising=False)
    (h / "dagster").mkdir()
    from orchestration.instance_home import INSTANCE_YAML  # the instance `lensline run` creates

    (h / "dagster" / "dagster.yaml").write_text(INSTANCE_YAML)
    return h


@pytest.fixture(scope="session")
def moto_server():
    """A real S3 endpoint: moto in server mode on a free 127.0.0.1 port, stopped by PID."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto server did not start on " + url)
    yield url
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(moto_server, monkeypatch, home):
    """AWS environment pointing at the moto server, with a fresh bucket; returns the S3 root URI."""
    import uuid

    import boto3

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_server,
    }.items():
        monkeypatch.setenv(k, v)
    bucket = f"lensline-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/plant-a"
    monkeypatch.setenv("LENSLINE_STORAGE", root)
    return root


def _write_video(
    path: Path, n: int = 30, *, size=(96, 64), fps: int = 15, codec: str = "libx264"
) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.full((h, w, 3), (37 * i) % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def corrupt_in_the_middle(path: Path, n: int = 90) -> Path:
    """A video (``n`` frames) whose header opens but whose frames are noise: it fails
    mid-decode, not at open (the index, ``moov``, is kept)."""
    _write_video(path, n)
    data = bytearray(path.read_bytes())
    start, end = data.find(b"mdat") + 400, data.find(b"moov") - 400  # frames, not the index
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def fo_home(tmp_path_factory):
    """A temp home whose mongod this module starts and stops by PID.

    Where mongod cannot start the FiftyOne tests skip, except in CI (``CI=true``): there a
    FiftyOne suite that did not run is a failure, not a pass.
    """
    import shutil

    import psutil

    from lake.fiftyone_db import DatabaseStartError, configure, shutdown

    home = tmp_path_factory.mktemp("fo_home")
    try:
        configure(home)
    except DatabaseStartError as e:
        unavailable(f"mongod cannot start on this machine: {e}")
    pid = int((home / "fiftyone" / "mongod.pid").read_text())
    yield home
    shutdown()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    shutil.rmtree(home / "fiftyone" / "db")  # ~300 MB of preallocated journal


@pytest.fixture
def write_video():
    """``write_video(path, n_frames, size=(w, h), fps=15)``: a tiny H.264 mp4."""
    return _write_video

"""Operating ``lensline-edge serve``: a run killed mid-segment, and two services on one box."""

# ruff: noqa: F811 - test_serve's fixtures (clip, keys, lake) are imported and then requested

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from edge_export.service.cli import build
from edge_export.service.config import parse
from tests.edge_export.test_serve import REPO, Running, _config, clip, keys, lake  # noqa: F401


def test_a_killed_run_leaves_nothing_half_written(lake, keys, home, tmp_path, clip):
    """SIGKILL mid-segment leaves ``.part`` files with a torn last line; the next run cuts the
    torn line, closes them and publishes the telemetry one like any closed segment."""
    lake("m-1")
    lake.deploy("m-1")
    cfg = _config(home, tmp_path, keys, clip, segment_s=60.0, telemetry={"segment_s": 60.0})
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "edge_export.runner", "serve", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = tmp_path / "out"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = list((out / "results" / "cam1").glob("*.jsonl.part"))
            if parts and parts[0].stat().st_size > 2000:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"no results segment grew: {proc.stderr.read1().decode()}")  # type: ignore[union-attr]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    part = next((out / "results" / "cam1").glob("*.jsonl.part"))
    with part.open("ab") as fh:
        fh.write(b'{"video": "cam1", "frame_ind')  # the line being written when it died
    lines_before = part.read_bytes().count(b"\n")
    running = Running(cfg)
    try:
        running.wait(lambda s: s.cameras.get("cam1") and s.cameras["cam1"].frames >= 3,
                     what="the restarted service")  # fmt: skip
    finally:
        running.stop()
    assert not list(out.rglob("*.part")), list(out.rglob("*.part"))
    recovered = part.with_suffix("")
    rows = [json.loads(x) for x in recovered.read_text().splitlines()]  # every line whole
    assert len(rows) == lines_before and all(r["camera_id"] == "cam1" for r in rows)
    published = list((home / "landing" / "telemetry" / "b1").glob("*.jsonl"))
    assert len(published) >= 2  # the killed run's heartbeats and the restarted run's


def test_a_second_service_on_the_same_out_is_refused(lake, keys, home, tmp_path, clip):
    lake("m-1")
    lake.deploy("m-1")
    cfg = _config(home, tmp_path, keys, clip)
    running = Running(cfg)
    try:
        running.wait(lambda s: s.cameras.get("cam1") is not None, what="the first service")
        with pytest.raises(ValueError, match=r"is in use by another lensline-edge serve \(pid"):
            build(parse(cfg))
    finally:
        running.stop()
    second = build(parse(cfg))  # released when the first one stopped
    second.out_lock.close()

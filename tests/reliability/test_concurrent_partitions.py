"""Eight video partitions materialised at the same time into one lake, each run through Dagster's
multiprocess executor (``lensline_executor`` with ``LENSLINE_EXECUTOR=multiprocess``): no row or
commit of ``videos``/``frames`` is lost or duplicated.

The eight runs are started together (``dg.execute_job`` on a reconstructable job, one process
each, ``_ingest_one.py``; every step executes in its own child process), so their Delta commits to the same tables
race: the first commits even race to create the tables. Afterwards every video has exactly one
``ok`` row and exactly its frames, each frame's JPEG has its sha256, and each table's log holds
one commit per write (nothing lost, nothing doubled): ``videos`` and ``frames`` one per video.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.reliability.harness import REPO, print_table, record

ONE = Path(__file__).with_name("_ingest_one.py")

N = 8


@pytest.mark.slow
def test_eight_partitions_at_once_lose_and_duplicate_nothing(
    home, write_video, monkeypatch, tmp_path
):
    from lake.storage import LensStorage
    from orchestration.profiles import write_profile

    monkeypatch.setenv("LENSLINE_EXECUTOR", "multiprocess")
    write_profile(home / "dagster", "embedded", force=True)
    ids = []
    for i in range(N):
        cam = f"cam{i % 4 + 1}"
        write_video(home / f"landing/videos/{cam}/v{i}.mp4", 16 + 2 * i)
        ids.append(f"{cam}__v{i}")
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", ids)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LENSLINE_EXECUTOR": "multiprocess"}
    procs = {  # all eight runs at once, each in its own process, each step in a child of it
        vid: subprocess.Popen(
            [sys.executable, str(ONE), vid], env=env, cwd=home, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        for vid in ids
    }  # fmt: skip
    results = {}
    for vid, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        try:
            line = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            line = {"success": False, "pids": [], "errors": [out[-500:]]}
        results[vid] = (line["success"], set(line["pids"]), line["errors"])
    wall = time.perf_counter() - started

    storage = LensStorage()
    videos, frames = storage.read_table("videos"), storage.read_table("frames")
    counts = dict(frames.group_by("video_id").len().iter_rows())
    rows = []
    for vid, (ok, _pids, errors) in results.items():
        vrow = videos.filter(pl.col("video_id") == vid)
        rows.append(
            (
                vid,
                "success" if ok else "FAILED: " + "; ".join(errors)[:200],
                vrow.height,
                vrow["status"][0] if vrow.height else "-",
                counts.get(vid, 0),
                vrow["kept_frames"][0] if vrow.height else "-",
            )
        )
    print_table(
        f"{N} partitions at once (multiprocess executor, {wall:.1f}s)",
        rows,
        ("video", "run", "videos rows", "status", "frame rows", "kept_frames"),
    )
    record(tmp_path, "concurrent_partitions", [dict(zip(
        ("video", "run", "videos_rows", "status", "frame_rows", "kept_frames"), r, strict=True
    )) for r in rows])  # fmt: skip

    assert all(ok for ok, _, _ in results.values()), rows
    all_pids = set().union(*(p for _, p, _ in results.values()))
    assert len(all_pids) >= N  # every step ran in a child process of its own
    assert sorted(videos["video_id"]) == sorted(ids)  # one row each: none lost, none doubled
    assert set(videos["status"]) == {"ok"}
    assert counts == dict(videos.select("video_id", "kept_frames").iter_rows())
    assert frames.select("video_id", "frame_index").is_unique().all()
    for uri, digest in frames.select("uri", "sha256").iter_rows():
        assert hashlib.sha256(Path(uri).read_bytes()).hexdigest() == digest
    for table in ("videos", "frames"):  # one commit per video: none lost, none doubled
        log = sorted((home / "lake" / table / "_delta_log").glob("*.json"))
        assert len(log) == N, (table, [p.name for p in log])

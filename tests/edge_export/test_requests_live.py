"""Data on demand end to end: ``lensline capture request`` -> the signed document -> the edge
service on a live (looping) clip -> capture videos with sidecars in the lake's landing zone,
within budget, listed by ingestion's ``discover_videos``; ``lensline capture cancel`` stops it."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl

from lake.landing import discover_videos
from lake.storage import LensStorage
from orchestration.cli import main as lensline
from orchestration.definitions import defs
from tests.edge_export import test_serve
from tests.edge_export.test_serve import Running, _config

keys, lake, clip = test_serve.keys, test_serve.lake, test_serve.clip  # the serve tests' fixtures


def test_a_capture_request_reaches_the_landing_zone_within_budget(
    lake,
    keys,
    home,
    tmp_path,
    clip,
    monkeypatch,
    capsys,
):
    lake("m-001")
    lake.deploy("m-001")
    monkeypatch.setenv("LENSLINE_SIGNING_KEY", keys[0][0].decode())
    ask = ["capture", "request", "--camera", "cam1", "--policy", "random", "--every-n", "2",
           "--per-hour", "12", "--max-mb", "1", "--expires", "1h", "--reason", "e2e"]  # fmt: skip
    assert lensline(ask) == 0
    assert "signed" in capsys.readouterr().out
    capture = {"poll_s": 0.2, "max_clip_s": 1.0}
    run = Running(_config(home, tmp_path, keys, clip, capture_requests=capture))
    stats = lambda s: s.requested.stats()["requests"].get("cr-00001", {})  # noqa: E731
    try:
        run.wait(lambda s: stats(s).get("skipped_budget", 0) > 0, what="the hourly cap reached")
        run.wait(lambda s: stats(s).get("clips", 0) >= 1, what="a closed capture video")
        assert lensline(["capture", "cancel", "cr-00001"]) == 0
        run.wait(lambda s: stats(s).get("ended") == "cancelled", what="the cancel")
    finally:
        run.stop()
    got = stats(run.service)
    videos = sorted((home / "landing" / "videos" / "cam1").glob("req-cr-00001-b1-cam1-*.mp4"))
    sidecars = [json.loads(p.read_text())
                for p in sorted((home / "landing" / "captures" / "b1" / "cam1").glob("req-*.json"))]  # fmt: skip
    assert videos and len(sidecars) == len(videos) == got["clips"]
    assert sum(s["frame_count"] for s in sidecars) == got["frames"] == 12  # the hourly cap
    assert sum(v.stat().st_size for v in videos) == got["bytes"] <= 1_000_000
    assert all(s["request_id"] == "cr-00001" and s["policy"] == "random" and s["reason"] == "e2e"
               and s["model_versions"] == ["m-001"] for s in sidecars)  # fmt: skip
    frames = [f["frame_index"] for s in sidecars for f in s["frames"]]
    assert len(set(frames)) == len(frames)  # each live frame at most once
    landed = discover_videos(LensStorage())
    assert {f"cam1__{v.stem}" for v in videos} <= set(landed)  # ingestion sees them as videos
    vid = f"cam1__{videos[0].stem}"
    with dg.DagsterInstance.get() as instance:  # and ingests them: every capture frame kept
        instance.add_dynamic_partitions("videos", [vid])
        job = defs.resolve_job_def("ingest_video")
        assert job.execute_in_process(partition_key=vid, instance=instance).success
    row = LensStorage().read_table("videos").filter(pl.col("video_id") == vid).row(0, named=True)
    assert row["status"] == "ok" and row["kept_frames"] == sidecars[0]["frame_count"]
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "200")  # one table row per request
    assert lensline(["capture", "list", "--all"]) == 0
    listing = capsys.readouterr().out
    assert "cr-00001" in listing and "cancelled" in listing and "12 frames" in listing

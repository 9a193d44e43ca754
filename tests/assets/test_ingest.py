"""raw_video + frames through real Dagster runs on real files, locally and on moto's S3 server."""

from __future__ import annotations

import math

import av
import dagster as dg
import polars as pl
import pytest

from lake.storage import LensStorage
from orchestration.definitions import defs
from orchestration.sensors import new_video_sensor


def pyav_count(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def ingest(instance, key: str, **config) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("videos", [key])
    run_config = {"ops": {"raw_video_and_frames": {"config": config}}} if config else None
    return defs.resolve_job_def("ingest_video").execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False, run_config=run_config
    )


def test_ingest_counts_match_pyav_and_rerun_is_idempotent(home, write_video):
    a = write_video(home / "landing/videos/cam1/a.mp4", 45)
    b = write_video(home / "landing/videos/cam2/b.mp4", 31, size=(64, 48))
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        for key in ("cam1__a", "cam2__b"):
            assert ingest(instance, key, stride=4).success
        first = storage.read_table("frames").sort("video_id", "frame_index")
        v1 = storage.table_version("frames")
        assert ingest(instance, "cam1__a", stride=4).success
        again = storage.read_table("frames").sort("video_id", "frame_index")

    videos = storage.read_table("videos").sort("video_id")
    assert videos["frame_count"].to_list() == [pyav_count(a), pyav_count(b)] == [45, 31]
    assert videos["status"].to_list() == ["ok", "ok"]
    assert videos["sha256"].str.len_chars().to_list() == [64, 64]
    counts = first.group_by("video_id").len().sort("video_id")["len"].to_list()
    assert counts == [math.ceil(45 / 4), math.ceil(31 / 4)]
    assert first.filter(pl.col("video_id") == "cam2__b")["width"].unique().to_list() == [64]
    # rerun: one more Delta commit, identical rows, no leftover images
    assert storage.table_version("frames") == v1 + 1
    assert again.drop("uri").equals(first.drop("uri")) and again["uri"].equals(first["uri"])
    jpgs = sorted(p.name for p in (home / "artifacts/frames/cam1__a").iterdir())
    assert len(jpgs) == counts[0]
    # no champion, so no reference: every drift test of both videos says so (frames not re-read)
    drift = storage.read_table("drift")
    assert set(drift["video_id"]) == {"cam1__a", "cam2__b"}
    assert set(drift["status"]) == {"no_reference"} and not drift["drifted"].any()


def test_labeled_frames_are_always_kept(home, write_video):
    write_video(home / "landing/videos/cam1/a.mp4", 40)
    labels = home / "landing/labels/l.csv"
    labels.parent.mkdir(parents=True)
    labels.write_text(
        "video,frame_index,label,annotator\na.mp4,7,good,x\ncam1__a,13,dent,y\nother,9,good,x\n"
    )
    with dg.DagsterInstance.get() as instance:
        assert ingest(instance, "cam1__a", stride=10).success
    import json

    (home / "landing/labels/coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "cam1__a/000017.jpg"}, {"id": 2, "file_name": "other/000003.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 2, "category_id": 1}],
        "categories": [{"id": 1, "name": "scratch"}],
    }))  # fmt: skip
    with dg.DagsterInstance.get() as instance:
        assert ingest(instance, "cam1__a", stride=10).success
    frames = LensStorage().read_table("frames")
    assert sorted(frames["frame_index"].to_list()) == [0, 7, 10, 13, 17, 20, 30]
    assert sorted(frames.filter("labeled")["frame_index"].to_list()) == [7, 13, 17]


def test_corrupt_video_is_blocked_and_disturbs_nothing(home, write_video):
    write_video(home / "landing/videos/cam1/good.mp4", 30)
    bad = home / "landing/videos/cam1/bad.mp4"
    bad.write_bytes(b"this is not a video\n" * 50)
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        assert ingest(instance, "cam1__good").success
        before = storage.read_table("frames")
        result = ingest(instance, "cam1__bad")
        assert not result.success  # the blocking check fails the run
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["decodable"] is False
        mats = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert mats == {"raw_video"}  # frames never materialised for the corrupt video
    videos = storage.read_table("videos").sort("video_id")
    row = videos.filter(pl.col("video_id") == "cam1__bad").row(0, named=True)
    assert (
        row["status"] == "unreadable"
        and str(bad) in row["error"]
        and "not a readable" in row["error"]
    )
    assert storage.read_table("frames").equals(before)


def test_sensor_registers_partitions_and_requests_runs(home, write_video):
    write_video(home / "landing/videos/cam1/a.mp4", 10)
    write_video(home / "landing/videos/cam2/b.mp4", 10)
    with dg.DagsterInstance.get() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"storage": LensStorage()})
        result = new_video_sensor(ctx)
        assert [r.partition_key for r in result.run_requests] == ["cam1__a", "cam2__b"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["cam1__a", "cam2__b"]
        assert result.run_requests[0].tags["lensline/reason"] == "new video"
        instance.add_dynamic_partitions("videos", ["cam1__a", "cam2__b"])
        again = new_video_sensor(
            dg.build_sensor_context(
                instance=instance, cursor=result.cursor, resources={"storage": LensStorage()}
            )
        )
        assert isinstance(again, dg.SkipReason)
        # a fresh cursor (e.g. a new `dagster dev`) does not re-ingest what the lake already has
        assert ingest(instance, "cam1__a").success
        fresh = new_video_sensor(
            dg.build_sensor_context(instance=instance, resources={"storage": LensStorage()})
        )
        assert [r.partition_key for r in fresh.run_requests] == ["cam2__b"]


def test_sensor_reports_files_that_collide_on_one_video_id(home, write_video):
    from orchestration.sensors import plan_video_runs

    write_video(home / "landing/videos/cam1/a.mp4", 5)
    (home / "landing/videos/cam1/a.mov").write_bytes(
        (home / "landing/videos/cam1/a.mp4").read_bytes()
    )
    new_keys, requests, _, problems = plan_video_runs(LensStorage(), None, set())
    assert new_keys == ["cam1__a"] and len(requests) == 1
    assert requests[0].tags["lensline/source"] == "cam1/a.mov"  # first by name wins
    assert problems.collisions == {"cam1__a": ["cam1/a.mp4"]}


def test_ingest_on_s3(s3_env, write_video, tmp_path):
    import boto3

    local = write_video(tmp_path / "v.mp4", 24)
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    boto3.client("s3").upload_file(str(local), bucket, "plant-a/landing/videos/cam9/v.mp4")
    storage = LensStorage()
    assert storage.is_s3
    with dg.DagsterInstance.get() as instance:
        assert ingest(instance, "cam9__v", stride=5).success
        assert ingest(instance, "cam9__v", stride=5).success  # idempotent on S3 too
    frames = storage.read_table("frames")
    assert (
        frames.height == 5
        and frames["uri"].str.starts_with(s3_env + "/artifacts/frames/cam9__v/").all()
    )
    assert storage.read_table("videos")["frame_count"].to_list() == [pyav_count(local)]
    keys = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="plant-a/artifacts/frames/")[
        "KeyCount"
    ]
    assert keys == 5
    assert storage.table_version("frames") == 1


@pytest.mark.parametrize("select", ["key:raw_video", None])
def test_lensline_run_without_labels_stops_cleanly(home, write_video, select):
    from orchestration.runner import run_pending

    write_video(home / "landing/videos/cam1/a.mp4", 12)
    with dg.DagsterInstance.get() as instance:
        summary = run_pending(defs, instance, select=select)
        assert summary.registered == ["cam1__a"] and [o.status for o in summary.ingested] == ["ok"]
        again = run_pending(defs, instance, select=select)
        assert again.ingested == [] and again.up_to_date == 1

"""lensline run against real Dagster runs and Delta tables: crash repair, ids, rejected input, selections."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lake.storage import LensStorage
from orchestration.batches import plan_batches
from orchestration.definitions import defs
from orchestration.runner import run_pending
from tests.conftest import corrupt_in_the_middle

INGEST = "group:ingest"


def lensline_exe() -> str:
    return shutil.which("lensline") or str(Path(sys.executable).parent / "lensline")


def test_crash_after_videos_commit_is_repaired_and_force_reingests(home, write_video):
    """Issue 7.1: videos says ok, frames has no rows, orphan JPEGs and temp files, a run left STARTED."""
    write_video(home / "landing/videos/cam1/a.mp4", 20)
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        first = run_pending(defs, instance, select=INGEST)
        assert [o.status for o in first.ingested] == ["ok"]
        kept = storage.read_table("videos")["kept_frames"][0]
        assert storage.read_table("frames").height == kept >= 2

        # the state a SIGKILL left before this fix: videos row ok, no frame rows, stray files
        storage.delete_rows("frames", "video_id = 'cam1__a'")
        frames_dir = home / "artifacts/frames/cam1__a"
        (frames_dir / "000999.jpg").write_bytes(b"orphan")
        (frames_dir / ".000002.jpg.k1ll3d").write_bytes(b"half a jpeg")
        dead = dg.DagsterRun(
            job_name="ingest_video",
            run_id="deadbeef-0000-0000-0000-000000000000",
            status=dg.DagsterRunStatus.STARTED,
            tags={"lensline/trigger": "lensline run", "lensline/pid": "999999999"},
        )
        instance.add_run(dead)

        started = time.perf_counter()
        repaired = run_pending(defs, instance, select=INGEST)
        repair_s = time.perf_counter() - started
        assert repaired.recovered_runs == [dead.run_id]
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert [o.video_id for o in repaired.ingested] == ["cam1__a"] and repaired.exit_code == 0
        assert storage.read_table("frames").height == kept
        names = sorted(p.name for p in frames_dir.iterdir())
        assert len(names) == kept and "000999.jpg" not in names
        assert not [n for n in names if n.startswith(".")]

        progress: list[tuple[str, int, int]] = []
        done = run_pending(defs, instance, select=INGEST, on_progress=lambda *a: progress.append(a))
        assert done.ingested == []  # now complete: no "ingest 0/1" bar either
        assert not [p for p in progress if p[0].startswith("ingest")], progress
        forced = run_pending(
            defs, instance, select=INGEST, force=True, on_progress=lambda *a: progress.append(a)
        )
        assert [o.video_id for o in forced.ingested] == ["cam1__a"]
        assert ("ingest", 1, 1) in progress
    print(f"repair run: {repair_s:.2f}s")


def test_killed_ingest_leaves_no_ok_video_without_frames(home, write_video):
    """Issue 7.1 for real: SIGKILL `lensline run` once frames commit; the next run converges."""
    write_video(home / "landing/videos/cam1/a.mp4", 30)
    write_video(home / "landing/videos/cam2/long.mp4", 900, size=(320, 240), fps=30)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["LENSLINE_HOME"] = str(home)
    frames_log = home / "lake/frames/_delta_log"

    def commits() -> int:
        return len(list(frames_log.glob("*.json"))) if frames_log.is_dir() else 0

    proc = subprocess.Popen(
        [lensline_exe(), "run", "--select", INGEST],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while commits() < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the process group: the CLI and anything it started
    proc.wait(timeout=10)
    storage = LensStorage()
    videos = storage.read_table("videos")
    frames = storage.read_table("frames")
    counts = dict(frames.group_by("video_id").len().iter_rows()) if frames is not None else {}
    ok = videos.filter(pl.col("status") == "ok") if videos is not None else pl.DataFrame()
    for row in ok.iter_rows(named=True):  # whatever got in: an ok video has all its frames
        assert counts.get(row["video_id"]) == row["kept_frames"]
    print(f"killed with frames of {sorted(counts)} committed, ok videos {ok.height}")

    started = time.perf_counter()
    out = subprocess.run(
        [lensline_exe(), "run", "--select", INGEST],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    videos = storage.read_table("videos").sort("video_id")
    assert videos["status"].to_list() == ["ok", "ok"]
    counts = dict(storage.read_table("frames").group_by("video_id").len().iter_rows())
    assert [counts[v] for v in videos["video_id"]] == videos["kept_frames"].to_list()
    with dg.DagsterInstance.get() as instance:
        stuck = instance.get_runs(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]
            )
        )
        assert stuck == []
    print(f"repair run after the kill: {time.perf_counter() - started:.2f}s")


def test_ids_are_injective_and_a_collision_never_overwrites(home, write_video):
    """Issue 7.3: `line ü 1` and `line ä 1` get two ids; a.mov landing after a.mp4 is reported."""
    write_video(home / "landing/videos/cam 1/line ü 1.mp4", 6)
    write_video(home / "landing/videos/cam 1/line ä 1.mp4", 8)
    write_video(home / "landing/videos/cam1/a.mp4", 6)
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        first = run_pending(defs, instance, select=INGEST)
        ids = sorted(o.video_id for o in first.ingested)
        assert len(ids) == 3 and ids[0] == "cam1__a"
        assert all(i.startswith("cam_1__line___1-") for i in ids[1:]) and ids[1] != ids[2]
        assert sorted(storage.read_table("videos")["frame_count"].to_list()) == [6, 6, 8]

        (home / "landing/videos/cam1/a.mov").write_bytes(b"not the same video")
        second = run_pending(defs, instance, select=INGEST)
    assert second.ingested == []  # a.mp4 keeps the id it is recorded under
    assert any("cam1/a.mov ignored" in p for p in second.landing_problems)
    row = storage.read_table("videos").filter(pl.col("video_id") == "cam1__a")
    assert row["uri"].to_list()[0].endswith("cam1/a.mp4") and row["status"][0] == "ok"


def test_symlink_outside_the_landing_zone_is_skipped_unless_opted_in(
    home, write_video, tmp_path, monkeypatch
):
    """Issue 7.9: the containment rule labels have, for videos; LENSLINE_FOLLOW_SYMLINKS=1 opts in."""
    from lake.landing import LandingProblems, discover_videos

    outside = write_video(tmp_path / "elsewhere/secret.mp4", 5)
    write_video(home / "landing/videos/cam1/inside.mp4", 5)
    (home / "landing/videos/cam1/link.mp4").symlink_to(outside)
    (home / "landing/videos/cam1/ok_link.mp4").symlink_to(home / "landing/videos/cam1/inside.mp4")
    problems = LandingProblems()
    found = discover_videos(LensStorage(), problems=problems)
    assert sorted(found) == ["cam1__inside", "cam1__ok_link"]
    assert problems.outside == ["videos/cam1/link.mp4"]
    assert "LENSLINE_FOLLOW_SYMLINKS=1" in problems.messages()[0]
    with dg.DagsterInstance.get() as instance:
        from orchestration.sensors import new_video_sensor

        ctx = dg.build_sensor_context(instance=instance, resources={"storage": LensStorage()})
        result = new_video_sensor(ctx)
        assert "cam1__link" not in [r.partition_key for r in result.run_requests]
    monkeypatch.setenv("LENSLINE_FOLLOW_SYMLINKS", "1")
    assert "cam1__link" in discover_videos(LensStorage())


def test_zero_byte_video_ends_cleanly_and_exits_3_after_the_rest(home, write_video):
    """Issues 7.6/7.7: no DagsterStepOutputNotFoundError; frame_quality says why; exit code 3."""
    write_video(home / "landing/videos/cam1/good.mp4", 10)
    (home / "landing/videos/cam1/empty.mp4").write_bytes(b"")
    with dg.DagsterInstance.get() as instance:
        summary = run_pending(defs, instance, select=INGEST)
        [run] = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "cam1__empty"}))
        logs = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        failures = [e.dagster_event.event_specific_data.error.cls_name for e in logs]
        assert failures == ["DagsterAssetCheckFailedError"]  # the blocking check, nothing internal
        checks = {
            e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
            for e in instance.all_logs(
                run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
        }
        assert not checks["frame_quality"].passed and not checks["decodable"].passed
        assert "zero-byte" in str(checks["frame_quality"].metadata["skipped"].value)
    outcomes = {o.video_id: o.status for o in summary.ingested}
    assert outcomes == {"cam1__empty": "empty", "cam1__good": "ok"}
    assert summary.exit_code == 3
    videos = LensStorage().read_table("videos").sort("video_id")
    assert videos["status"].to_list() == ["empty", "ok"]


def test_a_rejected_video_in_a_batch_is_retried_one_video_per_run(home, write_video, monkeypatch):
    """One run worker, 4 due videos: the zero-byte one gets a run of its own up front (it would
    fail any batch); a video corrupt in the middle (it opens) fails its batch by name, and
    that batch's videos then get a run each: the same outcomes, checks and lake as when every
    video has its own run."""
    monkeypatch.setenv("LENSLINE_RUN_WORKERS", "1")
    write_video(home / "landing/videos/cam1/a.mp4", 10)
    (home / "landing/videos/cam1/b.mp4").write_bytes(b"")
    corrupt_in_the_middle(home / "landing/videos/cam1/c.mp4")
    write_video(home / "landing/videos/cam1/d.mp4", 10)
    with dg.DagsterInstance.get() as instance:
        summary = run_pending(defs, instance, select=INGEST)
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_video"))
        [batch] = [r for r in runs if "dagster/asset_partition_range_start" in r.tags]
        assert (batch.tags["dagster/asset_partition_range_start"], batch.status) == (
            "cam1__c",
            dg.DagsterRunStatus.FAILURE,
        )
        failure = instance.all_logs(batch.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        assert "video 'cam1__c' was rejected" in str(failure[0].dagster_event.event_specific_data)
        singles = [r.tags.get("dagster/partition") for r in runs if r is not batch]
        assert sorted(singles) == ["cam1__a", "cam1__b", "cam1__c", "cam1__d"]
        assert instance.get_materialized_partitions(dg.AssetKey("frames")) == {
            "cam1__a",
            "cam1__d",
        }
    assert {o.video_id: o.status for o in summary.ingested} == {
        "cam1__a": "ok",
        "cam1__b": "empty",
        "cam1__c": "corrupt",
        "cam1__d": "ok",
    }
    assert summary.exit_code == 3


def test_batches_are_consecutive_balanced_and_bounded():
    order = [f"v{i}" for i in range(10)]
    sizes = {k: 100 for k in order}
    assert plan_batches(order, order[:4], sizes, workers=2, max_per_run=8) == [
        ["v0", "v1"],
        ["v2", "v3"],
    ]
    # at most max_per_run; a video not due (v4) is never inside a range
    due = ["v0", "v1", "v2", "v3", "v5", "v6", "v7", "v8", "v9"]
    batches = plan_batches(order, due, sizes, workers=1, max_per_run=4)
    assert all(len(b) <= 4 for b in batches) and sum(batches, []) == due
    assert not any("v3" in b and "v5" in b for b in batches)
    # bytes, not counts, are balanced: one big video runs alone
    sizes["v0"] = 1000
    assert plan_batches(order, order[:4], sizes, workers=2, max_per_run=8) == [
        ["v0"],
        ["v1", "v2", "v3"],
    ]
    assert plan_batches(order, [], sizes, workers=2, max_per_run=8) == []
    # a video that will not open runs alone and splits the range around it
    assert plan_batches(order, order[1:6], sizes, workers=1, max_per_run=8, alone={"v3"}) == [
        ["v1", "v2"],
        ["v3"],
        ["v4", "v5"],
    ]
    with pytest.raises(ValueError, match="not registered as partitions: x"):
        plan_batches(order, ["x"], sizes, workers=2, max_per_run=8)


def test_bad_select_is_one_line_and_exit_2(home, capsys):
    """Issue 7.8."""
    from orchestration.cli import main

    assert main(["run", "--select", "nonsense["]) == 2
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and "Traceback" not in out
    assert "nonsense[" in out and "raw_video" in out and "ingest" in out
    assert main(["run", "--select", "key:nope"]) == 2
    assert "matches no asset" in capsys.readouterr().out


def _small_defs(counter: Path) -> dg.Definitions:
    """The real ingest and labels assets plus a stand-in for training that counts its runs."""
    from assets.drift import drift_report
    from assets.ingest import raw_video_and_frames
    from assets.labels import label_reviews, labels
    from lake.resources import FiftyOneResource
    from orchestration.automation import on_new_data
    from orchestration.jobs import ingest_job

    @dg.asset(deps=["labels"], group_name="models", automation_condition=on_new_data())
    def trained_model() -> None:
        counter.write_text(str(int(counter.read_text() or 0) + 1) if counter.exists() else "1")

    return dg.Definitions(
        assets=[raw_video_and_frames, drift_report, label_reviews, labels, trained_model],
        jobs=[ingest_job],
        resources={"storage": LensStorage(), "fiftyone": FiftyOneResource()},
    )


def test_rejected_label_file_exits_3_prints_it_and_does_not_retrain(
    home, write_video, tmp_path, capsys
):
    """Issue 7.6: a rejected file is printed with its problems, exit 3, and nothing retrains."""
    from functools import partial

    from orchestration.cli import main as cli_main

    counter = tmp_path / "trainings"
    main = partial(cli_main, defs=_small_defs(counter))
    write_video(home / "landing/videos/cam1/a.mp4", 12)
    labels_dir = home / "landing/labels"
    labels_dir.mkdir(parents=True)
    (labels_dir / "main.csv").write_text("video,frame_index,label\na.mp4,1,good\na.mp4,2,dent\n")
    assert main(["run"]) == 0
    assert counter.read_text() == "1"
    capsys.readouterr()

    (labels_dir / "bad.csv").write_text("video,frame_index,label\nnope.mp4,1,good\na.mp4,999,x\n")
    assert main(["run"]) == 3
    out = capsys.readouterr().out
    assert "label file rejected" in out and "bad.csv" in out and "999" in out
    assert counter.read_text() == "1"  # nothing valid changed: no retraining
    assert main(["run"]) == 3  # still there, still rejected, still no retraining
    assert counter.read_text() == "1"

    (labels_dir / "bad.csv").unlink()
    (labels_dir / "more.csv").write_text("video,frame_index,label\na.mp4,3,good\n")
    assert main(["run"]) == 0
    assert counter.read_text() == "2"


def test_lensline_run_writes_nothing_into_the_cwd(home, tmp_path):
    """Issue 7.10: even in a folder with a workspace.yaml, and `lensline ui --dry-run` neither."""
    cwd = tmp_path / "repo"
    cwd.mkdir()
    shutil.copy("workspace.yaml", cwd / "workspace.yaml")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    for args in (["run", "--select", INGEST], ["ui", "--dry-run", "--fiftyone"]):
        out = subprocess.run(
            [lensline_exe(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert sorted(p.name for p in cwd.iterdir()) == ["workspace.yaml"]
    assert f"DAGSTER_HOME={home / 'dagster'}" in out.stdout
    assert "dagster dev -h 127.0.0.1" in out.stdout.replace(
        str(Path(lensline_exe()).parent) + "/", ""
    )
    assert "orchestration.fiftyone_app" in out.stdout


def test_demo_on_s3_writes_the_landing_zone_there(s3_env, capsys):
    """Issue 7.15: the demo set goes to the S3 landing zone and the summary prints S3 locations."""
    import boto3

    from lake.landing import discover_videos
    from orchestration import cli

    # a graph of no assets: the demo's run only registers the videos (the graph on S3 is tested
    # elsewhere)
    no_assets = dg.Definitions(resources={"storage": LensStorage()})
    argv = ["demo", "--cameras", "1", "--videos-per-camera", "2", "--seconds", "1"]
    assert cli.main(argv, defs=no_assets) == 0
    out = capsys.readouterr().out
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert "plant-a/landing/videos/cam1/line_0001.mp4" in keys
    assert any(k.startswith("plant-a/landing/labels/") for k in keys)
    assert sorted(discover_videos(LensStorage())) == ["cam1__line_0001", "cam1__line_0002"]
    flat = " ".join(out.split())
    assert f"lake (Delta tables): {s3_env}/lake" in flat and f"labels in {s3_env}/landing/" in flat
    assert cli.main(argv, defs=no_assets) == 0  # identical files are not uploaded again
    assert "uploaded 0 changed file(s)" in " ".join(capsys.readouterr().out.split())


def test_clean_ids_keep_their_old_value():
    from data_quality.video import video_id_for

    assert video_id_for("cam1", "line_0001.mp4") == "cam1__line_0001"
    assert video_id_for("cam 1", "line ü 1.mp4") != video_id_for("cam 1", "line ä 1.mp4")
    # the same name in NFD (as macOS stores it) gets the same id as in NFC
    import unicodedata

    nfd = unicodedata.normalize("NFD", "line ü 1.mp4")
    assert video_id_for("cam 1", nfd) == video_id_for("cam 1", "line ü 1.mp4")


def test_only_rejected_label_files_stop_before_training_with_exit_3(
    home, write_video, tmp_path, capsys
):
    """A new user's first run with nothing but a bad label file: a clear stop, no crash."""
    from orchestration.cli import main

    counter = tmp_path / "trainings"
    write_video(home / "landing/videos/cam1/a.mp4", 12)
    (home / "landing/labels").mkdir(parents=True)
    (home / "landing/labels/bad.csv").write_text("video,frame_index,label\nnope.mp4,1,good\n")
    assert main(["run"], defs=_small_defs(counter)) == 3
    out = capsys.readouterr().out
    assert "no valid labels yet" in out and "bad.csv" in out
    assert not counter.exists()  # nothing downstream ran


def test_full_refresh_config_reaches_only_the_ops_of_each_stage():
    """``lensline run --full-refresh``: the labels stage gets no op config (Dagster would refuse
    config for ops outside the run), the graph stage its refresh settings, valid for the job."""
    from orchestration.cli import FULL_REFRESH
    from orchestration.runner import _for_ops

    assert _for_ops(FULL_REFRESH, [dg.AssetKey("labels")]) == {"ops": {}}
    keys = [dg.AssetKey("frame_embeddings"), dg.AssetKey("trained_model")]
    config = _for_ops(FULL_REFRESH, keys)
    assert config == FULL_REFRESH
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(keys))
    assert dg.validate_run_config(job, config)

"""SIGKILL of ``lensline run`` (its whole process group) at 20+ moments, then rerun: it converges.

A harness watches the lake's ``_delta_log`` folders and kills the run's process group when a
chosen commit appears, after a seeded delay (0-250 ms, so kills also land mid-write: JPEGs half
written, a parquet file written but not committed, a Dagster event half recorded). Each kill
waits for the nth (seeded) new commit to a table of one stage, stage by stage in pipeline
order (``SCHEDULE``), so kills spread over ingestion (videos, frames, drift), label import
(labels, label_classes), label checking (frame_embeddings, label_consensus, label_issues),
curation (dataset, curation_log) and registry writes (sweep_trials, models, model_events,
predictions). Two phases: four videos and their labels,
then two more videos and a new label file (re-ingest, re-import, retrain, a second model).

After every kill: every Delta table reads, and every ``ok`` video has exactly its frame rows,
each frame's JPEG present with its sha256. (A ``frames`` row of a video whose ``videos`` row is
missing or ``ingesting`` is the documented state a crash between the two commits leaves,
assets/ingest.py; readers use ``ok`` videos only.) After the reruns (the next run, a second if
needed): nothing is STARTED in Dagster, no frames row lacks its ``ok`` video, no stray or temp
frame file remains, and every table equals the undisturbed run's.

Compared: all rows on all columns except timestamps (``*_at``, ``source_mtime``), run ids,
``wall_s`` and ``checkpoint_uri`` (a path in the home). Model versions are compared: training is
bit-deterministic across processes, a checkpoint's header is written in one order
(``training.checkpoint``) and a fine-tune names its parent by digest, not by path
(``TrainResult.checkpoint_metadata``), so a killed and rerun training registers the very model
version the undisturbed run does. ``sweep_trials`` logs every training
attempt, so a training killed and run again logs its (identical) trial twice: compared as a
set of distinct rows. Uses ``tests/reliability/_run.py`` (what
``lensline run`` does, with a small run config the CLI cannot pass).
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.reliability.harness import (
    commits,
    kill_group,
    print_table,
    read_lake,
    record,
    run,
    sha256,
    start_run,
    summary_of,
)

SEED = 20260
MIN_KILLS = 20
IGNORE = {
    "imported_at",
    "ingested_at",
    "computed_at",
    "created_at",
    "queued_at",
    "at",
    "source_mtime",
    "run_id",
    "wall_s",
    "checkpoint_uri",  # the home's own path
}
ORDER = ["ingestion", "label import", "label checking", "curation", "registry"]
# append-only logs of attempts (assets/models.py appends every sweep trial it trains): a
# training killed before its model was registered and run again logs the same trial twice
ATTEMPT_LOGS = {"sweep_trials"}
STAGE = {
    "videos": "ingestion",
    "frames": "ingestion",
    "drift": "ingestion",
    "labels": "label import",
    "label_classes": "label import",
    "label_reviews": "label import",
    "frame_embeddings": "label checking",
    "label_consensus": "label checking",
    "annotator_quality": "label checking",
    "label_issues": "label checking",
    "curation_log": "curation",
    "dataset": "curation",
    "sweep_trials": "registry",
    "models": "registry",
    "model_events": "registry",
    "predictions": "registry",
}


# the stage each kill waits for, in pipeline order (a kill lands at that stage's nth new commit)
SCHEDULE = [
    ["ingestion"] * 5 + ["label import", "label checking", "label checking", "curation"]
    + ["curation", "registry", "registry", "registry"],
    ["ingestion"] * 3 + ["label import", "label checking", "label checking", "curation"]
    + ["registry", "registry"]
    + ["registry"],
    # phase 3, labels only (a third annotator): margin above 20 when a run ends before a kill
    ["label import", "label checking", "label checking", "curation", "registry", "registry"],
]  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Two cameras × three 6-s videos and their annotations (phase 1 uses two videos each)."""
    from demo import make_demo_set

    root = tmp_path_factory.mktemp("kill_inputs")
    make_demo_set(root / "landing", seed=3, cameras=2, videos_per_camera=3, seconds=6.0)
    return root / "landing"


def land(inputs: Path, home: Path, phase: int) -> None:
    """Phase 1: line_0001-2 of each camera and their labels; phase 2: line_0003, all labels;
    phase 3: a third annotator's labels for line_0003 (a label-only change)."""
    if phase == 3:
        labels = pl.read_csv(inputs / "labels" / "annotations.csv")
        first = labels["annotator"].unique().sort()[0]
        labels.filter(
            pl.col("video").str.ends_with("line_0003") & (pl.col("annotator") == first)
        ).with_columns(annotator=pl.lit("carol")).write_csv(
            home / "landing" / "labels" / "carol.csv"
        )
        return
    names = ["line_0001.mp4", "line_0002.mp4"] if phase == 1 else ["line_0003.mp4"]
    for cam in ("cam1", "cam2"):
        for name in names:
            dst = home / "landing" / "videos" / cam / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(inputs / "videos" / cam / name, dst)
    labels = pl.read_csv(inputs / "labels" / "annotations.csv")
    (home / "landing" / "labels").mkdir(parents=True, exist_ok=True)
    if phase == 1:
        labels.filter(~pl.col("video").str.ends_with("line_0003")).write_csv(
            home / "landing" / "labels" / "annotations.csv"
        )
    else:
        labels.filter(pl.col("video").str.ends_with("line_0003")).write_csv(
            home / "landing" / "labels" / "line_0003.csv"
        )


def ordered_commits(lake: Path, since: set[str]) -> list[str]:
    """The tables of the commits made after ``since``, in commit order (mtime)."""
    new = commits(lake) - since
    return [
        c.split("/")[0] for c in sorted(new, key=lambda c: _commit_path(lake, c).stat().st_mtime_ns)
    ]


def _commit_path(lake: Path, commit: str) -> Path:
    table, name = commit.split("/")
    return lake / table / "_delta_log" / name


def check_after_kill(home: Path) -> dict:
    """Every table reads; every ok video has exactly its frames (rows and JPEGs with their sha256)."""
    tables = read_lake(home / "lake")  # raises if a table does not read
    videos, frames = tables.get("videos"), tables.get("frames")
    ok = videos.filter(pl.col("status") == "ok") if videos is not None else pl.DataFrame()
    orphans = 0
    if frames is not None and frames.height:
        counts = dict(frames.group_by("video_id").len().iter_rows())
        for row in ok.iter_rows(named=True):
            assert counts.get(row["video_id"], 0) == row["kept_frames"], row["video_id"]
        ok_ids = set(ok["video_id"]) if ok.height else set()
        for row in frames.filter(pl.col("video_id").is_in(list(ok_ids))).iter_rows(named=True):
            assert Path(row["uri"]).is_file() and sha256(Path(row["uri"])) == row["sha256"], row
        orphans = frames.filter(~pl.col("video_id").is_in(list(ok_ids))).height
    else:
        assert ok.is_empty() or (ok["kept_frames"] == 0).all()
    return {"tables": len(tables), "ok_videos": ok.height, "frames_of_not_ok_videos": orphans}


def converge(home: Path) -> list[int]:
    """Rerun until a run exits 0 and the one after it ingests and materialises nothing."""
    codes = []
    for _ in range(3):
        code, out = run(home)
        codes.append(code)
        assert code == 0, out[-4000:]
        summary = summary_of(out)
        if not summary["ingested"] and not summary["downstream"]:
            return codes
    raise AssertionError(f"no convergence after 3 reruns: exit codes {codes}")


def check_converged(home: Path) -> None:
    tables = read_lake(home / "lake")
    videos, frames = tables["videos"], tables["frames"]
    assert set(videos["status"]) == {"ok"}
    counts = dict(frames.group_by("video_id").len().iter_rows())
    assert counts == dict(videos.select("video_id", "kept_frames").iter_rows())
    files = sorted((home / "artifacts" / "frames").rglob("*"))
    files = [p for p in files if p.is_file()]
    assert not [p for p in files if p.name.startswith(".")], "temp frame files left behind"
    assert sorted(map(str, files)) == sorted(frames["uri"]), "stray or missing frame files"
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        stuck = instance.get_runs(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]
            )
        )
        assert stuck == [], [r.run_id for r in stuck]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # 20+ kills and reruns of the whole graph: ~6-10 min on 2 busy cores
def test_sigkill_at_20_plus_moments_converges_to_the_undisturbed_tables(inputs, tmp_path):
    started = time.perf_counter()
    rng = random.Random(SEED)

    # the undisturbed reference, phase by phase, and the order of its commits
    ref = tmp_path / "undisturbed"
    sequences = []
    for phase in (1, 2, 3):
        land(inputs, ref, phase)
        before = commits(ref / "lake")
        code, out = run(ref)
        assert code == 0, out[-4000:]
        sequences.append(ordered_commits(ref / "lake", before))
    print("undisturbed commit order:", sequences)
    reference_s = time.perf_counter() - started

    home = tmp_path / "disturbed"
    outcomes: list[dict] = []
    for phase, schedule in enumerate(SCHEDULE, 1):
        land(inputs, home, phase)
        for stage in schedule:
            tables = {t for t, s in STAGE.items() if s == stage}
            later = {t for t, s in STAGE.items() if ORDER.index(s) > ORDER.index(stage)}
            # the nth new commit to a table of that stage (later stages: the next one; registry:
            # sweep_trials, models or model_events, since a rerun logs its trials again first)
            nth = {"ingestion": rng.choice((1, 1, 2)), "registry": rng.choice((1, 2, 3))}.get(
                stage, 1
            )
            delay = rng.uniform(0.0, 0.25)
            before = commits(home / "lake")
            proc = start_run(home)
            while proc.poll() is None:
                new = commits(home / "lake") - before
                if sum(c.split("/")[0] in tables for c in new) >= nth or any(
                    c.split("/")[0] in later for c in new
                ):  # that stage is done: the first commit of a later one
                    break
                time.sleep(0.005)
            if proc.poll() is not None:  # that stage had nothing (more) to write this time
                out, _ = proc.communicate()
                assert proc.returncode == 0, out[-4000:]
                outcomes.append(
                    {
                        "phase": phase,
                        "target": f"{stage} commit #{nth}",
                        "delay_ms": round(delay * 1000),
                        "outcome": f"run finished first (exit {proc.returncode})",
                    }  # fmt: skip
                )
                break  # that run did everything: no later stage has work left to kill
            time.sleep(delay)
            kill_group(proc)
            state = check_after_kill(home)
            after = sorted(
                commits(home / "lake") - before,
                key=lambda c: _commit_path(home / "lake", c).stat().st_mtime_ns,
            )
            ours = [c for c in after if c.split("/")[0] in tables]
            hit = (
                ours[nth - 1]
                if len(ours) >= nth
                else next(c for c in after if c.split("/")[0] in later)
            )
            stage = STAGE[hit.split("/")[0]]
            outcomes.append(
                {
                    "phase": phase,
                    "target": f"{stage} commit #{nth}: {hit}",
                    "stage": stage,
                    "delay_ms": round(delay * 1000),
                    "commits_before_kill": len(after),
                    "last_commit": after[-1],
                    "outcome": "killed; tables read; ok videos complete"
                    + (
                        f"; {state['frames_of_not_ok_videos']} frame rows of a not-yet-ok video"
                        if state["frames_of_not_ok_videos"]
                        else ""
                    ),
                }
            )
        codes = converge(home)
        outcomes.append(
            {"phase": phase, "target": "rerun", "outcome": f"converged, exit codes {codes}"}
        )
        check_converged(home)

    kills = [o for o in outcomes if o["outcome"].startswith("killed")]
    print_table(
        "SIGKILL of lensline run (process group) — fault, outcome",
        [
            (
                o["phase"],
                o["target"],
                o.get("stage", ""),
                o.get("delay_ms", ""),
                o.get("last_commit", ""),
                o["outcome"],
            )
            for o in outcomes
        ],  # fmt: skip
        ("phase", "kill at commit", "stage", "delay ms", "last commit seen", "outcome"),
    )
    record(tmp_path, "kill_anywhere", outcomes)
    assert len(kills) >= MIN_KILLS, f"only {len(kills)} kills landed"
    assert {o["stage"] for o in kills} >= {"ingestion", "label import", "curation", "registry"}
    assert any(o["target"].split(": ")[-1].startswith(("models/", "model_events/")) for o in kills)

    # the converged lake equals the undisturbed one
    want, got = read_lake(ref / "lake"), read_lake(home / "lake")
    assert sorted(got) == sorted(want)
    for name in want:
        a = want[name]
        b = got[name]
        assert sorted(a.columns) == sorted(b.columns), name
        from tests.reliability.harness import normalise

        got_rows = normalise(b, ignore=IGNORE, home=home)
        want_rows = normalise(a, ignore=IGNORE, home=ref)
        if name in ATTEMPT_LOGS:  # one row per training attempt: a killed attempt is logged too
            assert set(got_rows) == set(want_rows), name
        else:
            assert got_rows == want_rows, name
    # the same number of models and model events: no duplicate registration after a kill
    assert got["models"].height == want["models"].height
    print(
        f"{len(kills)} kills; undisturbed reference {reference_s:.0f}s; "
        f"total {time.perf_counter() - started:.0f}s"
    )


def test_a_graph_run_killed_after_its_automation_tick_is_requested_again(home, write_video):
    """Regression: ``run_pending`` stored the automation cursor *before* the graph run it
    requested; a SIGKILL during that run then lost the request for good (the next run said
    "up to date" and never trained on the new labels). Found by the kill test above."""
    write_video(home / "landing/videos/cam1/a.mp4", 12)
    labels_dir = home / "landing/labels"
    labels_dir.mkdir(parents=True)
    (labels_dir / "main.csv").write_text("video,frame_index,label\na.mp4,1,good\n")
    small = {"select": None, "extra": {"RELIABILITY_DEFS": "tests.reliability.kill_defs:defs"}}
    code, out = run(home, **small)
    assert code == 0 and (home / "trainings").read_text() == "1", out[-3000:]

    (labels_dir / "more.csv").write_text("video,frame_index,label\na.mp4,2,dent\n")
    (home / "kill_in_training").touch()
    code, out = run(home, **small)
    assert code == -9, out[-3000:]  # the run died in trained_model
    (home / "kill_in_training").unlink()

    code, out = run(home, **small)
    assert code == 0, out[-3000:]
    summary = summary_of(out)
    assert summary["recovered_runs"] and "trained_model" in summary["downstream"], summary
    assert (home / "trainings").read_text() == "2"
    assert (home / "evaluations").read_text() == "2"

    # killed after trained_model materialised, in model_evaluation: Dagster's eager condition
    # ignores an update made by a run that also targeted the downstream asset, so only the
    # resumed selection of the dead run evaluates the new model
    (labels_dir / "third.csv").write_text("video,frame_index,label\na.mp4,3,good\n")
    (home / "kill_in_evaluation").touch()
    code, out = run(home, **small)
    assert code == -9 and (home / "trainings").read_text() == "3", out[-3000:]
    (home / "kill_in_evaluation").unlink()
    code, out = run(home, **small)
    assert code == 0, out[-3000:]
    assert "model_evaluation" in summary_of(out)["downstream"], summary_of(out)
    assert (home / "evaluations").read_text() == "3"
    code, out = run(home, **small)
    assert summary_of(out)["downstream"] == []  # settled: nothing left to resume


def test_a_video_complete_in_the_lake_but_not_in_dagster_is_ingested_again(home, write_video):
    """Regression: a kill after the lake commits of a video and before Dagster stored its
    materialisations left the partition missing for Dagster while ``stale_videos`` called it
    complete; the automation then never requested ``frame_embeddings`` (a missing upstream
    partition holds it back) and the next model trained on the old dataset. Found by the kill
    test above; here the process kills itself right after the ``videos`` commit."""
    write_video(home / "landing/videos/cam1/a.mp4", 12)
    small = {
        "select": "group:ingest",
        "extra": {"RELIABILITY_DEFS": "tests.reliability.kill_defs:defs"},
    }
    (home / "kill_after_videos_commit").touch()
    code, out = run(home, **small)
    assert code == -9, out[-3000:]
    (home / "kill_after_videos_commit").unlink()
    videos = read_lake(home / "lake")["videos"]
    assert videos["status"].to_list() == ["ok"]  # complete in the lake, unknown to Dagster

    code, out = run(home, **small)
    assert code == 0, out[-3000:]
    assert [v for v, *_ in summary_of(out)["ingested"]] == ["cam1__a"]
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert "cam1__a" in instance.get_materialized_partitions(dg.AssetKey("frames"))
        # and its drift step ran (a kill before it lost the video's drift rows for good)
        assert "cam1__a" in instance.get_materialized_partitions(dg.AssetKey("drift_report"))
    code, out = run(home, **small)
    assert summary_of(out)["ingested"] == []

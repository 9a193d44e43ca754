"""Lake maintenance: compaction, a vacuum that keeps every version a registered model references,
dry runs, idempotence, the job, the CLI and S3 (moto).

Age without sleeping: :func:`backdate` rewrites one commit's timestamps (commit, added files'
modification times, removals' deletion timestamps) and the objects' mtimes, as if that commit
had been written ``days`` ago.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from lake.maintenance import (
    MaintenanceSettings,
    Reference,
    maintain_lake,
    maintain_table,
    references,
)
from lake.storage import LensStorage
from lake.tables import TABLES

NO_RETENTION = MaintenanceSettings(retention=timedelta(0), margin=timedelta(0), min_files=4)


def append(storage: LensStorage, table: str, n: int) -> pl.DataFrame:
    """``n`` one-row appends (``n`` commits, ``n`` files); the rows written."""
    rows = [pl.DataFrame({"camera": [f"cam{i % 3}"], "i": [i]}) for i in range(n)]
    for row in rows:
        write_deltalake(
            storage.table_uri(table), row.to_arrow(), mode="append",
            storage_options=storage.storage_options(),
        )  # fmt: skip
    return pl.concat(rows)


def overwrite(storage: LensStorage, table: str, value: int) -> int:
    """Replace the whole table with one row; the new version."""
    uri = storage.table_uri(table)
    write_deltalake(uri, pl.DataFrame({"i": [value]}).to_arrow(), mode="overwrite")
    return DeltaTable(uri).version()


def read(storage: LensStorage, table: str, version: int | None = None) -> pl.DataFrame:
    return storage.require_table(table, version=version).sort("i")


def backdate(uri: str, version: int, days: float) -> None:
    """Make commit ``version`` of the local table at ``uri`` look ``days`` old."""
    at = time.time() - days * 86400
    ms = int(at * 1000)
    log = Path(uri) / "_delta_log" / f"{version:020}.json"
    lines = []
    for line in log.read_text().splitlines():
        action = json.loads(line)
        if "commitInfo" in action:
            action["commitInfo"]["timestamp"] = ms
        if "add" in action:
            action["add"]["modificationTime"] = ms
            os.utime(Path(uri) / action["add"]["path"], (at, at))
        if "remove" in action:
            action["remove"]["deletionTimestamp"] = ms
        lines.append(json.dumps(action))
    log.write_text("\n".join(lines) + "\n")
    os.utime(log, (at, at))


def register(
    storage: LensStorage, *, dataset_version: int, label_version: int | None = None
) -> str:
    """A registered model trained on ``dataset`` at ``dataset_version`` (the registry's own API)."""
    return storage.registry().register_challenger(
        checkpoint_uri=storage.uri("artifacts", "models", "m", "model.safetensors"),
        checkpoint_sha256="ab" * 32,
        metrics={"accuracy": 0.9},
        config={},
        dataset_version=dataset_version,
        label_version=label_version,
    )


def dataset_history(storage: LensStorage) -> tuple[str, dict[int, pl.DataFrame]]:
    """``dataset`` v0..v4 written 50, 40, 30, 10 and 0 days ago; the rows of each version."""
    uri = storage.table_uri("dataset")
    rows = {}
    for v, days in enumerate([50, 40, 30, 10, 0]):
        assert overwrite(storage, "dataset", v) == v
        rows[v] = read(storage, "dataset", v)
        if days:
            backdate(uri, v, days)
    return uri, rows


def test_compaction_reduces_files_and_reads_the_same(home):
    storage = LensStorage()
    written = append(storage, "frames", 40)
    before = read(storage, "frames")

    (report,) = maintain_lake(storage, tables=["frames"])

    assert (report.files_before, report.files_after) == (40, 1)
    assert report.compacted == "40 -> 1 files"
    assert report.version_after == report.version_before + 1  # one OPTIMIZE commit
    assert read(storage, "frames").equals(before)
    assert before.equals(written.sort("i"))
    assert (report.checkpoint, report.vacuumed) == (f"wrote v{report.version_after}", [])


def test_a_version_a_model_references_stays_readable_after_vacuum(home):
    storage = LensStorage()
    uri, rows = dataset_history(storage)
    model = register(storage, dataset_version=2)

    (report,) = maintain_lake(storage, tables=["dataset"])

    assert report.protected == Reference("dataset", 2, f"model {model} (challenger)")
    assert 30 * 24 < report.retention_hours <= 30 * 24 + 2  # its age plus the margin
    # the files only versions before the referenced one read (v0's, v1's) are gone
    assert len(report.vacuumed) == 2
    assert not any((Path(uri) / p).exists() for p in report.vacuumed)
    for v in (0, 1):
        with pytest.raises(Exception):  # noqa: B017 (deltalake's error for a missing file)
            read(storage, "dataset", v)
    # every version since the referenced one reads as it was written, the model's included
    for v in (2, 3, 4):
        assert read(storage, "dataset", v).equals(rows[v])
        assert pl.read_delta(uri, version=v).equals(rows[v])
    assert report.log_cleanup.startswith("skipped: v2 is older than the log retention")
    assert report.version_after == report.version_before  # no commit: the data version stays


def test_without_the_model_the_same_version_is_vacuumed(home):
    """The control: the registry row is what keeps dataset v2's files."""
    storage = LensStorage()
    dataset_history(storage)

    (report,) = maintain_lake(storage, tables=["dataset"])

    assert report.protected is None and report.retention_hours == 7 * 24
    assert len(report.vacuumed) == 3  # the files of v0, v1 and v2
    with pytest.raises(Exception):  # noqa: B017
        read(storage, "dataset", 2)
    assert read(storage, "dataset").equals(read(storage, "dataset", 4))


def test_compacted_files_of_a_referenced_version_survive_vacuum(home):
    storage = LensStorage()
    uri = storage.table_uri("frames")
    append(storage, "frames", 12)
    referenced = DeltaTable(uri).version()
    rows = read(storage, "frames", referenced)
    append(storage, "frames", 4)
    ref = Reference("frames", referenced, "pinned by the test")

    first = maintain_table(storage, "frames", refs=[ref], settings=NO_RETENTION)
    second = maintain_table(storage, "frames", refs=[ref], settings=NO_RETENTION)

    assert first.compacted == "16 -> 1 files" and first.vacuumed == []
    assert second.vacuumed == []  # compaction's leftovers are the referenced version's files
    assert read(storage, "frames", referenced).equals(rows)
    # unreferenced and out of retention, the same files go
    third = maintain_table(storage, "frames", settings=NO_RETENTION)
    assert len(third.vacuumed) == 16
    assert third.stored_after == 1 and read(storage, "frames").height == 16


def test_files_a_checkpoint_forgot_are_still_vacuumed(home):
    """A checkpoint drops tombstones older than 7 days: lite vacuum alone would keep them forever."""
    storage = LensStorage()
    uri = storage.table_uri("videos")
    for v in range(3):
        overwrite(storage, "videos", v)
    for v in range(3):
        backdate(uri, v, 20 - v)
    DeltaTable(uri).create_checkpoint()
    assert DeltaTable(uri).vacuum(retention_hours=168, dry_run=True) == []  # deltalake's own

    (report,) = maintain_lake(storage, tables=["videos"])

    assert len(report.vacuumed) == 2 and report.stored_after == 1
    assert read(storage, "videos")["i"].to_list() == [2]


def test_dry_run_removes_nothing(home):
    storage = LensStorage()
    uri, _ = dataset_history(storage)
    append(storage, "frames", 20)
    stored = sorted(p.name for p in Path(uri).parent.rglob("*") if p.is_file())

    reports = {r.table: r for r in maintain_lake(storage, dry_run=True)}

    assert reports["dataset"].vacuumed and reports["frames"].compacted == "would compact 20 files"
    assert sorted(p.name for p in Path(uri).parent.rglob("*") if p.is_file()) == stored
    assert all(r.version_after == r.version_before for r in reports.values())
    assert read(storage, "dataset", 0).height == 1


def test_running_twice_is_idempotent(home):
    storage = LensStorage()
    dataset_history(storage)
    register(storage, dataset_version=2)
    append(storage, "frames", 20)

    first = {r.table: r for r in maintain_lake(storage)}
    second = {r.table: r for r in maintain_lake(storage)}

    assert first["frames"].compacted == "20 -> 1 files"
    assert second["frames"].compacted.startswith("skipped: 1 files")
    assert all(not r.vacuumed for r in second.values())
    assert all(r.version_after == r.version_before for r in second.values())
    assert {t: r.files_after for t, r in first.items()} == {
        t: r.files_after for t, r in second.items()
    }
    assert second["dataset"].checkpoint.endswith("already")


def test_references_include_the_pending_checkpoint(home):
    storage = LensStorage()
    model = register(storage, dataset_version=3, label_version=5)
    storage.write_bytes(
        storage.uri("artifacts", "io", "trained_model.json"),
        json.dumps({"dataset_version": "4", "label_version": "6"}).encode(),
    )

    refs = references(storage)

    assert Reference("dataset", 3, f"model {model} (challenger)") in refs
    assert Reference("labels", 5, f"model {model} (challenger)") in refs
    assert Reference("dataset", 4, "trained checkpoint, not evaluated") in refs
    assert Reference("labels", 6, "trained checkpoint, not evaluated") in refs


def test_the_job_runs_in_a_temp_home_and_reports_metadata(home):
    from orchestration.definitions import defs

    storage = LensStorage()
    append(storage, "frames", 20)
    job = defs.resolve_job_def("lake_maintenance_job")

    result = job.execute_in_process(resources={"storage": storage})

    assert result.success
    (event,) = [e for e in result.get_step_success_events()]
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata  # type: ignore[union-attr]
    assert "| frames |" in metadata["tables"].value
    assert "20 -> 1 files" in metadata["table/frames"].value
    assert metadata["dry_run"].value is False
    assert event.step_key == "lake_maintenance"
    assert DeltaTable(storage.table_uri("frames")).get_add_actions().num_rows == 1


def test_the_schedule_is_weekly_and_queues_in_the_graph_writers_pool():
    from lake import pools
    from orchestration.definitions import defs
    from orchestration.maintenance import maintenance_schedule

    schedule = defs.resolve_schedule_def("lake_maintenance_schedule")
    assert schedule.cron_schedule == "0 3 * * 0"
    assert schedule.job_name == "lake_maintenance_job"
    job = defs.resolve_job_def("lake_maintenance_job")
    assert {n.definition.pool for n in job.graph.nodes} == {pools.GRAPH}
    assert maintenance_schedule("0 2 * * 6").cron_schedule == "0 2 * * 6"
    assert isinstance(schedule, dg.ScheduleDefinition)


def test_cli_lake_maintain(home, capsys):
    from orchestration.cli import main

    storage = LensStorage()
    append(storage, "frames", 20)

    assert main(["lake", "maintain", "--dry-run", "--table", "frames"]) == 0
    assert "would compact 20 files" in capsys.readouterr().out
    assert DeltaTable(storage.table_uri("frames")).get_add_actions().num_rows == 20
    assert main(["lake", "maintain"]) == 0
    out = capsys.readouterr().out
    assert "frames" in out and "20 -> 1" in out
    assert main(["lake", "maintain", "--table", "nope"]) == 2


def test_on_s3(s3_env):
    storage = LensStorage()
    assert storage.is_s3
    append(storage, "frames", 12)
    opts = storage.storage_options()
    referenced = DeltaTable(storage.table_uri("frames"), storage_options=opts).version()
    rows = read(storage, "frames", referenced)
    ref = Reference("frames", referenced, "pinned by the test")

    first = maintain_table(storage, "frames", refs=[ref], settings=NO_RETENTION)
    kept = maintain_table(storage, "frames", refs=[ref], settings=NO_RETENTION)
    assert first.compacted == "12 -> 1 files" and kept.vacuumed == []
    assert read(storage, "frames", referenced).equals(rows)

    gone = maintain_table(storage, "frames", settings=NO_RETENTION)
    assert len(gone.vacuumed) == 12 and gone.stored_after == 1
    assert read(storage, "frames").equals(rows)


def test_a_referenced_version_whose_log_is_gone_is_reported_lost(home):
    """Writers' own log cleanup can drop a referenced version's commits: said, not hidden."""
    storage = LensStorage()
    uri = storage.table_uri("dataset")
    for v in range(5):
        overwrite(storage, "dataset", v)
    DeltaTable(uri).create_checkpoint()
    for v in range(4):
        (Path(uri) / "_delta_log" / f"{v:020}.json").unlink()
    register(storage, dataset_version=1)

    (report,) = maintain_lake(storage, tables=["dataset"])

    assert report.lost == [1]
    assert "LOST (no longer loads): v1" in report.row()["protected"]
    assert read(storage, "dataset")["i"].to_list() == [4]


def test_whole_table_writers_leave_log_cleanup_to_maintenance(home):
    """Delta writers may delete commits older than ``delta.logRetentionDuration`` when they
    checkpoint (``delta.enableExpiredLogCleanup``, on by default): LensStorage creates the
    tables written whole (dataset, labels: the versions models are trained on) with it off, so
    only lake_maintenance, which protects registered models' versions, cleans their log."""
    storage = LensStorage()
    row = {"video_id": "cam1__a", "frame_index": 1, "label": "good", "split": "train",
           "action": "keep", "original_label": "good"}  # fmt: skip
    storage.write_table(TABLES["dataset"].conform([row]), "dataset")
    storage.write_table(TABLES["dataset"].conform([{**row, "frame_index": 2}]), "dataset")
    config = DeltaTable(storage.table_uri("dataset")).metadata().configuration
    assert config["delta.enableExpiredLogCleanup"] == "false"
    assert storage.require_table("dataset", version=0)["frame_index"].to_list() == [1]

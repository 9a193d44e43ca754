"""``frames`` is Delta-partitioned by ``camera_id``: created so, replaced per video within one
partition, read with the camera or video filter pushed down; a table created unpartitioned keeps
working until ``lake_maintenance`` repartitions it (docs/lake.md "Partitioning")."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from lake.frames import KEYS, camera_frames, video_frames
from lake.maintenance import maintain_table
from lake.storage import LensStorage
from lake.tables import TABLES


def _rows(camera: str, video: str, n: int = 4, brightness: float = 0.5) -> pl.DataFrame:
    return TABLES["frames"].conform(
        pl.DataFrame(
            {
                "video_id": [video] * n,
                "camera_id": [camera] * n,
                "frame_index": list(range(n)),
                "timestamp_s": [i * 0.5 for i in range(n)],
                "uri": [f"artifacts/frames/{video}/{i:06d}.jpg" for i in range(n)],
                "brightness": [brightness] * n,
            }
        )
    )


def _put(storage: LensStorage, camera: str, video: str, n: int = 4, **kw) -> int:
    """One video's rows as ingestion writes them (lake.ingest._store_frames)."""
    where = storage.and_predicate(camera_id=camera, video_id=video)
    return storage.write_table(_rows(camera, video, n, **kw), "frames", replace_where=where)


def _fill(storage: LensStorage) -> None:
    for camera, video in [("cam1", "cam1__a"), ("cam1", "cam1__b"), ("cam2", "cam2__a")]:
        _put(storage, camera, video)


def _files(storage: LensStorage) -> set[str]:
    table = DeltaTable(storage.table_uri("frames"))
    return set(pl.DataFrame(table.get_add_actions())["path"].to_list())


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(list(TABLES["frames"].columns)).sort(KEYS)


def test_a_new_frames_table_is_partitioned_by_camera(home):
    storage = LensStorage()
    _fill(storage)
    assert DeltaTable(storage.table_uri("frames")).metadata().partition_columns == ["camera_id"]
    assert {p.split("/")[0] for p in _files(storage)} == {"camera_id=cam1", "camera_id=cam2"}
    frames = storage.require_table("frames")
    assert frames.schema == TABLES["frames"].schema  # the contract's columns, in order
    assert frames.height == 12


def test_a_per_video_replace_is_one_commit_inside_its_partition(home):
    storage = LensStorage()
    _fill(storage)
    before = _files(storage)
    version = _put(storage, "cam1", "cam1__a", n=2, brightness=0.9)

    assert version == storage.table_version("frames") and version == 3  # one commit
    commit = Path(storage.table_uri("frames"), "_delta_log", f"{version:020d}.json")
    actions = [json.loads(line) for line in commit.read_text().splitlines()]
    removed = [a["remove"]["path"] for a in actions if "remove" in a]
    added = [a["add"]["path"] for a in actions if "add" in a]
    assert removed and all(p.startswith("camera_id=cam1/") for p in removed + added)
    after = _files(storage)
    cam2 = {p for p in before if p.startswith("camera_id=cam2/")}
    assert cam2 <= after  # the other camera's files are untouched
    frames = storage.require_table("frames")
    assert frames.filter(pl.col("video_id") == "cam1__a")["brightness"].to_list() == [0.9, 0.9]
    assert frames.filter(pl.col("video_id") != "cam1__a").height == 8


def test_writers_on_different_cameras_at_once_all_land(home):
    """Threads write per-video replaces on different cameras at the same instant, racing to
    create the table first and then on every commit: deltalake's conflict checker sees the
    replaces touch different partitions, so every write lands and none is lost."""
    storage = LensStorage()
    cameras, rounds = 4, 3
    barrier = threading.Barrier(cameras)
    errors: list[str] = []

    def write(camera: str) -> None:
        try:
            for r in range(rounds):
                barrier.wait()
                _put(storage, camera, f"{camera}__v", n=2 + r)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(f"{camera}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=write, args=(f"cam{i}",)) for i in range(cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = dict(storage.require_table("frames").group_by("video_id").len().iter_rows())
    assert counts == {f"cam{i}__v": 2 + rounds - 1 for i in range(cameras)}
    assert DeltaTable(storage.table_uri("frames")).metadata().partition_columns == ["camera_id"]


def test_reads_filtered_by_camera_or_video_equal_a_filtered_full_read(home):
    storage = LensStorage()
    _fill(storage)
    full = storage.require_table("frames")
    one_camera = full.filter(pl.col("camera_id") == "cam1")
    one_video = full.filter(pl.col("video_id") == "cam1__b")
    assert _sorted(camera_frames(storage, "cam1")).equals(_sorted(one_camera))
    assert _sorted(video_frames(storage, "cam1__b")).equals(_sorted(one_video))
    assert _sorted(video_frames(storage, "cam1__b", camera_id="cam1")).equals(_sorted(one_video))
    assert video_frames(storage, "cam1__b", camera_id="cam2").is_empty()
    assert camera_frames(storage, "nope").schema == TABLES["frames"].schema
    narrow = storage.require_table("frames", columns=KEYS, where=pl.col("camera_id") == "cam2")
    assert narrow.columns == KEYS and narrow.sort(KEYS).equals(
        full.filter(pl.col("camera_id") == "cam2").select(KEYS).sort(KEYS)
    )


def _unpartitioned(storage: LensStorage) -> pl.DataFrame:
    """A ``frames`` table as homes made before partitioning have it: one folder, one video per
    commit (the old writer appended the first video, then replaced per video)."""
    uri, opts = storage.table_uri("frames"), storage.storage_options()
    rows = [_rows("cam1", "cam1__a"), _rows("cam1", "cam1__b"), _rows("cam2", "cam2__a")]
    for df in rows:
        df.write_delta(uri, mode="append", storage_options=opts)
    assert DeltaTable(uri, storage_options=opts).metadata().partition_columns == []
    return pl.concat(rows)


def test_an_unpartitioned_table_still_accepts_writes(home):
    storage = LensStorage()
    _unpartitioned(storage)
    _put(storage, "cam2", "cam2__a", n=2, brightness=0.9)  # the partition-first predicate
    _put(storage, "cam3", "cam3__a")
    storage.delete_rows("frames", storage.eq_predicate("video_id", "cam1__b"))
    assert DeltaTable(storage.table_uri("frames")).metadata().partition_columns == []
    counts = dict(storage.require_table("frames").group_by("video_id").len().iter_rows())
    assert counts == {"cam1__a": 4, "cam2__a": 2, "cam3__a": 4}
    assert camera_frames(storage, "cam2")["brightness"].to_list() == [0.9, 0.9]


def test_maintenance_repartitions_an_old_table_once_with_the_same_rows(home):
    storage = LensStorage()
    rows = _unpartitioned(storage)
    uri = storage.table_uri("frames")
    old = DeltaTable(uri).version()

    dry = maintain_table(storage, "frames", dry_run=True)
    assert dry.partitioning == "would repartition by camera_id"
    assert DeltaTable(uri).metadata().partition_columns == []

    report = maintain_table(storage, "frames")
    table = DeltaTable(uri)
    assert report.partitioning == "repartitioned by camera_id (12 rows)"
    assert report.row()["partitioning"] == report.partitioning
    assert table.metadata().partition_columns == ["camera_id"]
    assert table.version() == old + 1  # one overwrite commit
    assert _sorted(storage.require_table("frames")).equals(_sorted(rows))
    assert _sorted(storage.require_table("frames", version=old)).equals(_sorted(rows))

    again = maintain_table(storage, "frames")
    assert again.partitioning == "" and "partitioning" not in again.row()
    assert DeltaTable(uri).version() == old + 1
    _put(storage, "cam1", "cam1__a", n=1)  # ingestion goes on, in the camera's partition
    assert {p.split("/")[0] for p in _files(storage)} == {"camera_id=cam1", "camera_id=cam2"}


def test_after_compaction_writers_on_different_cameras_still_do_not_conflict(home):
    """Compaction (lake_maintenance) merges files: unpartitioned, one file then holds every
    video and concurrent per-video replaces conflict on it (deltalake: 'a concurrent
    transaction added new data'); partitioned, each camera's rows stay in their own files."""
    storage = LensStorage()
    cameras = 4
    for v in range(3):
        for c in range(cameras):
            _put(storage, f"cam{c}", f"cam{c}__v{v}")
    DeltaTable(storage.table_uri("frames")).optimize.compact()
    assert len(_files(storage)) == cameras
    barrier = threading.Barrier(cameras)
    errors: list[str] = []

    def write(camera: str) -> None:
        barrier.wait()
        try:
            _put(storage, camera, f"{camera}__v1", n=1)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(f"{camera}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=write, args=(f"cam{c}",)) for c in range(cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = dict(storage.require_table("frames").group_by("video_id").len().iter_rows())
    assert counts == {f"cam{c}__v{v}": 1 if v == 1 else 4 for c in range(cameras) for v in range(3)}


def test_maintenance_repartitions_on_s3(s3_env):
    storage = LensStorage()
    assert storage.is_s3
    rows = _unpartitioned(storage)
    report = maintain_table(storage, "frames")
    assert report.partitioning == "repartitioned by camera_id (12 rows)"
    table = DeltaTable(storage.table_uri("frames"), storage_options=storage.storage_options())
    assert table.metadata().partition_columns == ["camera_id"]
    assert _sorted(storage.require_table("frames")).equals(_sorted(rows))
    assert _sorted(camera_frames(storage, "cam2")).equals(
        _sorted(rows.filter(pl.col("camera_id") == "cam2"))
    )


def test_a_writer_committing_during_repartitioning_is_not_lost(home, monkeypatch):
    """deltalake lets a full overwrite commit over a concurrent writer's commit; maintenance
    sees it (its commit is not the next version), restores the version before its rewrite
    (the writer's rows, unpartitioned) and reports it skipped; the next run repartitions."""
    storage = LensStorage()
    rows = _unpartitioned(storage)
    read = LensStorage.require_table

    def read_then_a_writer_commits(self, name, **kw):
        out = read(self, name, **kw)
        monkeypatch.setattr(LensStorage, "require_table", read)
        _put(storage, "cam3", "cam3__new", n=2)  # ingestion, between maintenance's read and write
        return out

    monkeypatch.setattr(LensStorage, "require_table", read_then_a_writer_commits)
    report = maintain_table(storage, "frames")
    assert report.partitioning.startswith("skipped: a writer committed during repartitioning")
    assert DeltaTable(storage.table_uri("frames")).metadata().partition_columns == []
    expected = pl.concat([rows, _rows("cam3", "cam3__new", 2)])
    assert _sorted(storage.require_table("frames")).equals(_sorted(expected))

    again = maintain_table(storage, "frames")
    assert again.partitioning == "repartitioned by camera_id (14 rows)"
    assert _sorted(storage.require_table("frames")).equals(_sorted(expected))

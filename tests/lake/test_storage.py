"""LensStorage round trips, the same calls on a local home and on S3 (a real moto server)."""

from __future__ import annotations

import polars as pl
import pytest

from lake.frames import KEYS
from lake.storage import LensStorage
from lake.tables import TABLES


@pytest.fixture(params=["local", "s3"])
def storage(request) -> LensStorage:
    request.getfixturevalue("s3_env" if request.param == "s3" else "home")
    return LensStorage()


def _rows(video: str, labels: list[str]) -> pl.DataFrame:
    rows = {"video_id": [video] * len(labels), "frame_index": range(len(labels)), "label": labels}
    return TABLES["labels"].conform(pl.DataFrame(rows))


def test_table_round_trip_versions_and_replace_where(storage):
    assert storage.read_table("labels") is None and storage.table_version("labels") is None
    df = pl.concat([_rows("a", ["good", "dent"]), _rows("b", ["good"])])
    v0 = storage.write_table(df, "labels")
    assert storage.read_table("labels").sort(KEYS).equals(df)
    assert storage.write_table(df.reverse(), "labels", skip_unchanged=True) == v0  # no empty commit
    v1 = storage.write_table(
        _rows("b", ["scratch"]), "labels", replace_where=storage.eq_predicate("video_id", "b")
    )
    assert v1 == v0 + 1
    assert storage.read_table("labels").sort(KEYS)["label"].to_list() == ["good", "dent", "scratch"]
    assert storage.read_table("labels", version=v0).sort(KEYS).equals(df)  # time travel
    assert storage.read_table("labels", columns=["label"]).columns == ["label"]
    with pytest.raises(ValueError, match="refusing"):
        storage.eq_predicate("video_id", "x' OR '1'='1")


def test_delete_rows_per_video_as_ingest_writes_them(storage):
    """Ingest replaces one video's rows per commit, so every data file holds one video."""
    storage.write_table(_rows("a", ["good"]), "labels", mode="append")
    v = storage.write_table(_rows("b", ["dent"]), "labels", mode="append")
    assert storage.delete_rows("labels", storage.eq_predicate("video_id", "zzz")) == v  # no commit
    assert storage.delete_rows("labels", storage.eq_predicate("video_id", "a")) == v + 1
    assert storage.read_table("labels")["video_id"].to_list() == ["b"]
    assert storage.delete_rows("missing", storage.eq_predicate("video_id", "a")) is None


def test_delete_rows_in_a_file_holding_several_videos(home):
    storage = LensStorage()
    storage.write_table(pl.concat([_rows("a", ["good"]), _rows("b", ["dent"])]), "labels")
    storage.delete_rows("labels", storage.eq_predicate("video_id", "a"))
    assert storage.read_table("labels")["video_id"].to_list() == ["b"]


def test_file_round_trip(storage, tmp_path):
    local = tmp_path / "a.bin"
    local.write_bytes(b"abc")
    uri = storage.uri("artifacts", "x", "a.bin")
    assert storage.put_file(local, uri) is True
    assert storage.put_file(local, uri) is False  # identical object: not copied again
    assert storage.read_bytes(uri) == b"abc"
    storage.write_bytes(storage.uri("artifacts", "x", "sub", "b.txt"), b"hello")
    files = storage.list_files("artifacts", "x")
    assert [(f.key, f.size) for f in files] == [("a.bin", 3), ("sub/b.txt", 5)]
    assert files[0].uri == uri
    assert [f.key for f in storage.list_files("artifacts", "x", suffixes=(".txt",))] == [
        "sub/b.txt"
    ]
    assert storage.list_files("nothing", "here") == []
    with storage.local_path(uri) as path:
        assert path.read_bytes() == b"abc"
    assert storage.fetch_local([uri])[0].read_bytes() == b"abc"
    local.write_bytes(b"abcd")
    assert storage.put_file(local, uri) is True and storage.read_bytes(uri) == b"abcd"
    storage.delete([uri])
    assert [f.key for f in storage.list_files("artifacts", "x")] == ["sub/b.txt"]


def _race_write(root: str, video_id: str, start: float) -> str:
    """One of several processes writing its video's row into a table that does not exist yet."""
    import time

    import polars as pl

    from lake.storage import LensStorage
    from lake.tables import TABLES

    storage = LensStorage(root=root)
    row = TABLES["videos"].conform(pl.DataFrame({"video_id": [video_id]}))
    while time.time() < start:
        pass
    try:
        storage.write_table(row, "videos", replace_where=storage.eq_predicate("video_id", video_id))
        return "ok"
    except Exception as e:  # noqa: BLE001 - reported back to the test
        return f"{type(e).__name__}: {e}"


def test_writers_racing_to_create_a_table_all_land(tmp_path):
    """Eight processes create one table at the same instant with per-video replaces: the
    losers of the creation race write again onto the winner's table (deltalake fails their
    first commit with 'protocol changed'); no row is lost, none duplicated."""
    import multiprocessing as mp
    import time

    videos = [f"cam{i}__v{i}" for i in range(8)]
    start = time.time() + 4.0  # every process imported and waiting
    with mp.get_context("spawn").Pool(8) as pool:
        results = pool.starmap(_race_write, [(str(tmp_path), v, start) for v in videos])
    assert results == ["ok"] * 8, results
    table = LensStorage(root=str(tmp_path)).read_table("videos")
    assert sorted(table["video_id"].to_list()) == videos

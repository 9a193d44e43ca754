"""A ``frames`` table written before ``item_presence`` / ``item_present`` joined the contract:
reads fill them as null, the next ingestion's per-video replace adds them to the table."""

from __future__ import annotations

import polars as pl

from lake.frames import camera_frames, ok_frames, video_frames
from lake.storage import LensStorage
from lake.tables import TABLES

NEW = ["item_presence", "item_present"]


def _rows(video: str, n: int = 3, present: bool | None = None) -> pl.DataFrame:
    return TABLES["frames"].conform(
        pl.DataFrame(
            {
                "video_id": [video] * n, "camera_id": ["cam1"] * n,
                "frame_index": list(range(n)), "uri": [f"{video}/{i}.jpg" for i in range(n)],
                "item_presence": [None if present is None else float(present)] * n,
                "item_present": [present] * n,
            }
        )
    )  # fmt: skip


def test_an_old_frames_table_reads_and_takes_the_new_columns(tmp_path):
    storage = LensStorage(root=str(tmp_path))
    old = _rows("cam1__old").drop(NEW)  # as ingestion wrote it before presence
    old.write_delta(
        storage.table_uri("frames"), delta_write_options={"partition_by": ["camera_id"]}
    )
    storage.write_table(
        pl.DataFrame({"video_id": ["cam1__old", "cam1__new"], "status": ["ok", "ok"]}).pipe(
            TABLES["videos"].conform
        ),
        "videos",
    )
    for read in (video_frames(storage, "cam1__old"), camera_frames(storage, "cam1")):
        assert read.columns[-2:] == NEW and read["item_present"].null_count() == 3
    # the next ingestion replaces a video's rows with the new columns: the table gains them
    where = storage.and_predicate(camera_id="cam1", video_id="cam1__new")
    storage.write_table(_rows("cam1__new", present=True), "frames", replace_where=where)
    table = storage.read_table("frames").sort("video_id", "frame_index")
    assert set(NEW) <= set(table.columns)
    assert table.filter(pl.col("video_id") == "cam1__old")["item_present"].null_count() == 3
    assert table.filter(pl.col("video_id") == "cam1__new")["item_present"].to_list() == [True] * 3
    both = ok_frames(storage)
    assert both.height == 6 and both["item_presence"].drop_nulls().to_list() == [1.0] * 3

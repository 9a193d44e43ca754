"""The lake's table contract: conform() gives exactly the schema or refuses."""

from __future__ import annotations

import polars as pl
import pytest

from data_quality.contract import FRAMES, VIDEOS, conform


def test_conform_orders_casts_and_fills_missing_columns():
    rows = [{"frame_index": 3, "video_id": "cam1__a", "brightness": 100}]
    df = conform(rows, FRAMES)
    assert df.schema == pl.Schema(FRAMES)
    assert df.row(0, named=True)["brightness"] == 100.0
    assert df["uri"].null_count() == 1 and df["labeled"].null_count() == 1
    assert conform(pl.DataFrame(rows), FRAMES).equals(df)


def test_conform_empty_and_unknown_columns():
    assert conform([], VIDEOS).schema == pl.Schema(VIDEOS)
    assert conform(pl.DataFrame(), VIDEOS).height == 0
    with pytest.raises(ValueError, match="not in the table contract"):
        conform([{"video_id": "a", "colour": "red"}], VIDEOS)


def test_keys_and_types_the_lake_relies_on():
    for schema in (VIDEOS, FRAMES):
        assert schema["video_id"] == pl.String() and schema["sha256"] == pl.String()
    assert FRAMES["frame_index"] == pl.Int64() and VIDEOS["ingested_at"] == pl.Datetime("us", "UTC")

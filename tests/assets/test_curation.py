"""curated_dataset: time-block splits for one recording, and the frame_quality_drop WARN check."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl

from lake.storage import LensStorage
from lake.tables import TABLES
from orchestration.definitions import defs


def _lake(storage: LensStorage, *, n: int = 120, dark_share: float = 0.0, seed: int = 0) -> None:
    """One long recording (cam1) and a short one (cam2), consensus and a label_issues table."""
    rng = np.random.default_rng(seed)
    videos = ["cam1__shift", "cam2__short"]
    counts = [n, 40]
    keys = pl.DataFrame(
        {
            "video_id": np.repeat(videos, counts),
            "frame_index": np.r_[np.arange(counts[0]) * 5, np.arange(counts[1]) * 5],
        }
    )
    camera = keys["video_id"].str.split("__").list.first()
    labels = np.where(rng.random(keys.height) < 0.3, "defect", "good")
    videos_rows = {"video_id": videos, "camera_id": ["cam1", "cam2"], "status": ["ok", "ok"]}
    storage.write_table(TABLES["videos"].conform(pl.DataFrame(videos_rows)), "videos")
    storage.write_table(TABLES["frames"].conform(keys.with_columns(camera_id=camera)), "frames")
    storage.write_table(
        keys.with_columns(
            consensus_label=pl.Series(labels),
            consensus_quality=pl.lit(0.9),
            annotator_agreement=pl.lit(1.0),
            num_annotations=pl.lit(1, pl.Int64),
        ),
        "label_consensus",
    )
    dark = (camera == "cam1").to_numpy() & (rng.random(keys.height) < dark_share)
    issues = TABLES["label_issues"].conform(
        keys.with_columns(
            given_label=pl.Series(labels),
            suggested_label=pl.Series(labels),
            label_quality=pl.lit(0.95),
            is_label_issue=pl.lit(False),
            suggested_confidence=pl.lit(0.95),
            is_dark=pl.Series(dark),
            is_overexposed=pl.lit(False),
            is_blurry=pl.lit(False),
        )
    )
    storage.write_table(issues, "label_issues")


def _materialize(instance):
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey("curated_dataset")], instance=instance
    )


def test_one_long_recording_is_split_by_time_blocks_and_recorded(home):
    """Issue 7.11: with 2 videos the curated dataset used to have no 'test' frames."""
    storage = LensStorage()
    _lake(storage)
    with dg.DagsterInstance.get() as instance:
        result = _materialize(instance)
        version = storage.table_version("dataset")
        assert _materialize(instance).success  # idempotent: no new dataset version
        assert storage.table_version("dataset") == version
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    grouping = meta["split_grouping"].value
    # one recording per camera: each camera is split on its own into 7 time blocks
    assert grouping["grouping"] == "time_block" and grouping["blocks"] == 14
    assert {c: g["blocks"] for c, g in grouping["per_stratum"].items()} == {"cam1": 7, "cam2": 7}
    assert grouping["guard_frames"] == 15 and grouping["guard_dropped"] > 0
    dataset = storage.read_table("dataset")
    for (video,), rows in dataset.group_by("video_id"):  # every camera reaches every split
        assert set(rows["split"]) == {"train", "val", "test"}, video
    log = storage.read_table("curation_log")
    assert (
        log.filter(pl.col("reasons").list.contains("split_guard")).height
        == grouping["guard_dropped"]
    )
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "frame_quality_drop" and check.passed


def test_frame_quality_drop_warns_with_per_camera_counts(home):
    """Issue 7.14: curation dropping >10% of a camera's frames for quality is not silent."""
    storage = LensStorage()
    _lake(storage, dark_share=0.3)
    with dg.DagsterInstance.get() as instance:
        result = _materialize(instance)
    assert result.success  # a WARN check does not stop the run
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "frame_quality_drop" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert 0.2 < check.metadata["max_share"].value < 0.4
    table = check.metadata["per_camera"].value
    assert "cam1" in table and "dark" in table

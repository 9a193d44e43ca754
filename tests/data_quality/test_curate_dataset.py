"""curate_dataset and label_issue_report: the curation and label-issue steps on tiny seeded data."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from data_quality.curate import CurationPolicy
from data_quality.curate.dataset import curate_dataset
from data_quality.issue_report import label_issue_report


def _lake(seed: int = 0, n_videos: int = 12, per: int = 10):
    rng = np.random.default_rng(seed)
    vids = [f"cam{v % 2 + 1}__v{v:02d}" for v in range(n_videos)]
    keys = pl.DataFrame(
        {"video_id": np.repeat(vids, per), "frame_index": np.tile(np.arange(per), n_videos)}
    )
    camera = keys["video_id"].str.split("__").list.first()
    labels = np.where(rng.random(keys.height) < 0.3, "defect", "good")
    consensus = keys.with_columns(
        camera_id=camera,
        consensus_label=pl.Series(labels),
        consensus_quality=pl.lit(0.9),
        n_annotators=pl.lit(1),
        unanimous=pl.lit(False),
    )
    dark = (camera == "cam1").to_numpy() & (np.arange(keys.height) % 5 == 0)
    issues = keys.with_columns(
        given_label=pl.Series(labels),
        suggested_label=pl.Series(labels),
        label_quality=pl.lit(0.9),
        is_label_issue=pl.lit(False),
        is_outlier=pl.lit(False),
        is_near_duplicate=pl.lit(False),
        is_dark=pl.Series(dark),
        is_overexposed=pl.lit(False),
        is_blurry=pl.lit(False),
    )
    frames = keys.with_columns(camera_id=camera)
    return consensus, issues, frames


def _run(**kw):
    consensus, issues, frames = _lake()
    args = dict(
        frames=frames,
        conditions=consensus["camera_id"].to_list(),
        queue=None,
        reviews=None,
        policy=CurationPolicy(),
    )
    return curate_dataset(consensus, issues, **{**args, **kw})


def test_curate_dataset_splits_by_video_and_counts_quality_drops():
    out = _run()
    assert out.log.height == 120
    assert out.dataset.columns == [
        "video_id", "frame_index", "label", "split", "action", "original_label"
    ]  # fmt: skip
    assert out.kept.height == out.dataset.height == 120 - 12  # every 5th cam1 frame is dark
    per_split = out.videos_per_split()
    assert set(per_split) == {"train", "val", "test"} and all(per_split.values())
    videos = [v for vs in per_split.values() for v in vs]
    assert len(videos) == len(set(videos)) == 12  # no video in two splits
    drops = out.quality_drops
    assert drops["camera_id"].to_list() == ["cam1", "cam2"]
    assert drops["dropped_for_quality"].to_list() == [12, 0]
    assert out.worst_drop_share == 12 / 60
    assert dict(out.actions().iter_rows()) == {"dropped": 12, "kept": 108}
    assert out.class_balance()["len"].sum() == 108
    again = _run()
    assert again.log.equals(out.log) and again.grouping == out.grouping  # deterministic


def test_reviews_override_and_drift_requests_keep_dark_frames():
    consensus, _, _ = _lake()
    first = consensus.filter(pl.col("video_id") == "cam2__v01").row(0, named=True)
    reviews = pl.DataFrame(
        {
            "video_id": [first["video_id"]],
            "frame_index": [first["frame_index"]],
            "label": ["scratch"],
            "imported_at": [datetime(2024, 1, 1, tzinfo=UTC)],
        }
    )
    queue = pl.DataFrame({"video_id": ["cam1__v00"], "frame_index": [0]})
    out = _run(reviews=reviews, queue=queue)
    row = out.log.filter(
        (pl.col("video_id") == first["video_id"]) & (pl.col("frame_index") == first["frame_index"])
    ).row(0, named=True)
    assert (row["label"], row["action"]) == ("scratch", "reviewed")
    asked = out.log.filter((pl.col("video_id") == "cam1__v00") & (pl.col("frame_index") == 0))
    assert asked["action"].item() != "dropped"  # queued for drift: not dropped as dark


def test_label_issue_report_picks_the_worst_label_issues():
    rng = np.random.default_rng(1)
    n = 40
    keys = pl.DataFrame({"video_id": ["cam1__a"] * n, "frame_index": list(range(n))})
    truth = rng.integers(0, 2, n)
    probs = np.eye(2)[truth] * 0.9 + 0.05
    given = truth.copy()
    given[:3] = 1 - given[:3]  # three confidently wrong labels
    consensus = keys.with_columns(consensus_label=pl.Series(np.array(["defect", "good"])[given]))
    frames = keys.with_columns(
        camera_id=pl.lit("cam1"),
        uri=pl.format("frames/{}.png", "frame_index"),
        sha256=pl.lit("0" * 64),
        brightness=pl.Series(rng.uniform(0.4, 0.6, n)),
        sharpness=pl.Series(rng.uniform(100, 200, n)),
    )
    out = label_issue_report(
        consensus, classes=["defect", "good"], probs=probs, features=None, frames=frames
    )
    assert out.issues.height == n
    assert out.counts["label"] == 3
    assert sorted(out.worst["frame_index"].to_list()) == [0, 1, 2]
    assert {"uri", "sha256"} <= set(out.worst.columns)
    assert out.worst["label_quality"].is_sorted()
    assert len(out.captions) == 3 and out.captions[0].startswith("cam1__a#")
    assert "->" in out.captions[0] and " q=" in out.captions[0]

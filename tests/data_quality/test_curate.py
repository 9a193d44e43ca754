"""Curation policy and video-level, class-balanced splits."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from data_quality.curate import CurationPolicy, assign_splits, curate, decide_actions


def _frames(n_videos=20, per=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(n_videos):
        p_defect = rng.uniform(0.05, 0.6)
        for f in range(rng.integers(per // 2, per * 2)):
            rows.append(
                (
                    f"cam{v % 3}__line_{v:04d}",
                    f,
                    "defect" if rng.random() < p_defect else "good",
                    0.9,
                )
            )
    return pl.DataFrame(
        rows,
        schema=["video_id", "frame_index", "consensus_label", "consensus_quality"],
        orient="row",
    )


def _issues(frames: pl.DataFrame, **overrides) -> pl.DataFrame:
    """A clean label_issues table, then per-row overrides {row: {col: value}}."""
    n = frames.height
    cols = {
        "video_id": frames["video_id"],
        "frame_index": frames["frame_index"],
        "given_label": frames["consensus_label"],
        "suggested_label": frames["consensus_label"],
        "label_quality": [0.95] * n,
        "is_label_issue": [False] * n,
        "suggested_confidence": [0.95] * n,
        "is_outlier": [False] * n,
        "is_near_duplicate": [False] * n,
        "near_duplicate_set": pl.Series([None] * n, dtype=pl.Int64),
        "is_dark": [False] * n,
        "is_overexposed": [False] * n,
        "is_blurry": pl.Series([None] * n, dtype=pl.Boolean),
    }
    df = pl.DataFrame(cols)
    for row, values in overrides.items():
        for col, value in values.items():
            df = df.with_columns(df[col].scatter(int(row[1:]), value))
    return df


def test_policy_actions_and_reasons():
    frames = _frames(n_videos=3, per=6)
    other = {"good": "defect", "defect": "good"}
    lab = frames["consensus_label"]
    issues = _issues(
        frames,
        r0={
            "is_label_issue": True,
            "label_quality": 0.05,
            "suggested_confidence": 0.9,
            "suggested_label": other[lab[0]],
        },
        r1={
            "is_label_issue": True,
            "label_quality": 0.05,
            "suggested_confidence": 0.5,
            "suggested_label": other[lab[1]],
        },
        r2={"is_dark": True},
        r3={"is_outlier": True},
        r4={
            "is_label_issue": True,
            "label_quality": 0.05,
            "suggested_confidence": 0.5,
            "suggested_label": other[lab[4]],
            "is_blurry": True,
        },
    )
    frames = frames.with_columns(frames["consensus_quality"].scatter(5, 0.2))
    out = decide_actions(frames, issues, policy=CurationPolicy(min_consensus_quality=0.5))
    got = {i: out.row(i, named=True) for i in range(6)}
    assert (
        got[0]["action"] == "relabelled"
        and got[0]["label"] == other[lab[0]]
        and got[0]["reasons"] == ["label_issue"]
    )
    assert got[1]["action"] == "dropped" and got[1]["reasons"] == ["label_issue"]
    assert got[2]["action"] == "dropped" and got[2]["reasons"] == ["dark"]
    assert got[3]["action"] == "kept" and got[3]["reasons"] == []  # outliers kept by default
    assert got[4]["action"] == "dropped" and got[4]["reasons"] == ["blurry", "label_issue"]
    assert got[5]["action"] == "dropped" and got[5]["reasons"] == ["low_consensus"]
    assert out.filter(pl.col("action") == "kept").height == frames.height - 5

    lenient = decide_actions(
        frames,
        issues,
        policy=CurationPolicy(
            drop_unresolved_label_issues=False, drop_outliers=True, drop_frame_quality=()
        ),
    )
    assert lenient.row(1, named=True)["action"] == "kept"
    assert lenient.row(3, named=True)["reasons"] == ["outlier"]
    assert lenient.row(2, named=True)["action"] == "kept"


def test_dedupe_keeps_best_of_each_set_and_missing_issue_rows_are_kept():
    frames = _frames(n_videos=3, per=6)
    issues = _issues(
        frames,
        r0={"near_duplicate_set": 0, "is_near_duplicate": True, "label_quality": 0.5},
        r1={"near_duplicate_set": 0, "is_near_duplicate": True, "label_quality": 0.9},
    ).filter(pl.col("frame_index") != 3)
    out = decide_actions(frames, issues, policy=CurationPolicy(dedupe_near_duplicates=True))
    assert out.row(0, named=True)["reasons"] == ["near_duplicate"]
    assert out.row(1, named=True)["action"] == "kept"
    assert out.filter(pl.col("frame_index") == 3)["action"].unique().to_list() == ["kept"]


def test_splits_are_by_video_balanced_and_deterministic():
    frames = _frames(n_videos=40, per=20)
    issues = _issues(frames)
    a = curate(frames, issues, seed=3)
    b = curate(frames, issues, seed=3)
    assert a.equals(b)
    assert a.columns == [
        "video_id",
        "frame_index",
        "label",
        "split",
        "action",
        "reasons",
        "original_label",
        "split_group",
    ]
    per_video = a.group_by("video_id").agg(pl.col("split").n_unique())
    assert per_video["split"].max() == 1
    share = a.group_by("split").len().with_columns(pl.col("len") / a.height)
    share = dict(share.iter_rows())
    assert abs(share["train"] - 0.7) < 0.05 and abs(share["val"] - 0.15) < 0.05
    defect_rate = a.group_by("split").agg((pl.col("label") == "defect").mean())
    overall = (a["label"] == "defect").mean()
    assert (defect_rate["label"] - overall).abs().max() < 0.05


def test_pinned_videos_keep_their_split_and_new_ones_balance_around_them():
    frames = _frames(n_videos=24, per=20).rename({"consensus_label": "label"})
    new = "cam2__line_0023"
    frames = frames.with_columns(camera=pl.col("video_id").str.slice(0, 4))
    before = assign_splits(frames.filter(pl.col("video_id") != new), seed=0, strata_col="camera")
    pinned = dict(before.select("video_id", "split").unique().iter_rows())
    after = assign_splits(frames, seed=0, strata_col="camera", pinned=pinned)
    moved = after.join(before, on=["video_id", "frame_index"], suffix="_before").filter(
        pl.col("split") != pl.col("split_before")
    )
    assert moved.is_empty()
    assert after.filter(pl.col("video_id") == new)["split"].n_unique() == 1
    assert assign_splits(frames, seed=0, pinned={}).equals(assign_splits(frames, seed=0))


def test_few_videos_still_fill_every_split_and_near_duplicates_stay_together():
    frames = _frames(n_videos=3, per=10, seed=1)
    split = curate(frames, _issues(frames))
    assert sorted(split["split"].unique().to_list()) == ["test", "train", "val"]

    frames = _frames(n_videos=12, per=10, seed=2)
    first = {
        v: frames.filter(pl.col("video_id") == v).row(0, named=True)
        for v in frames["video_id"].unique()
    }
    vids = sorted(first)
    rows = {
        f"r{frames['video_id'].to_list().index(v)}": {
            "near_duplicate_set": 7,
            "is_near_duplicate": True,
        }
        for v in vids[:3]
    }
    out = curate(frames, _issues(frames, **rows))
    assert out.filter(pl.col("video_id").is_in(vids[:3]))["split"].n_unique() == 1
    no_test = assign_splits(
        frames.rename({"consensus_label": "label"}), split_fractions=(0.8, 0.2, 0.0)
    )
    assert set(no_test["split"].unique()) == {"train", "val"}
    with pytest.raises(ValueError, match="split_fractions"):
        assign_splits(frames.rename({"consensus_label": "label"}), split_fractions=(0.5, 0.2, 0.2))


@pytest.mark.parametrize("n_videos", [1, 2])
def test_one_or_two_long_recordings_split_by_time_blocks_with_a_guard_gap(n_videos):
    """Issue 7.11: one long recording per line used to leave 'test' (and 'val') empty."""
    rng = np.random.default_rng(n_videos)
    n = 300 // n_videos
    frames = pl.DataFrame(
        {
            "video_id": np.repeat([f"cam1__shift_{v}" for v in range(n_videos)], n),
            "frame_index": np.tile(np.arange(n) * 4, n_videos),  # every 4th frame labelled
            "consensus_label": np.where(rng.random(300) < 0.3, "defect", "good"),
            "consensus_quality": 0.9,
        }
    )
    out, grouping = curate(frames, _issues(frames), guard_frames=10, return_grouping=True)
    assert grouping["grouping"] == "time_block" and grouping["blocks"] == 7
    assert grouping["guard_frames"] == 10 and grouping["guard_dropped"] > 0
    kept = out.filter(pl.col("split").is_not_null())
    share = kept.group_by("split").len().with_columns(pl.col("len") / kept.height)
    share = dict(share.iter_rows())
    assert set(share) == {"train", "val", "test"} and share["train"] > 0.5
    guarded = out.filter(pl.col("reasons").list.contains("split_guard"))
    assert guarded.height == grouping["guard_dropped"]
    assert (guarded["action"] == "dropped").all()
    assert kept.group_by("split_group").agg(pl.col("split").n_unique())["split"].max() == 1
    for video in kept.partition_by("video_id"):  # no two frames of different splits within 10
        video = video.sort("frame_index")
        idx, split = video["frame_index"].to_numpy(), video["split"].to_numpy()
        gaps = np.diff(idx)[split[1:] != split[:-1]]
        assert (gaps > 10).all()


def test_split_by_camera_gives_every_camera_every_split_and_keeps_videos_whole():
    """3 cameras x 2 videos: a whole-video split tests on one camera only; per camera, each
    camera is split by time blocks of its two videos (guarded), and one with 4 videos by video."""
    import numpy as np

    from data_quality.curate import assign_splits

    rows = []
    for cam, n_videos in (("cam1", 2), ("cam2", 2), ("cam3", 4)):
        for v in range(n_videos):
            for f in range(0, 300, 3):
                rows.append((f"{cam}__v{v}", f, ["good", "dent"][(f // 3) % 2], cam))
    frames = pl.DataFrame(
        rows, schema=["video_id", "frame_index", "label", "camera_id"], orient="row"
    )
    plain = assign_splits(frames)
    assert plain.filter(pl.col("split") == "test")["camera_id"].n_unique() < 3
    out, info = assign_splits(frames, strata_col="camera_id", return_grouping=True)
    assert info["grouping"] == "mixed" and info["strata"] == "camera_id"
    assert info["per_stratum"]["cam3"]["grouping"] == "video"
    assert info["per_stratum"]["cam1"]["grouping"] == "time_block"
    for (cam,), part in out.filter(pl.col("split").is_not_null()).group_by("camera_id"):
        assert set(part["split"]) == {"train", "val", "test"}, cam
    cam3 = out.filter(pl.col("camera_id") == "cam3")
    assert cam3.group_by("video_id").agg(pl.col("split").n_unique())["split"].max() == 1
    # guard: no two frames of one video closer than 15 frames sit in different splits
    kept = out.filter(pl.col("split").is_not_null()).sort("video_id", "frame_index")
    for (_,), part in kept.group_by("video_id"):
        f, s = part["frame_index"].to_numpy(), part["split"].to_numpy()
        change = s[1:] != s[:-1]
        assert (np.diff(f)[change] > 15).all()

"""group_ids and near: by video when there are enough videos, else time blocks with a guard."""

from __future__ import annotations

import numpy as np
import pytest

from data_quality.splits import group_ids, near


def test_enough_videos_group_by_video():
    videos = np.array(["b", "a", "c", "a"])
    groups, info = group_ids(videos, np.array([0, 1, 2, 3]), min_groups=3, guard=10)
    assert groups.tolist() == ["b", "a", "c", "a"]
    assert info == {"grouping": "video", "blocks": 3, "guard_frames": 0}


def test_one_video_is_cut_into_contiguous_blocks():
    rng = np.random.default_rng(0)
    frames = rng.permutation(100) * 3  # any order
    groups, info = group_ids(np.array(["v"] * 100), frames, min_groups=3, guard=4, n_blocks=7)
    assert info == {"grouping": "time_block", "blocks": 7, "guard_frames": 4}
    spans = {g: (frames[groups == g].min(), frames[groups == g].max()) for g in set(groups)}
    ordered = sorted(spans.values())
    assert all(a[1] < b[0] for a, b in zip(ordered, ordered[1:], strict=False))  # no overlap
    assert {int((groups == g).sum()) for g in spans} <= {14, 15}


def test_two_videos_share_blocks_by_size_and_too_few_frames_raise():
    videos = np.array(["long"] * 30 + ["short"] * 10)
    groups, info = group_ids(videos, np.r_[np.arange(30), np.arange(10)], min_groups=4, guard=1)
    assert info["blocks"] == 4
    assert len({g for g in groups if g.startswith("long@")}) == 3
    with pytest.raises(ValueError, match="cannot make 3 groups"):
        group_ids(np.array(["v", "v"]), np.array([0, 1]), min_groups=3, guard=1)


def test_near_marks_frames_within_the_guard_of_the_same_video_only():
    videos = np.array(["v"] * 6 + ["w"] * 2)
    frames = np.array([0, 5, 10, 15, 20, 25, 11, 12])
    ref = np.array([False, False, True, False, False, False, False, False])
    assert near(videos, frames, ref, guard=5).tolist() == [0, 1, 0, 1, 0, 0, 0, 0]
    assert not near(videos, frames, ref, guard=4).any()

"""group_ids and near: by video when there are enough videos, else time blocks with a guard;
guard_near_share: whether frames within the guard are near-duplicates at all."""

from __future__ import annotations

import numpy as np
import pytest

from data_quality.splits import group_ids, guard_near_share, near, shift_invariant_features


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


def _video(n: int, *, items: bool, seed: int = 0) -> np.ndarray:
    """uint8 (n, 32, 32, 3): a fixed background; an item (random texture) per frame, or per run
    of 6 frames sliding 2 px a frame (consecutive frames of one item: near-duplicates)."""
    rng = np.random.default_rng(seed)
    frames = np.repeat(rng.normal(60, 10, (1, 32, 32, 3)), n, axis=0)
    for i in range(n):
        if not items or i % 6 == 0:
            texture = rng.normal(rng.choice([90, 170]), 40, (10, 10, 3))
        x = 2 + 2 * (i % 6) if items else int(rng.integers(0, 22))
        frames[i, 11:21, x : x + 10] = texture
    return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("n_videos", [1, 3])
def test_guard_near_share_tells_moving_items_from_independent_snapshots(n_videos):
    n = 240
    videos = np.repeat(np.arange(n_videos), n // n_videos)
    frames = np.tile(np.arange(n // n_videos), n_videos) * 2  # every 2nd frame labelled
    shares = {}
    for items in (True, False):
        x = shift_invariant_features(_video(n, items=items), videos)
        shares[items] = guard_near_share(x, videos, frames, guard=10)
    assert shares[True] > 0.5  # an item seen again 2 px on is nearer than anything else
    assert shares[False] < 0.05  # chance level, about 1 / (frames outside the window)


def test_guard_near_share_is_none_without_evidence():
    x = shift_invariant_features(_video(60, items=False), np.zeros(60))
    assert guard_near_share(x, np.zeros(60), np.arange(60), guard=10) is None  # < 100 outside
    far_apart = np.arange(240) * 50  # no two labelled frames within the guard
    x = shift_invariant_features(_video(240, items=False), np.zeros(240))
    assert guard_near_share(x, np.zeros(240), far_apart, guard=10) is None

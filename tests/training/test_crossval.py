"""cross_val_predict: one long recording is cross-validated by time blocks with a guard gap;
frames that are no near-duplicates of their neighbours are folded one by one."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

from training.crossval import cross_val_predict
from training.train import TrainConfig

SIDE = 24
TINY = TrainConfig(epochs=1, image_size=SIDE, width=4, batch_size=16, num_threads=1)


def _frames(n: int, seed: int = 0, *, items: bool = True):
    """Row i's id is written into pixel (0, 0); class 1 frames are brighter.

    ``items``: runs of 5 frames show one item (its own random texture) moving 2 px a frame
    over a fixed background, so neighbours are near-duplicates, like items on a belt; else
    every frame is an independent snapshot.
    """
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) // 5) % 2  # runs of 5 frames per class
    background = rng.normal(60, 10, (SIDE, SIDE, 3))
    images = np.repeat(background[None], n, axis=0)
    for i in range(n):
        if not items or i % 5 == 0:  # a new item (or a new snapshot)
            texture = rng.normal(90 + 80 * labels[i], 40, (10, 10, 3))
        x = 2 + 2 * (i % 5) if items else rng.integers(0, SIDE - 10)
        images[i, 7:17, x : x + 10] = texture
    images = np.clip(images, 0, 255).astype(np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return images, labels


@pytest.fixture()
def spy(monkeypatch):
    """Replace training with a recorder: which rows each fold trained on and predicted."""
    seen: dict[str, list[np.ndarray]] = {"train": [], "test": []}

    def ids(images):
        return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)

    def train_model(images, labels, *, classes, config):
        seen["train"].append(ids(images))
        return SimpleNamespace(model=len(classes))

    def predict_proba(k, images):
        seen["test"].append(ids(images))
        return np.full((len(images), k), 1.0 / k, np.float32)

    monkeypatch.setattr("training.train.train_model", train_model)
    evaluate = importlib.import_module("training.evaluate")
    monkeypatch.setattr(evaluate, "predict_proba", predict_proba)
    monkeypatch.setattr(evaluate, "embed", lambda k, images: np.zeros((len(images), 3)))
    return seen


def test_one_video_uses_time_blocks_and_never_trains_next_to_a_held_out_frame(spy):
    """Issue 7.11: a single video used to fail with 'needs frames from at least 2 videos'."""
    n, guard = 120, 6
    images, labels = _frames(n)
    frame_index = np.arange(n) * 2  # sampled every 2nd frame
    probs, emb, folds, grouping = cross_val_predict(
        images,
        labels,
        classes=["a", "b"],
        groups=np.array(["cam1__long"] * n),
        frame_indices=frame_index,
        guard_frames=guard,
        n_folds=3,
        config=TINY,
        return_grouping=True,
    )
    assert grouping["grouping"] == "time_block" and grouping["blocks"] == 3
    assert grouping["guard_frames"] == guard and grouping["guard_left_out"] > 0
    assert grouping["near_share"] > 0.5  # the items' frames are near-duplicates: guard kept
    assert sorted(np.concatenate(spy["test"]).tolist()) == list(range(n))  # each row once
    assert set(folds.tolist()) == {0, 1, 2} and probs.shape == (n, 2) and emb.shape == (n, 3)
    for train, test in zip(spy["train"], spy["test"], strict=True):
        gap = np.abs(frame_index[train][:, None] - frame_index[test][None, :]).min()
        assert gap > guard


def test_several_videos_keep_grouping_by_video(spy):
    images, labels = _frames(60)
    videos = np.repeat(["v0", "v1", "v2"], 20)
    *_, grouping = cross_val_predict(
        images, labels, classes=["a", "b"], groups=videos, config=TINY, return_grouping=True
    )
    assert grouping == {
        "grouping": "video",
        "blocks": 3,
        "guard_frames": 0,
        "guard_left_out": 0,
        "near_share": None,  # 60 frames: too few outside a guard window to measure
    }
    for train, test in zip(spy["train"], spy["test"], strict=True):
        assert not set(videos[train]) & set(videos[test])


@pytest.mark.parametrize("n_videos", [1, 4])
def test_independent_snapshots_in_videos_are_folded_frame_by_frame(spy, n_videos):
    """Issue 7.13: digits encoded as video lost to a plain CNN (precision 0.79 vs 0.91) because
    time blocks / whole videos hid whole stretches of the data from each fold model."""
    n = 200
    images, labels = _frames(n, items=False)
    videos = np.repeat([f"v{i}" for i in range(n_videos)], n // n_videos)
    frame_index = np.tile(np.arange(n // n_videos), n_videos)
    probs, _, folds, grouping = cross_val_predict(
        images,
        labels,
        classes=["a", "b"],
        groups=videos,
        frame_indices=frame_index,
        n_folds=3,
        frame_folds=5,
        config=TINY,
        return_grouping=True,
    )
    assert grouping["grouping"] == "frame" and grouping["guard_frames"] == 0
    assert grouping["near_share"] < 0.05 and grouping["guard_left_out"] == 0
    assert set(folds.tolist()) == set(range(5)) and len(spy["train"]) == 5
    assert sorted(np.concatenate(spy["test"]).tolist()) == list(range(n))
    for train, test in zip(spy["train"], spy["test"], strict=True):
        assert len(train) == n - len(test)  # nothing left out next to a held-out frame
        assert not set(train) & set(test)
        gap = np.abs(frame_index[train][:, None] - frame_index[test][None, :])
        assert gap.min() == 0 if n_videos > 1 else gap.min() == 1  # neighbours train


def test_one_video_trains_for_real():
    images, labels = _frames(60, seed=1)
    probs, emb, folds = cross_val_predict(
        images,
        labels,
        classes=["a", "b"],
        groups=np.array(["v"] * 60),
        frame_indices=np.arange(60) * 8,
        n_folds=2,
        config=TINY,
    )
    assert probs.shape == (60, 2) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert emb.shape[0] == 60 and set(folds.tolist()) == {0, 1}

"""cross_val_predict: one long recording is cross-validated by time blocks with a guard gap;
frames that are no near-duplicates of their neighbours are folded one by one."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from training.crossval import cross_val_predict, tta_predict, tta_views, view_of
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
        seen.setdefault("epochs", []).append(config.epochs)
        return SimpleNamespace(model=len(classes))

    def tta_predict(k, images, views, threads=1):  # once per fold, on the held-out images
        seen["test"].append(ids(images))
        return np.full((len(images), k), 1.0 / k, np.float32), np.zeros((len(images), 3))

    monkeypatch.setattr("training.train.train_model", train_model)
    monkeypatch.setattr("training.crossval.tta_predict", tta_predict)
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


def test_tta_views_follow_the_training_augmentation():
    """Issue 7.13: held-out probabilities average the shifts (and mirror) training draws,
    ordered by what they are worth (issue 15.3): clean, mirror, the nearest shifts first."""
    views = tta_views(TrainConfig(image_size=64))  # translate 0.04: shifts of up to 2.56 px
    assert views[0] == (0, 0, False) and len(views) == len(set(views)) == 18
    assert {max(abs(dx), abs(dy)) for dx, dy, _ in views} == {0, 1, 2}
    assert tta_views(TrainConfig(image_size=64), 6) == [
        (0, 0, False), (0, 0, True), (1, 0, False), (-1, 0, False), (0, 1, False), (0, -1, False)
    ]  # fmt: skip
    assert tta_views(TrainConfig(image_size=64), 1) == [(0, 0, False)]
    assert len(tta_views(TrainConfig(image_size=64, hflip=False))) == 9
    assert sorted(tta_views(TrainConfig(image_size=32))) == sorted(
        (dx, dy, m) for m in (False, True) for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
    )
    assert tta_views(TrainConfig(augment=False)) == [(0, 0, False)]
    assert tta_views(TrainConfig(translate=0.0, hflip=False)) == [(0, 0, False)]


def test_view_of_shifts_with_repeated_edges_and_mirrors():
    img = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1).repeat(3, axis=3)
    right = view_of(img, 1, 0, False)[0, :, :, 0]
    assert right[:, 1:].tolist() == img[0, :, :3, 0].tolist()  # content moved right
    assert right[:, 0].tolist() == img[0, :, 0, 0].tolist()  # edge repeated
    up = view_of(img, 0, -1, False)[0, :, :, 0]
    assert (
        up[:3].tolist() == img[0, 1:, :, 0].tolist() and up[3].tolist() == img[0, 3, :, 0].tolist()
    )
    assert view_of(img, 0, 0, True)[0, :, :, 0].tolist() == img[0, :, ::-1, 0].tolist()
    assert view_of(img, 0, 0, False).flags.c_contiguous


def test_held_out_probabilities_are_the_mean_over_views_in_one_batch():
    """tta_predict: mean softmax over the views (each made as view_of makes it), clean embedding."""
    import torch

    from training.data import preprocess

    class PixelModel(torch.nn.Module):  # logits depend on pixel (0, 0) and (0, 1) of the view
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(2, 2)
            with torch.no_grad():
                self.head.weight.copy_(torch.tensor([[1.0, -2.0], [-1.0, 0.5]]))
                self.head.bias.zero_()

        def features(self, x):
            return x[:, 0, 0, :2]

    images, _ = _frames(40, items=False)
    views = tta_views(TrainConfig(image_size=SIDE, translate=0.1))  # 2 px: 9 views x 2
    model = PixelModel()
    probs, emb = tta_predict(model, images, views)

    def soft(v):
        return torch.softmax(model.head(model.features(preprocess(view_of(images, *v)))), 1)

    with torch.no_grad():
        want = torch.stack([soft(v) for v in views]).mean(0).numpy()
        clean = model.features(preprocess(images)).numpy()
    assert np.allclose(probs, want, atol=1e-6) and np.allclose(emb, clean)
    plain, _ = tta_predict(model, images, views[:1])
    assert np.allclose(plain, soft(views[0]).detach().numpy(), atol=1e-6)


def test_cross_val_predict_scores_the_first_n_views(spy, monkeypatch):
    got = []

    def tta_predict(k, images, views, threads=1):
        got.append(list(views))
        return np.full((len(images), k), 1.0 / k, np.float32), np.zeros((len(images), 3))

    monkeypatch.setattr("training.crossval.tta_predict", tta_predict)
    images, labels = _frames(40, items=False)
    config = TrainConfig(epochs=1, image_size=SIDE, translate=0.1)
    kw = dict(classes=["a", "b"], groups=np.arange(40), n_folds=2, config=config)
    cross_val_predict(images, labels, n_views=6, **kw)
    cross_val_predict(images, labels, tta=False, **kw)
    assert got == [tta_views(config, 6)] * 2 + [[(0, 0, False)]] * 2


@pytest.mark.parametrize(
    "n, fold_images, epochs", [(60, None, 15), (60, 600, 15), (60, 200, 5), (60, 20, 4)]
)
def test_fold_images_caps_the_passes_of_large_sets(spy, n, fold_images, epochs):
    """Issue 15.3: epochs = clip(ceil(fold_images / training frames), MIN_EPOCHS, config.epochs)."""
    images, labels = _frames(n, items=False)
    cross_val_predict(
        images, labels, classes=["a", "b"], groups=np.arange(n), n_folds=3,
        config=replace(TINY, epochs=15), fold_images=fold_images,
    )  # fmt: skip
    assert spy["epochs"] == [epochs] * 3  # 40 training frames per fold


def test_fold_side_never_upscales_past_the_frames_crop():
    """Issue 15.3: 28x28 frames train the fold models at 32 px, not the spec's 64."""
    from training.crossval import fold_side
    from training.preprocess import Crop, PreprocessSpec

    full = PreprocessSpec(crop=Crop("full"))
    assert fold_side(full, [None, None], np.array([28, 28]), np.array([28, 28])) == 32
    assert fold_side(full, [None], np.array([320]), np.array([240])) == 64
    item = PreprocessSpec(cameras={"small": Crop("item", side=40)})  # default item:112
    assert fold_side(item, ["cam1"], np.array([320]), np.array([240])) == 64
    assert fold_side(item, ["small"], np.array([320]), np.array([240])) == 48
    fixed = PreprocessSpec(crop=Crop("fixed", box=(0, 0, 20, 10)))
    assert fold_side(fixed, ["c"], np.array([320]), np.array([240])) == 32
    assert fold_side(full, [], np.array([]), np.array([])) == 64


def test_image_size_trains_and_scores_the_fold_models_smaller(spy, monkeypatch):
    sides = []
    monkeypatch.setattr(
        "training.crossval.tta_predict",
        lambda k, images, views, threads=1: (
            sides.append(images.shape[1:]) or np.full((len(images), k), 0.5, np.float32),
            np.zeros((len(images), 3)),
        ),
    )
    images, labels = _frames(40, items=False)
    probs, *_ = cross_val_predict(
        images, labels, classes=["a", "b"], groups=np.arange(40), n_folds=2,
        config=TINY, image_size=16,
    )  # fmt: skip
    assert sides == [(16, 16, 3)] * 2 and probs.shape == (40, 2)

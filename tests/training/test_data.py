"""Decoding, normalisation, seeded augmentation and the batch loader."""

import numpy as np
import pytest
import torch

from training.data import (
    MEAN,
    STD,
    ArrayLoader,
    AugmentConfig,
    augment_batch,
    preprocess,
)


def test_preprocess_normalises_per_channel():
    images = np.full((2, 8, 8, 3), 255, np.uint8)
    x = preprocess(images)
    assert x.shape == (2, 3, 8, 8)
    for c in range(3):
        assert torch.allclose(x[:, c], torch.tensor((1 - MEAN[c]) / STD[c]))


def test_augment_is_seeded_bounded_and_switchable():
    x = torch.rand(6, 3, 24, 24)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    c = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    off = AugmentConfig(brightness=0, contrast=0, translate=0, blur_p=0, noise=0, hflip=False)
    assert torch.equal(augment_batch(x, off, torch.Generator()), x)
    blur_all = AugmentConfig(
        brightness=0, contrast=0, translate=0, blur_p=1.0, noise=0, hflip=False
    )
    assert augment_batch(x, blur_all, torch.Generator()).std() < x.std()  # blur smooths


def test_loader_is_seeded_and_covers_every_image_once():
    images = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(10)

    def epoch(loader):
        return [(x.clone(), y.clone()) for x, y in loader]

    one = ArrayLoader(images, labels, batch_size=4, shuffle=True, augment=AugmentConfig(), seed=3)
    two = ArrayLoader(images, labels, batch_size=4, shuffle=True, augment=AugmentConfig(), seed=3)
    e1, e2 = epoch(one), epoch(two)
    assert len(one) == 3 and [len(y) for _, y in e1] == [4, 4, 2]
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e1, e2, strict=True)
    )
    assert sorted(torch.cat([y for _, y in e1]).tolist()) == list(range(10))
    assert torch.cat([y for _, y in epoch(one)]).tolist() != torch.cat([y for _, y in e1]).tolist()
    with pytest.raises(ValueError):
        ArrayLoader(images.astype(np.float32), labels, batch_size=4)


def test_balanced_loader_gives_each_condition_an_equal_share_and_is_seeded():
    from training.data import balance_weights

    groups = np.array(["cam1"] * 180 + ["cam1/drift"] * 20)
    w = balance_weights(groups)
    assert np.isclose(w.mean(), 1.0) and np.isclose(w[groups == "cam1/drift"].sum(), 100.0)
    assert np.allclose(balance_weights(groups, 0.0), 1.0)  # power 0: the natural shares
    images = np.zeros((200, 8, 8, 3), np.uint8)
    labels = (groups == "cam1/drift").astype(int)  # label 1 marks the rare condition
    drawn = []
    for seed in (0, 0, 1):
        loader = ArrayLoader(images, labels, batch_size=50, weights=w, seed=seed)
        drawn.append(torch.cat([y for _, y in loader]).numpy())
    assert (
        len(drawn[0]) == 200 and (drawn[0] == drawn[1]).all() and not (drawn[0] == drawn[2]).all()
    )
    share = np.mean([ys.mean() for ys in drawn])
    assert 0.4 < share < 0.6  # ~half of each epoch from 10% of the images
    with pytest.raises(ValueError, match="weights must be 200"):
        ArrayLoader(images, labels, batch_size=50, weights=np.zeros(200))

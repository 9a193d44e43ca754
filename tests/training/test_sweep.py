"""Sweeps: grid and random search over TrainConfig, best-trial selection."""

import math

import pytest

from training.sweep import best_trial, grid, overrides, random_search
from training.train import TrainConfig

SPACE = {"lr": [1e-3, 3e-3], "width": [8, 12, 16]}


def test_grid_is_the_full_product_over_the_base():
    base = TrainConfig(epochs=3, seed=5)
    trials = grid(base, SPACE)
    assert len(trials) == 6
    assert {(t.lr, t.width) for t in trials} == {
        (lr, w) for lr in SPACE["lr"] for w in SPACE["width"]
    }
    assert all(t.epochs == 3 and t.seed == 5 for t in trials)
    assert overrides(trials[0], base) == {"lr": 1e-3, "width": 8}
    with pytest.raises(ValueError, match="unknown"):
        grid(base, {"learning_rate": [1]})
    with pytest.raises(ValueError, match="non-empty"):
        grid(base, {"lr": []})


def test_random_search_is_seeded_and_does_not_repeat():
    a = random_search(TrainConfig(), SPACE, n=4, seed=1)
    assert a == random_search(TrainConfig(), SPACE, n=4, seed=1)
    assert len({(t.lr, t.width) for t in a}) == 4
    assert len(random_search(TrainConfig(), SPACE, n=50, seed=1)) == 6  # capped at the grid size


def test_best_trial_skips_missing_and_nan():
    results = [{"name": "a", "val_acc": 0.8}, {"name": "b", "val_acc": math.nan}, {"name": "c"},
               {"name": "d", "val_acc": 0.9}, {"name": "e", "val_acc": 0.9}]  # fmt: skip
    assert best_trial(results)["name"] == "d"  # first of a tie
    assert best_trial(results, "val_acc", mode="min")["name"] == "a"
    with pytest.raises(ValueError):
        best_trial([{"val_acc": None}])

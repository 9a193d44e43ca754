"""train_model: determinism, learning a trivially separable task, transfer learning, bookkeeping."""

import hashlib
import json

import numpy as np
import pytest
import torch

from training.checkpoint import checkpoint_spec, load_checkpoint, save_checkpoint
from training.preprocess import Crop, PreprocessSpec
from training.train import TrainConfig, plot_history, train_model

SIDE = 24
TINY = dict(image_size=SIDE, width=4, batch_size=16, num_threads=1)


def _squares(n, seed):
    """Class 0: dark square on mid-gray; class 1: bright square. Noisy, randomly placed."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.normal(128, 20, (n, SIDE, SIDE, 3))
    for i, y in enumerate(labels):
        r, c = rng.integers(2, SIDE - 12, 2)
        images[i, r : r + 10, c : c + 10] = 220 if y else 40
    return np.clip(images, 0, 255).astype(np.uint8), labels


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _curves(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_same_seed_gives_identical_weights_and_history():
    x, y = _squares(48, 0)
    vx, vy = _squares(16, 1)
    config = TrainConfig(epochs=2, seed=7, **TINY)
    runs = [
        train_model(x, y, classes=["dark", "bright"], config=config, val_images=vx, val_labels=vy)
        for _ in range(2)
    ]
    assert _same_weights(runs[0].model, runs[1].model)
    assert _curves(runs[0].history) == _curves(runs[1].history)
    other = train_model(
        x, y, classes=["dark", "bright"], config=TrainConfig(epochs=2, seed=8, **TINY)
    )
    assert not _same_weights(runs[0].model, other.model)


def test_learns_a_separable_task_and_reports_progress():
    x, y = _squares(160, 0)
    vx, vy = _squares(60, 1)
    seen = []
    result = train_model(
        x, y, classes=["dark", "bright"], config=TrainConfig(epochs=6, lr=1e-2, **TINY),
        val_images=vx, val_labels=vy, progress=seen.append,
    )  # fmt: skip
    best = result.history[result.best_epoch - 1]
    assert best["val_acc"] >= 0.9, result.history
    assert best["val_acc"] == max(r["val_acc"] for r in result.history)
    assert [r["epoch"] for r in seen] == list(range(1, 7)) and seen[0]["epochs"] == 6
    assert result.images_per_s > 0 and result.wall_s > 0 and not result.model.training
    assert plot_history(result.history).startswith(b"\x89PNG")


def test_global_torch_state_is_restored():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    before = torch.rand(1)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    x, y = _squares(16, 0)
    train_model(
        x, y, classes=["a", "b"], config=TrainConfig(epochs=1, **{**TINY, "num_threads": 2})
    )
    assert torch.equal(torch.rand(3), expected)  # caller's RNG stream untouched
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert before.shape == (1,)


def test_early_stopping_and_input_checks():
    x, y = _squares(64, 0)
    vx, vy = _squares(32, 1)
    # validation labels flipped: the better it learns, the worse val gets -> stops early
    result = train_model(
        x, y, classes=["a", "b"], config=TrainConfig(epochs=8, lr=1e-2, patience=2, **TINY),
        val_images=vx, val_labels=1 - vy,
    )  # fmt: skip
    assert len(result.history) < 8, result.history
    assert len(result.history) - result.best_epoch == 2
    with pytest.raises(ValueError, match="image_size"):
        train_model(x, y, classes=["a", "b"], config=TrainConfig(epochs=1, image_size=32))
    with pytest.raises(ValueError, match="labels"):
        train_model(x, y + 5, classes=["a", "b"], config=TrainConfig(epochs=1, **TINY))


def test_transfer_learning_keeps_backbone_and_matching_head_rows(tmp_path):
    x, y = _squares(32, 0)
    parent = train_model(x, y, classes=["dark", "bright"], config=TrainConfig(epochs=1, **TINY))
    path = tmp_path / "parent.safetensors"
    spec = PreprocessSpec(image_size=TINY["image_size"], crop=Crop("fixed", box=(10, 20, 30, 40)))
    save_checkpoint(parent.model, path, metadata=parent.checkpoint_metadata(), preprocess=spec)
    loaded, meta = load_checkpoint(path)
    assert TrainConfig.from_dict(json.loads(meta["config"])) == parent.config
    assert checkpoint_spec(meta) == spec

    # lr=0 so weights stay as initialised from the parent
    config = TrainConfig(epochs=1, lr=0.0, init_checkpoint=str(path), **TINY)
    child = train_model(x, (y + 1) % 3, classes=["new", "dark", "bright"], config=config)
    assert torch.equal(child.model.stem[0].weight, loaded.stem[0].weight)
    assert torch.equal(
        child.model.head.weight[1:], loaded.head.weight
    )  # dark, bright rows carried over
    # the child's checkpoint names its parent by content, not by where it was read from: the
    # same fine-tune from a copy elsewhere (another home, an S3 temp file) is the same file
    moved = tmp_path / "elsewhere" / "copy.safetensors"
    moved.parent.mkdir()
    moved.write_bytes(path.read_bytes())
    twin = train_model(
        x, (y + 1) % 3, classes=["new", "dark", "bright"],
        config=TrainConfig(epochs=1, lr=0.0, init_checkpoint=str(moved), **TINY),
    )  # fmt: skip
    recorded = json.loads(child.checkpoint_metadata()["config"])["init_checkpoint"]
    assert recorded == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    shas = [
        save_checkpoint(r.model, tmp_path / f"child{i}.safetensors",
                        metadata=r.checkpoint_metadata(), preprocess=spec)
        for i, r in enumerate((child, twin))
    ]  # fmt: skip
    assert shas[0] == shas[1]
    with pytest.raises(ValueError, match="width"):
        train_model(
            x,
            y,
            classes=["a", "b"],
            config=TrainConfig(epochs=1, init_checkpoint=str(path), **{**TINY, "width": 8}),
        )


def test_condition_balanced_sampling_is_recorded_seeded_and_checked():
    """A rare condition (10% of frames) gets half of every epoch with condition_balance=1."""
    x, y = _squares(60, 3)
    groups = np.array(["cam1"] * 54 + ["cam1/drift"] * 6)
    cfg = TrainConfig(epochs=2, seed=1, condition_balance=1.0, **TINY)
    a = train_model(x, y, classes=["dark", "bright"], config=cfg, groups=groups)
    b = train_model(x, y, classes=["dark", "bright"], config=cfg, groups=groups)
    plain = train_model(x, y, classes=["dark", "bright"], config=cfg)  # no groups: plain epochs
    assert _same_weights(a.model, b.model) and not _same_weights(a.model, plain.model)
    assert json.loads(a.checkpoint_metadata()["config"])["condition_balance"] == 1.0
    with pytest.raises(ValueError, match="60 training images but 5 groups"):
        train_model(x, y, classes=["dark", "bright"], config=cfg, groups=groups[:5])

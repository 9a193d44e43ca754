"""Weight averaging in train_model (TrainConfig.average): EMA and SWA via torch.optim.swa_utils."""

import copy
import json

import pytest
import torch
from torch.optim.swa_utils import update_bn

from tests.training.test_train import TINY, _same_weights, _squares
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import ArrayLoader
from training.preprocess import PreprocessSpec
from training.train import TrainConfig, _warmup_cosine, train_model

CLASSES = ["dark", "bright"]


def _params(model):
    return {k: v for k, v in model.state_dict().items() if "running" not in k and "num_b" not in k}


def _train(x, y, **kw):
    return train_model(x, y, classes=CLASSES, config=TrainConfig(seed=5, **{**TINY, **kw}))


def test_ema_is_deterministic_differs_from_the_last_iterate_and_is_what_gets_saved(tmp_path):
    x, y = _squares(32, 0)
    plain = _train(x, y, epochs=2)
    ema = [_train(x, y, epochs=2, average="ema", ema_epochs=1.0) for _ in range(2)]
    assert _same_weights(ema[0].model, ema[1].model)  # same seed: bit-identical
    assert not _same_weights(ema[0].model, plain.model)  # not the last iterate
    assert ema[0].best_epoch == 2 and not ema[0].model.training
    # decay matched to the steps: a time constant under one step is the last iterate itself
    # (the averaging leaves the training stream alone)
    instant = _train(x, y, epochs=2, average="ema", ema_epochs=1e-3)
    assert _same_weights(instant.model, plain.model)
    path = tmp_path / "ema.safetensors"
    spec = PreprocessSpec(image_size=TINY["image_size"])
    save_checkpoint(ema[0].model, path, metadata=ema[0].checkpoint_metadata(), preprocess=spec)
    loaded, meta = load_checkpoint(path)
    assert _same_weights(loaded, ema[0].model)
    assert TrainConfig.from_dict(json.loads(meta["config"])).average == "ema"


def test_swa_averages_the_iterates_and_recomputes_batchnorm_statistics():
    x, y = _squares(32, 0)
    plain = _train(x, y, epochs=4)
    # averaging only the last epoch: the parameters are the last iterate's, the BatchNorm
    # statistics those update_bn computes for them on the clean training images
    last = _train(x, y, epochs=4, average="swa", swa_start=0.9)
    assert all(torch.equal(v, _params(plain.model)[k]) for k, v in _params(last.model).items())
    expected = copy.deepcopy(plain.model)
    update_bn(ArrayLoader(x, y, batch_size=256), expected)
    bn = last.model.stem[1]
    assert torch.allclose(bn.running_mean, expected.stem[1].running_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, expected.stem[1].running_var, atol=1e-6)
    assert not torch.allclose(bn.running_mean, plain.model.stem[1].running_mean, atol=1e-4)
    # the last half of the run averaged: other parameters, the same for the same seed
    half = [_train(x, y, epochs=4, average="swa", swa_start=0.5) for _ in range(2)]
    assert _same_weights(half[0].model, half[1].model)
    assert not _same_weights(half[0].model, last.model)


def test_selection_with_validation_is_among_averaged_weights_only():
    x, y = _squares(32, 0)
    vx, vy = _squares(16, 1)
    res = train_model(
        x, y, classes=CLASSES, val_images=vx, val_labels=vy,
        config=TrainConfig(epochs=4, average="swa", swa_start=0.5, **TINY),
    )  # fmt: skip
    assert res.best_epoch >= 3 and len(res.history) == 4  # epochs 3, 4 are SWA averages


def test_constant_swa_rate_and_config_checks():
    factor = _warmup_cosine(100, 0.1, hold=(75, 0.2))
    assert factor(9) == 1.0 and factor(74) > 0.2
    assert [factor(s) for s in (75, 90, 99)] == pytest.approx([0.2] * 3)
    assert _warmup_cosine(100, 0.1)(99) < 0.01  # without hold: cosine to zero
    with pytest.raises(ValueError, match="average"):
        TrainConfig(average="polyak")
    with pytest.raises(ValueError, match="swa_start"):
        TrainConfig(average="swa", swa_start=1.0)

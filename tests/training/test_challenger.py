"""training.challenger: a challenger trained, scored, judged against the champion on the same test
split, recorded in a real registry, and ensembled (tiny seeded models, CPU)."""

import json

import numpy as np
import polars as pl
import pytest

from training.challenger import (
    _new_conditions,
    ensemble_accuracy,
    evaluate_challenger,
    split_fingerprint,
    train_challenger,
)
from training.checkpoint import load_checkpoint
from training.preprocess import PreprocessSpec
from training.registry import ModelRegistry
from training.train import TrainConfig

SIDE = 24
CLASSES = ["bright", "dark"]
SPEC = PreprocessSpec(image_size=SIDE)
TINY = dict(image_size=SIDE, width=4, batch_size=16, num_threads=1)


def _squares(n, seed):
    """Label 0: bright square on mid-gray; label 1: dark square. Noisy, randomly placed."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.normal(128, 20, (n, SIDE, SIDE, 3))
    for i, y in enumerate(labels):
        r, c = rng.integers(2, SIDE - 12, 2)
        images[i, r : r + 10, c : c + 10] = 40 if y else 220
    return np.clip(images, 0, 255).astype(np.uint8), labels


def _train(seed, tmp_path, **kw):
    x, y = _squares(48, 0)
    vx, vy = _squares(16, 1)
    groups = np.array(["cam1"] * 40 + ["cam1/drift"] * 8)
    run = train_challenger(
        x, y, vx, vy, classes=CLASSES, groups=groups,
        config=TrainConfig(epochs=3, lr=1e-2, seed=seed, **TINY), **kw,
    )  # fmt: skip
    versions = {"dataset_version": "4", "label_version": "2", "code_version": "c1"}
    path = tmp_path / f"m{seed}.safetensors"
    sha = run.save(path, versions=versions, preprocess=SPEC)
    return run, {"checkpoint_uri": str(path), "checkpoint_sha256": sha, **versions}


def _load(uri, sha):
    return load_checkpoint(uri, expected_sha256=sha)


def _evaluate(ref, registry, **kw):
    model, meta = _load(ref["checkpoint_uri"], ref["checkpoint_sha256"])
    x, y = _squares(40, 2)
    keys = pl.DataFrame({"video_id": ["v1"] * 20 + ["v2"] * 20, "frame_index": range(40)})
    return evaluate_challenger(
        model, x, y, classes=CLASSES, spec=SPEC, test_set=split_fingerprint(keys),
        slices=np.array(["cam1"] * 30 + ["cam1/drift"] * 10), registry=registry,
        checkpoint=ref, meta=meta, load=_load,
        images_for=lambda spec: pytest.fail("the champion shares the challenger's contract"),
        **kw,
    )  # fmt: skip


def test_train_challenger_records_conditions_counts_and_a_checkpoint(tmp_path):
    run, ref = _train(0, tmp_path)
    assert run.conditions == {"cam1": 40, "cam1/drift": 8}
    summary = run.summary()
    assert summary["train_images"] == 48 and summary["val_images"] == 16
    assert summary["config"]["seed"] == 0 and summary["config"]["epochs"] == 3
    assert 1 <= summary["best_epoch"] <= 3
    assert len(run.trials) == 1
    assert run.curves_png().startswith(b"\x89PNG")
    _, meta = _load(ref["checkpoint_uri"], ref["checkpoint_sha256"])
    assert meta["dataset_version"] == "4" and meta["code_version"] == "c1"
    # what the gate's tie-break compares: the conditions each model trained on
    assert json.loads(meta["train_conditions"]) == {"cam1": 40, "cam1/drift": 8}
    old_look = {"train_conditions": json.dumps({"cam1": 40})}
    assert _new_conditions(run.conditions, old_look) == ["cam1/drift"]
    assert _new_conditions(run.conditions, meta) == []
    assert _new_conditions(run.conditions, {}) == []  # a champion from before: unknown


def test_a_sweep_keeps_the_best_trial(tmp_path):
    run, _ = _train(0, tmp_path, sweep_trials=2, sweep_space={"width": [4, 6]})
    assert len(run.trials) == 2
    best = max(run.trials, key=lambda t: t["val_acc"])
    assert run.config.width == best["width"]


def test_first_model_is_promoted_then_judged_against_and_ensembled(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"))
    _, first = _train(0, tmp_path)
    one = _evaluate(first, registry)
    assert one.promoted and one.champion_version is None
    assert one.data_version == one.version == registry.champion().model_version
    assert one.metrics["n"] == 40
    assert len(one.metrics["test_set"]) == 16
    assert one.ensemble == {"models": [one.version], "accuracy": None,
                            "note": "needs two or more models"}  # fmt: skip
    assert one.per_class()["class"].to_list() == CLASSES
    assert set(one.summary()) == {"model_version", "accuracy", "test_images",
        "false_reject_rate_good", "escape_rate", "ece", "promoted", "decision"}  # fmt: skip

    _, second = _train(1, tmp_path)
    two = _evaluate(second, registry, margin=1.0)  # an impossible margin: archived
    assert not two.promoted and two.champion_version == one.version
    assert two.data_version == one.version  # downstream follows the champion
    assert registry.champion().model_version == one.version
    assert {p.name for p in two.slices()} >= {"cam1", "cam1/drift"}
    assert set(two.plots()) == {"confusion", "calibration", "slices"}
    assert two.slice_table().height == len(two.slices())
    assert two.ensemble["accuracy"] is not None
    assert sorted(two.ensemble["models"]) == sorted([one.version, two.version])

    again = _evaluate(first, registry)
    assert again.promoted and again.reasons == "this model is already the champion"
    assert again.slices() == [] and set(again.plots()) == {"confusion", "calibration"}


def test_ensemble_leaves_out_models_of_another_contract(tmp_path):
    _, a = _train(0, tmp_path)
    _, b = _train(1, tmp_path)
    models = pl.DataFrame(
        {
            "model_version": ["a", "b"],
            "checkpoint_uri": [a["checkpoint_uri"], b["checkpoint_uri"]],
            "checkpoint_sha256": [a["checkpoint_sha256"], b["checkpoint_sha256"]],
            "metrics": ['{"accuracy": 0.9}', '{"accuracy": 0.8}'],
        }
    )
    x, y = _squares(20, 3)
    out = ensemble_accuracy(models, x, y, classes=CLASSES, spec=SPEC, k=3, load=_load)
    assert out["models"] == ["a", "b"] and 0.0 <= out["accuracy"] <= 1.0
    other = PreprocessSpec(image_size=SIDE + 8)
    out = ensemble_accuracy(models, x, y, classes=CLASSES, spec=other, k=3, load=_load)
    assert out == {"models": ["a", "b"], "accuracy": None, "note": "models not comparable"}

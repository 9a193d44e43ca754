"""Lensline training: edge CNN, loaders, training loop, evaluation, checkpoints, model registry.

No Dagster here. Importing the package is cheap: torch, polars and deltalake load only when a
name below is first used (``from training import train_model`` imports ``training.train``).

Modules
-------
model       ``build_model``, ``LenslineNet`` (depthwise-separable CNN, ONNX-friendly),
            ``LenslineEnsemble`` (mean probability of several, one module)
preprocess  ``PreprocessSpec``, ``Crop``: the one preprocessing contract (numpy + OpenCV only)
data        ``ArrayLoader``, augmentation, torch normalisation (same bits as the contract)
train       ``TrainConfig``, ``train_model``, ``plot_history``
evaluate    ``predict_proba``, ``evaluate``, ``ensemble_proba``, confusion/reliability PNGs
checkpoint  ``save_checkpoint``, ``load_checkpoint`` (safetensors, verified), ``CheckpointError``
registry    ``ModelRegistry`` over the ``models`` / ``model_events`` Delta tables, ``decide_promotion``
sweep       ``grid``, ``random_search``, ``best_trial``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "model": [
        "ModelConfig",
        "LenslineNet",
        "LenslineEnsemble",
        "build_model",
        "build_network",
        "count_parameters",
    ],
    "preprocess": ["PreprocessSpec", "Crop", "PreprocessError", "locate_item"],
    "data": ["AugmentConfig", "ArrayLoader", "preprocess"],
    "train": ["TrainConfig", "TrainResult", "train_model", "plot_history"],
    "evaluate": [
        "predict_proba",
        "embed",
        "evaluate",
        "ensemble_proba",
        "confusion_png",
        "reliability_png",
    ],
    "checkpoint": [
        "CheckpointError",
        "save_checkpoint",
        "load_checkpoint",
        "checkpoint_spec",
    ],
    "registry": ["ModelRegistry", "PromotionDecision", "RegistryError", "decide_promotion"],
    "sweep": ["grid", "random_search", "best_trial"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"training.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

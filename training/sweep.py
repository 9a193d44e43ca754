"""Hyper-parameter sweeps over :class:`training.train.TrainConfig`: grid, random, pick the best.

    trials = grid(TrainConfig(epochs=8), {"lr": [1e-3, 3e-3], "width": [12, 16]})
    results = [{"val_acc": train_model(..., config=c).history[-1]["val_acc"], **overrides(c)} ...]
    best = best_trial(results)

Trials keep the base ``seed`` unless ``seed`` is itself in the space, so they differ only in
what was swept.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, fields, replace
from typing import Any

import numpy as np

from training.train import TrainConfig

__all__ = ["grid", "random_search", "best_trial", "overrides", "run_trials"]


def grid(base: TrainConfig, space: Mapping[str, Sequence[Any]]) -> list[TrainConfig]:
    """Every combination of ``space`` values applied to ``base``, in row-major order over the sorted field names.

    Parameters
    ----------
    base
        Values for everything not swept.
    space
        ``{field: [value, ...]}``; each field must be a TrainConfig field, each list non-empty.
    """
    keys = _check_space(space)
    return [
        replace(base, **dict(zip(keys, combo, strict=True)))
        for combo in itertools.product(*(space[k] for k in keys))
    ]


def random_search(
    base: TrainConfig, space: Mapping[str, Sequence[Any]], *, n: int, seed: int = 0
) -> list[TrainConfig]:
    """``n`` random combinations of ``space`` values (without repeats while the grid allows).

    Deterministic for a ``seed``. If ``n`` exceeds the grid size, the whole grid is returned
    (in random order) rather than repeating trials.
    """
    keys = _check_space(space)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    sizes = [len(space[k]) for k in keys]
    total = math.prod(sizes)
    rng = np.random.default_rng(seed)
    picks = rng.choice(total, size=min(n, total), replace=False)
    configs = []
    for flat in picks:
        idx = np.unravel_index(int(flat), sizes) if keys else ()
        configs.append(
            replace(base, **{k: space[k][int(i)] for k, i in zip(keys, idx, strict=True)})
        )
    return configs


def best_trial(
    results: Sequence[Mapping[str, Any]], metric: str = "val_acc", *, mode: str = "max"
) -> dict:
    """The result dict with the best finite ``metric`` (first one wins ties).

    Parameters
    ----------
    results
        One dict per trial, each holding ``metric`` (other keys are carried along).
    mode
        ``"max"`` or ``"min"``.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    scored = [
        (float(r[metric]), i) for i, r in enumerate(results)
        if isinstance(r.get(metric), int | float) and math.isfinite(r[metric])
    ]  # fmt: skip
    if not scored:
        raise ValueError(f"no trial has a finite {metric!r}")
    sign = -1.0 if mode == "max" else 1.0
    _, best = min((sign * v, i) for v, i in scored)
    return dict(results[best])


def run_trials(
    trials: Sequence[TrainConfig],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    classes: list[str],
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, TrainConfig, list[dict]]:
    """Train every trial on the same data; keep the best by validation accuracy.

    Returns ``(best TrainResult, its config, one row per trial: trial, lr, width, epochs,
    val_acc, wall_s, chosen)``. ``log`` gets one line per trial and per epoch.
    """
    from training.train import train_model

    has_val = val_images is not None and len(val_images) > 0
    results, rows = [], []
    for i, trial in enumerate(trials):
        if log:
            log(f"trial {i + 1}/{len(trials)}: lr {trial.lr}, width {trial.width}")

        def progress(row: dict, epochs: int = trial.epochs) -> None:
            if log:
                who = f"member {row['member']}/{row['members']} " if "member" in row else ""
                log(f"{who}epoch {row['epoch']}/{epochs}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))  # fmt: skip

        res = train_model(
            images, labels, classes=classes, config=trial, progress=progress, groups=groups,
            val_images=val_images if has_val else None, val_labels=val_labels if has_val else None,
        )  # fmt: skip
        results.append(res)
        rows.append({
            "trial": i, "lr": trial.lr, "width": trial.width, "epochs": trial.epochs,
            "val_acc": max((h.get("val_acc", 0.0) for h in res.history), default=0.0),
            "wall_s": res.wall_s,
        })  # fmt: skip
    best = best_trial(rows, "val_acc")["trial"]
    for row in rows:
        row["chosen"] = row["trial"] == best
    return results[best], trials[best], rows


def overrides(config: TrainConfig, base: TrainConfig | None = None) -> dict[str, Any]:
    """Fields where ``config`` differs from ``base`` (default ``TrainConfig()``): a trial's name."""
    ref = asdict(base or TrainConfig())
    return {k: v for k, v in asdict(config).items() if ref[k] != v}


def _check_space(space: Mapping[str, Sequence[Any]]) -> list[str]:
    known = {f.name for f in fields(TrainConfig)}
    if unknown := sorted(set(space) - known):
        raise ValueError(f"unknown TrainConfig fields in search space: {unknown}")
    if empty := sorted(k for k, v in space.items() if isinstance(v, str) or len(v) == 0):
        raise ValueError(f"search space values must be non-empty lists: {empty}")
    return sorted(space)

"""Train the inspection classifier on in-memory frames. Deterministic for a seed.

    result = train_model(images, labels, classes=classes, config=TrainConfig(epochs=10))
    sha = save_checkpoint(result.model, "model.safetensors", metadata=result.checkpoint_metadata(),
                          preprocess=spec)  # the PreprocessSpec that made ``images``

Same seed, same data, same ``num_threads`` and same torch build -> bit-identical weights
and history. Global torch state (RNG, thread count, deterministic-algorithms flag) is
restored when training returns.

Weight averaging (``TrainConfig.average``, :mod:`torch.optim.swa_utils`): ``"ema"`` keeps an
exponential moving average of the weights and BatchNorm statistics, updated after every
optimiser step with decay ``1 - 1 / (ema_epochs * steps per epoch)``; ``"swa"`` averages the
weights at the end of every epoch from ``swa_start`` of the run on (at a constant learning rate
``swa_lr`` x peak when that is > 0, else along the cosine), and recomputes BatchNorm statistics
for the average on the clean training images (``update_bn``). Validation, best-epoch selection
and the returned model are then the averaged weights'; training losses stay the iterates'.
The seed-to-seed spread of test accuracy with and without: ``benchmarks/seed_stability.py``
(docs/training.md).

Ensembles (``TrainConfig.members`` > 1): that many networks trained one after another, each
exactly as a one-network run of seed ``seed * members + i``, returned as one
:class:`training.model.LenslineEnsemble` (log of the mean softmax). A warm start from an ensemble
starts member i from the parent's member i (a one-network parent starts every member). The
history is the members' per-epoch mean; ``TrainResult.val_acc`` is the ensemble's own.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from training.data import ArrayLoader, AugmentConfig, balance_weights
from training.model import LenslineEnsemble, LenslineNet, build_model
from training.preprocess import MEAN, STD

__all__ = ["AVERAGES", "TrainConfig", "TrainResult", "train_model", "plot_history"]

AVERAGES = ("none", "ema", "swa")
"""Values of ``TrainConfig.average``."""


@dataclass
class TrainConfig:
    """Every knob of a training run; stored as JSON with the model."""

    epochs: int = 20
    lr: float = 5e-3  # peak AdamW learning rate (linear warmup, then cosine to zero)
    warmup_frac: float = 0.1  # fraction of all steps spent warming up
    batch_size: int = 32
    image_size: int = 64  # images must already be (N, S, S, 3): PreprocessSpec.images
    weight_decay: float = 5e-4  # on conv/linear weights only, not BN or biases
    width: int = 16  # model width (see training.model)
    dropout: float = 0.2
    activation: str = "relu6"
    pool: str = "avgmax"
    label_smoothing: float = 0.05
    # augmentation (training batches only). Brightness/contrast jitter is off by default: on
    # whole 320x240 frames with a small item it stalled learning in our tests (the network
    # leans on global colour first); with a crop around the item it is harmless and makes the
    # model robust to lighting drift, and trained_model turns it on for cropped cameras
    # (training.policy.LIGHTING; docs/training.md, "Lighting jitter").
    augment: bool = True
    hflip: bool = True
    brightness: float = 0.0
    contrast: float = 0.0
    translate: float = 0.04
    blur_p: float = 0.1
    noise: float = 0.0
    # reproducibility and run control
    seed: int = 0
    num_threads: int = 1  # torch intra-op threads; part of determinism. >1 collapses on a busy box
    patience: int = 0  # stop after this many epochs without a better val_acc; 0 = never
    # sampling: with groups (line conditions) given to train_model, each condition's share of an
    # epoch is count ** (1 - condition_balance): 0 = natural shares, 1 = equal shares
    condition_balance: float = 0.0
    init_checkpoint: str | None = None  # local safetensors path to fine-tune from (recorded as
    # sha256:<hex> of that file in the checkpoint's metadata: TrainResult.checkpoint_metadata)
    # weight averaging (module docstring): "none", "ema" or "swa". "none" here keeps every caller
    # that does not ask (fold models, benchmarks) as it was; trained_model's default is "ema"
    average: str = "none"
    ema_epochs: float = 2.0  # ema: the average's time constant, in epochs of optimiser steps
    swa_start: float = 0.75  # swa: average each epoch's end weights from this share of epochs on
    swa_lr: float = 0.0  # swa: > 0 holds the lr at this x peak from swa_start on; 0 keeps cosine
    members: int = 1  # > 1: an ensemble of that many networks (module docstring)

    def __post_init__(self) -> None:
        if not 1 <= self.members <= 16:
            raise ValueError(f"members must be 1..16 networks, got {self.members}")
        if self.average not in AVERAGES:
            raise ValueError(f"unknown average {self.average!r}; expected one of {AVERAGES}")
        if self.ema_epochs <= 0 or not 0 <= self.swa_start < 1 or self.swa_lr < 0:
            raise ValueError(
                f"need ema_epochs > 0, 0 <= swa_start < 1, swa_lr >= 0; got {self.ema_epochs}, "
                f"{self.swa_start}, {self.swa_lr}"
            )

    def augment_config(self) -> AugmentConfig | None:
        if not self.augment:
            return None
        return AugmentConfig(
            brightness=self.brightness, contrast=self.contrast, translate=self.translate,
            blur_p=self.blur_p, noise=self.noise, hflip=self.hflip,
        )  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict (e.g. ``json.loads(metadata["config"])``); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(values) - known):
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return cls(**values)


@dataclass
class TrainResult:
    """What :func:`train_model` returns. ``model`` holds the best epoch's weights, in eval mode
    (with ``config.average``: the best epoch's averaged weights)."""

    model: LenslineNet | LenslineEnsemble
    history: list[dict]  # one row per epoch: epoch, loss, acc, val_loss, val_acc, lr, seconds
    wall_s: float  # whole call, setup and validation included
    images_per_s: float  # training images per second of the training passes only
    best_epoch: int  # 1-based; by val_acc (then val_loss), or the last epoch without validation
    classes: list[str] = field(default_factory=list)
    config: TrainConfig = field(default_factory=TrainConfig)
    val_acc: float | None = None  # the returned model's validation accuracy (None: no val set)

    def checkpoint_metadata(self, **extra: str) -> dict[str, str]:
        """Metadata for :func:`training.checkpoint.save_checkpoint`: classes, config, best epoch.

        A fine-tuned model records its parent as ``sha256:<hex>`` of the checkpoint it started
        from, not the local path it was read from (a temp file on S3, another folder in another
        home): the same training gives the same file, so the same model version, anywhere."""
        config = self.config
        if config.init_checkpoint and not config.init_checkpoint.startswith("sha256:"):
            digest = hashlib.sha256(Path(config.init_checkpoint).read_bytes()).hexdigest()
            config = replace(config, init_checkpoint=f"sha256:{digest}")
        return {
            "classes": json.dumps(self.classes),
            "config": config.to_json(),
            "best_epoch": str(self.best_epoch),
            **extra,
        }


def train_model(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    classes: list[str],
    config: TrainConfig | None = None,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    progress: Callable[[dict], None] | None = None,
    groups: np.ndarray | None = None,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> TrainResult:
    """Train a :class:`LenslineNet` (with ``config.members`` > 1 a :class:`LenslineEnsemble`)
    from scratch or from ``config.init_checkpoint``.

    Parameters
    ----------
    images
        uint8 (N, S, S, 3) RGB, S = ``config.image_size`` (see :func:`training.data.load_images`).
    labels
        int (N,) indices into ``classes``.
    classes
        K class names, index order.
    config
        Hyper-parameters; defaults to ``TrainConfig()``.
    val_images, val_labels
        Optional held-out set (M, S, S, 3) / (M,): scored every epoch, picks the best epoch,
        drives early stopping.
    progress
        Called after every epoch with that epoch's history row (plus ``epochs``; for an
        ensemble also ``member``, 1-based, and ``members``).
    groups
        Optional (N,) line condition of each training image (e.g. ``cam1``, ``cam1/drift``);
        with ``config.condition_balance`` > 0 each epoch draws N images with replacement,
        weighted by :func:`training.data.balance_weights`.
    mean, std
        Normalisation, RGB: the ``PreprocessSpec``'s that made ``images`` (its defaults here).
    """
    config = config or TrainConfig()
    _check_inputs(images, labels, classes, config, "train")
    val = None if val_images is None or val_labels is None else (val_images, val_labels)
    if val is not None:
        _check_inputs(*val, classes, config, "val")
    weights = None
    if groups is not None and config.condition_balance > 0:
        if len(groups) != len(labels):
            raise ValueError(f"{len(labels)} training images but {len(groups)} groups")
        weights = balance_weights(groups, config.condition_balance)
    fit = functools.partial(
        _train_network, images=images, labels=labels, classes=classes, val=val,
        weights=weights, mean=mean, std=std,
        parent=_parent(config),  # a warm start's checkpoint, read once for every member
    )  # fmt: skip
    if config.members == 1:
        return fit(progress=progress, config=config)
    t_start, n = time.perf_counter(), config.members
    parts = [
        fit(
            config=replace(config, members=1, seed=config.seed * n + i),
            member=i,
            progress=None if progress is None else _member_progress(progress, i + 1, n),
        )  # fmt: skip
        for i in range(n)
    ]
    model = LenslineEnsemble([cast(LenslineNet, p.model) for p in parts]).eval()  # one each
    val_acc = None
    if val is not None:
        with _reproducible(config.seed, config.num_threads):
            val_acc = _score(model, *val, config.batch_size, mean, std)[1]
    train_s = sum(len(p.history) * len(labels) / p.images_per_s for p in parts)
    return TrainResult(
        model=model,
        history=_mean_history([p.history for p in parts]),
        wall_s=time.perf_counter() - t_start,
        images_per_s=sum(len(p.history) for p in parts) * len(labels) / train_s,
        best_epoch=parts[0].best_epoch,
        classes=list(classes),
        config=copy.deepcopy(config),
        val_acc=val_acc,
    )


def _member_progress(progress: Callable[[dict], None], member: int, members: int):
    return lambda row: progress({**row, "member": member, "members": members})


def _mean_history(histories: list[list[dict]]) -> list[dict]:
    """Per epoch (as far as every member went) the members' mean of each number."""
    rows = []
    for same_epoch in zip(*histories, strict=False):
        row = {k: float(np.mean([r[k] for r in same_epoch])) for k in same_epoch[0]}
        rows.append({**row, "epoch": same_epoch[0]["epoch"]})
    return rows


def _parent(config: TrainConfig):
    """``(model, metadata)`` of ``config.init_checkpoint``, or None."""
    if config.init_checkpoint is None:
        return None
    from training.checkpoint import load_checkpoint

    return load_checkpoint(config.init_checkpoint)


def _train_network(
    *,
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    val: tuple[np.ndarray, np.ndarray] | None,
    progress: Callable[[dict], None] | None,
    weights: np.ndarray | None,
    mean: Sequence[float],
    std: Sequence[float],
    config: TrainConfig,
    parent=None,
    member: int = 0,
) -> TrainResult:
    """One network of :func:`train_model` (checked inputs; ``parent`` is the warm start's
    loaded checkpoint, ``member`` picks its member when it is an ensemble)."""
    t_start = time.perf_counter()
    with _reproducible(config.seed, config.num_threads):
        model = _init_model(classes, config, member=member, parent=parent)
        loader = ArrayLoader(
            images, labels, batch_size=config.batch_size, shuffle=True,
            augment=config.augment_config(), seed=config.seed, weights=weights, mean=mean, std=std,
        )  # fmt: skip
        optimizer = torch.optim.AdamW(
            _param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.99)
        )
        total_steps = config.epochs * len(loader)
        swa_from = _swa_first_epoch(config)  # 1-based; epochs + 1 when not averaging by SWA
        hold = config.swa_lr if config.average == "swa" and config.swa_lr > 0 else None
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            _warmup_cosine(
                total_steps, config.warmup_frac,
                hold=None if hold is None else ((swa_from - 1) * len(loader), hold),
            ),
        )  # fmt: skip
        averaged = _averager(model, config, len(loader))

        history: list[dict] = []
        best_key, best_state, best_epoch, stale = None, None, 0, 0
        train_s, seen = 0.0, 0
        for epoch in range(1, config.epochs + 1):
            # --- one pass over the (augmented) training set
            model.train()
            t0 = time.perf_counter()
            loss_sum, correct = 0.0, 0
            for x, y in loader:
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if config.average == "ema":
                    averaged.update_parameters(model)
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
            epoch_s = time.perf_counter() - t0
            train_s += epoch_s
            seen += len(labels)
            row = {
                "epoch": epoch,
                "loss": loss_sum / len(labels),
                "acc": correct / len(labels),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": epoch_s,
            }
            # --- weight averaging, validation, best-epoch bookkeeping, early stopping
            scored = model
            if config.average == "swa" and epoch >= swa_from:
                averaged.update_parameters(model)
                if val is not None or epoch == config.epochs:  # the average is scored or kept
                    _update_bn(averaged, images, labels, config.batch_size, mean, std)
            if averaged is not None and int(averaged.n_averaged) > 0:
                scored = averaged.module
            if val is not None:
                row["val_loss"], row["val_acc"] = _score(scored, *val, config.batch_size, mean, std)
                key = (row["val_acc"], -row["val_loss"])
                if averaged is not None and scored is model:
                    pass  # before SWA's first average: scored, not a candidate
                elif best_key is None or key > best_key:
                    best_key, best_epoch, stale = key, epoch, 0
                    best_state = copy.deepcopy(scored.state_dict())
                else:
                    stale += 1
            history.append(row)
            if progress is not None:
                progress({**row, "epochs": config.epochs})
            if val is not None and config.patience and stale >= config.patience:
                break

        if best_state is None and averaged is not None and int(averaged.n_averaged) > 0:
            best_state = averaged.module.state_dict()  # no validation: the final average
            best_epoch = len(history)
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch = len(history)
        model.eval()

    return TrainResult(
        model=model,
        history=history,
        wall_s=time.perf_counter() - t_start,
        images_per_s=seen / train_s if train_s > 0 else float("nan"),
        best_epoch=best_epoch,
        classes=list(classes),
        config=copy.deepcopy(config),
        val_acc=history[best_epoch - 1].get("val_acc") if history else None,
    )


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _reproducible(seed: int, num_threads: int) -> Iterator[None]:
    """Seed torch, fix threads, demand deterministic kernels; restore all of it afterwards.

    ``fill_uninitialized_memory`` (NaN-filling every fresh tensor, on by default in
    deterministic mode) is switched off: it cost ~7 % of step time and is not needed, every
    kernel here writes its whole output.
    """
    import torch.utils.deterministic as td

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    fill = td.fill_uninitialized_memory  # type: ignore[attr-defined]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(max(1, num_threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        td.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)
            td.fill_uninitialized_memory = fill  # type: ignore[attr-defined]


def _init_model(
    classes: list[str], config: TrainConfig, *, member: int = 0, parent=None
) -> LenslineNet:
    """Fresh model, or backbone (and head rows of classes both know) from ``init_checkpoint``
    (an ensemble's member ``member``, modulo its size; ``parent``: that checkpoint already
    loaded)."""
    model = build_model(
        len(classes), width=config.width, image_size=config.image_size,
        dropout=config.dropout, activation=config.activation, pool=config.pool,
    )  # fmt: skip
    if config.init_checkpoint is None:
        return model
    loaded, meta = parent or _parent(config)
    nets = loaded.networks() if isinstance(loaded, LenslineEnsemble) else [loaded]
    parent = nets[member % len(nets)]
    if (parent.config.width, parent.config.activation) != (config.width, config.activation):
        raise ValueError(
            f"init_checkpoint {config.init_checkpoint} has width={parent.config.width}, "
            f"activation={parent.config.activation}; config asks for width={config.width}, "
            f"activation={config.activation}"
        )
    state = {k: v for k, v in parent.state_dict().items() if not k.startswith("head.")}
    model.load_state_dict(state, strict=False)
    old = json.loads(meta["classes"])
    with torch.no_grad():
        for i, name in enumerate(classes):
            if name in old:
                j = old.index(name)
                model.head.weight[i] = parent.head.weight[j]
                model.head.bias[i] = parent.head.bias[j]
    return model


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights (ndim >= 2) only."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _warmup_cosine(
    total_steps: int, warmup_frac: float, *, hold: tuple[int, float] | None = None
) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warmup, then cosine to zero at ``total_steps``;
    with ``hold=(step, floor)`` cosine to ``floor`` at ``step``, then ``floor`` (SWA's phase)."""
    warmup = max(1, int(total_steps * warmup_frac))
    end, floor = (total_steps, 0.0) if hold is None else (max(hold[0], warmup + 1), hold[1])

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, end - warmup)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _swa_first_epoch(config: TrainConfig) -> int:
    """First (1-based) epoch whose end weights SWA averages; ``epochs + 1`` without SWA."""
    if config.average != "swa":
        return config.epochs + 1
    return min(config.epochs, int(config.epochs * config.swa_start) + 1)


def _averager(model: LenslineNet, config: TrainConfig, steps_per_epoch: int):
    """The :class:`torch.optim.swa_utils.AveragedModel` of ``config.average``, or None.

    EMA averages BatchNorm buffers too (``use_buffers``); SWA averages parameters only and its
    BatchNorm statistics are recomputed (:func:`_update_bn`).
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    if config.average == "ema":
        decay = 1.0 - 1.0 / max(1.0, config.ema_epochs * steps_per_epoch)
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    if config.average == "swa":
        return AveragedModel(model)
    return None


def _update_bn(
    averaged: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """BatchNorm statistics of the averaged weights, recomputed on the clean training images
    in index order (:func:`torch.optim.swa_utils.update_bn`). The global RNG that dropout
    draws from is forked, so the training iterates are the same as without averaging."""
    from torch.optim.swa_utils import update_bn

    loader = ArrayLoader(images, labels, batch_size=max(batch_size, 256), mean=mean, std=std)
    with torch.random.fork_rng(devices=[]):
        update_bn(loader, averaged)


@torch.no_grad()
def _score(
    model: LenslineNet | LenslineEnsemble,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on clean images; leaves the model in eval mode."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for x, y in ArrayLoader(images, labels, batch_size=max(batch_size, 256), mean=mean, std=std):
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum / len(labels), correct / len(labels)


def _check_inputs(images, labels, classes, config: TrainConfig, what: str) -> None:
    s = config.image_size
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.shape[1:] != (s, s, 3)
    ):
        got = (
            f"{images.dtype} {images.shape}"
            if isinstance(images, np.ndarray)
            else type(images).__name__
        )
        raise ValueError(
            f"{what} images must be uint8 (N, {s}, {s}, 3) for image_size={s}, got {got}"
        )
    labels = np.asarray(labels)
    if len(labels) != len(images) or len(images) == 0:
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes must be >= 2 distinct names, got {classes}")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(
            f"{what} labels must lie in [0, {len(classes)}), got [{labels.min()}, {labels.max()}]"
        )


def plot_history(history: list[dict]) -> bytes:
    """PNG of loss and accuracy per epoch (train, and validation when present)."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(8, 3), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["loss"] for r in history], label="train")
    ax_acc.plot(epochs, [r["acc"] for r in history], label="train")
    if history and "val_acc" in history[0]:
        ax_loss.plot(epochs, [r["val_loss"] for r in history], label="val")
        ax_acc.plot(epochs, [r["val_acc"] for r in history], label="val")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_acc.set(title="accuracy", xlabel="epoch", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

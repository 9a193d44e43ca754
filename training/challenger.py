"""A challenger's life: trained (one run or a sweep), scored on the test split, judged against
the champion frame by frame, recorded in the registry, and an ensemble scored beside it.

(Over 400 lines: the two halves of one decision, training a challenger and judging it, with
their result types.)

No Dagster and no lake I/O here: the ``trained_model`` and ``model_evaluation`` assets read the
splits and checkpoints and hand in arrays, a registry and two loaders; what they get back
(:class:`TrainingRun`, :class:`ChallengerEvaluation`) says everything their metadata shows.
The only table written from here is the registry's ``models`` (through
:class:`training.registry.ModelRegistry`: one challenger row, then its promotion or archiving;
a crash between the two leaves a registered challenger with no decision, which the next
evaluation of the same checkpoint decides).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from training.promotion import PromotionDecision, SliceComparison

__all__ = [
    "ChallengerEvaluation",
    "TrainingRun",
    "ensemble_accuracy",
    "evaluate_challenger",
    "split_fingerprint",
    "train_challenger",
]

#: ``load(checkpoint_uri, checkpoint_sha256) -> (model, checkpoint metadata)``
Loader = Callable[[str, str], tuple[Any, dict[str, str]]]
#: ``images(spec) -> float images (N, S, S, 3)`` of the test split under another preprocessing
Images = Callable[[Any], np.ndarray]


@dataclass(frozen=True)
class TrainingRun:
    """The best of one or more training trials."""

    result: Any
    """:class:`training.train.TrainResult` of the winning trial (model, history, timings)."""
    config: Any
    """Its :class:`training.train.TrainConfig`."""
    trials: list[dict]
    """One row per trial (its knobs and validation accuracy)."""
    conditions: dict[str, int]
    """Training images per line condition."""
    train_images: int
    val_images: int

    def save(self, path, *, versions: Mapping[str, str], preprocess) -> str:
        """Write the winning model as a checkpoint at ``path`` (its versions and the
        preprocessing contract recorded); the file's sha256."""
        from training.checkpoint import save_checkpoint

        meta = self.result.checkpoint_metadata(**versions)
        meta["train_conditions"] = json.dumps(self.conditions, sort_keys=True)
        return save_checkpoint(self.result.model, path, metadata=meta, preprocess=preprocess)

    def summary(self) -> dict[str, Any]:
        """The run in numbers: its config and data (dicts), best epoch, time and throughput."""
        return {
            "config": json.loads(self.config.to_json()),
            "train_images": self.train_images,
            "train_conditions": self.conditions,
            "val_images": self.val_images,
            "best_epoch": self.result.best_epoch,
            "wall_s": round(self.result.wall_s, 1),
            "images_per_s": round(self.result.images_per_s, 1),
        }

    def curves_png(self) -> bytes:
        """The winning trial's loss and accuracy curves."""
        from training.train import plot_history

        return plot_history(self.result.history)


def train_challenger(
    images: np.ndarray,
    labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    *,
    classes: list[str],
    groups: np.ndarray,
    config: Any,
    sweep_trials: int = 0,
    sweep_space: Mapping[str, Sequence[Any]] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingRun:
    """Train one model, or the best of a random search, on the training split.

    Parameters
    ----------
    images, val_images : np.ndarray
        uint8 (N, S, S, 3) and (M, S, S, 3) preprocessed training and validation images.
    labels, val_labels : np.ndarray
        int (N,) and (M,) indices into ``classes``.
    classes : list of str
        The class map, index order = model output order.
    groups : np.ndarray
        str (N,) line condition of each training image (condition-balanced sampling).
    config : training.train.TrainConfig
        The run's knobs; the sweep's base.
    sweep_trials : int
        0: one run of ``config``. N: a random search of N trials over ``sweep_space`` (seeded
        by ``config.seed``); the best by validation accuracy wins.
    sweep_space : mapping of str to sequence, optional
        Values each swept knob is drawn from, e.g. ``{"lr": [...], "width": [...]}``.
    log : callable, optional
        Progress lines.

    Returns
    -------
    TrainingRun
    """
    from training.sweep import random_search, run_trials

    trials = [config]
    if sweep_trials:
        trials = random_search(config, sweep_space or {}, n=sweep_trials, seed=config.seed)
    result, best, rows = run_trials(
        trials, images, labels, classes=classes, val_images=val_images,
        val_labels=val_labels, groups=groups, log=log,
    )  # fmt: skip
    names, counts = np.unique(groups, return_counts=True)
    conditions = {str(k): int(v) for k, v in zip(names, counts, strict=True)}
    return TrainingRun(
        result=result,
        config=best,
        trials=rows,
        conditions=conditions,
        train_images=len(images),
        val_images=len(val_images),
    )


def split_fingerprint(keys: pl.DataFrame) -> str:
    """A short, stable id of a test split: the sha256 of its ``video_id, frame_index`` rows as
    CSV (16 hex digits)."""
    return hashlib.sha256(keys.write_csv().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ChallengerEvaluation:
    """A challenger scored, judged and recorded."""

    version: str
    """Its model version in the registry."""
    metrics: dict[str, Any]
    """:func:`training.evaluate.evaluate` on the test split, plus ``test_set``."""
    probs: np.ndarray
    """float (N, K) its test-split probabilities."""
    labels: np.ndarray
    """int (N,) the test split's labels."""
    classes: list[str]
    decision: PromotionDecision
    champion_version: str | None
    """The champion it was judged against (None: the first model)."""
    ensemble: dict[str, Any]
    """:func:`ensemble_accuracy`."""

    @property
    def promoted(self) -> bool:
        return self.decision.promote

    @property
    def reasons(self) -> str:
        """Every reason of the decision, one a line."""
        return "\n".join(self.decision.reasons)

    @property
    def data_version(self) -> str:
        """What downstream (exports, drift reference) follows: the champion after this
        evaluation, not every evaluation (``"none"`` without one)."""
        if self.promoted:
            return self.version
        return self.champion_version or "none"

    def summary(self) -> dict[str, Any]:
        """The plain numbers and text of the evaluation."""
        m = self.metrics
        return {
            "model_version": self.version,
            "accuracy": m["accuracy"],
            "test_images": m["n"],
            "false_reject_rate_good": m["false_reject_rate"],
            "escape_rate": m["escape_rate"],
            "ece": m["ece"],
            "promoted": self.promoted,
            "decision": self.reasons,
        }

    def per_class(self) -> pl.DataFrame:
        """One row per class: ``class`` and its per-class metrics."""
        return pl.DataFrame([{"class": c, **v} for c, v in self.metrics["per_class"].items()])

    def slices(self) -> list[SliceComparison]:
        """The paired per-slice comparison with the champion (empty when there was none)."""
        return list(self.decision.slices or [])

    def slice_table(self) -> pl.DataFrame:
        return pl.DataFrame([p.as_dict() for p in self.slices()])

    def power(self) -> list[dict[str, Any]]:
        """Per condition (slice) judged against the champion: ``condition``, ``n``,
        ``mdd_points`` (the smallest drop the gate detects there) and ``protected``."""
        return [
            {"condition": p.name, "n": p.n, "mdd_points": p.mdd_points, "protected": p.protected}
            for p in self.slices()
            if p.kind == "slice"
        ]

    def plots(self) -> dict[str, bytes]:
        """PNGs: ``confusion``, ``calibration`` and, with a champion, ``slices``."""
        from training.evaluate import confusion_png, reliability_png, slices_png

        out = {
            "confusion": confusion_png(self.metrics["confusion"], classes=self.classes),
            "calibration": reliability_png(self.probs, self.labels),
        }
        if self.slices():
            out["slices"] = slices_png(self.slices())
        return out


def evaluate_challenger(
    model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    classes: list[str],
    spec: Any,
    test_set: str,
    slices: np.ndarray,
    registry: Any,
    checkpoint: Mapping[str, str],
    meta: Mapping[str, str],
    load: Loader,
    images_for: Images,
    margin: float = 0.0,
    recall_tolerance: float = 0.02,
    alpha: float = 0.05,
    power: float = 0.8,
    unprotected: str = "report",
    ensemble_top_k: int = 3,
) -> ChallengerEvaluation:
    """Score a trained model on the test split, register it, and promote or archive it.

    The gate compares challenger and champion on *this* test split, frame by frame
    (:func:`training.promotion.decide_promotion_paired`), whatever the champion was scored on
    before. A model that is already the champion stays it.

    Parameters
    ----------
    model : training.model.LenslineNet
        The challenger.
    images : np.ndarray
        uint8 (N, S, S, 3) the test split under ``spec``.
    labels : np.ndarray
        int (N,) indices into ``classes``.
    classes : list of str
        The challenger's class map.
    spec : training.preprocess.PreprocessSpec
        The challenger's preprocessing contract (``images`` were made with it).
    test_set : str
        Id of the test split (:func:`split_fingerprint`), recorded with the metrics.
    slices : np.ndarray
        str (N,) the line condition of each test frame (the gate's slices).
    registry : training.registry.ModelRegistry
        Where the challenger is registered, promoted or archived.
    checkpoint : mapping
        ``checkpoint_uri``, ``checkpoint_sha256``, ``dataset_version``, ``label_version``,
        ``code_version`` of the challenger's checkpoint.
    meta : mapping
        The challenger checkpoint's metadata: its training config (``config``) and, when
        recorded, its training images per line condition (``train_conditions``: the gate's tie
        goes to a challenger that trained on a condition the champion never did,
        :func:`training.promotion.decide_promotion_paired`).
    load : callable
        ``load(uri, sha256) -> (model, checkpoint metadata)``: a registered model, verified.
    images_for : callable
        ``images_for(spec) -> images`` of the same test split under another model's
        preprocessing contract.
    margin, recall_tolerance, alpha, power : float
        The promotion gate (:func:`training.promotion.decide_promotion_paired`).
    unprotected : {"block", "report"}
        What the gate does with a condition too small to protect its accuracy.
    ensemble_top_k : int
        Also score the mean of the top-k registered models (:func:`ensemble_accuracy`).

    Returns
    -------
    ChallengerEvaluation
    """
    from training.evaluate import evaluate, predict_proba
    from training.promotion import decide_promotion_paired

    probs = predict_proba(model, images, mean=spec.mean, std=spec.std)
    metrics = evaluate(probs, labels, classes=classes)
    metrics["test_set"] = test_set
    champion = registry.champion()
    version = registry.register_challenger(
        checkpoint_uri=checkpoint["checkpoint_uri"],
        checkpoint_sha256=checkpoint["checkpoint_sha256"],
        metrics=metrics,
        config=meta["config"],
        dataset_version=int(checkpoint["dataset_version"]),
        label_version=int(checkpoint["label_version"]),
        code_version=checkpoint["code_version"],
        parent_version=champion.model_version if champion else None,
    )
    if champion is not None and champion.model_version == version:
        decision = PromotionDecision(True, ["this model is already the champion"])
    else:
        champ_pred, new_looks = None, []
        if champion is not None:
            champ_pred, champ_meta = _predict(champion, classes, spec, images, load, images_for)
            trained_on = json.loads(meta.get("train_conditions", "{}"))
            new_looks = _new_conditions(trained_on, champ_meta)
        decision = decide_promotion_paired(
            labels, champ_pred, probs.argmax(1), slices=slices, classes=classes,
            margin=margin, recall_tolerance=recall_tolerance, alpha=alpha, power=power,
            unprotected=unprotected, new_conditions=new_looks,
        )  # fmt: skip
        if decision.promote:
            registry.promote(version, reason="; ".join(decision.reasons))
        else:
            registry.archive(version, reason="; ".join(decision.reasons))
    ensemble = ensemble_accuracy(
        registry.list(), images, labels, classes=classes, spec=spec, k=ensemble_top_k, load=load
    )
    return ChallengerEvaluation(
        version=version,
        metrics=metrics,
        probs=probs,
        labels=labels,
        classes=classes,
        decision=decision,
        champion_version=champion.model_version if champion else None,
        ensemble=ensemble,
    )


def _new_conditions(trained_on: Mapping[str, int], champion_meta: Mapping[str, str]):
    """Line conditions the challenger trained on and the champion did not (its checkpoint's
    ``train_conditions``); none when either is unknown (checkpoints from before they were
    recorded)."""
    if not trained_on or "train_conditions" not in champion_meta:
        return []
    return sorted(set(trained_on) - set(json.loads(champion_meta["train_conditions"])))


def _predict(record, classes, spec, images, load: Loader, images_for: Images):
    """(int (N,) class indices (in ``classes`` order) a registered model predicts for the test
    split, its checkpoint metadata); ``images`` are reused when the model's preprocessing is
    ``spec``."""
    from training.checkpoint import checkpoint_spec
    from training.evaluate import in_class_order, predict_proba

    model, meta = load(record.checkpoint_uri, record.checkpoint_sha256)
    own = checkpoint_spec(meta)
    probs = predict_proba(
        model, images if own == spec else images_for(own), mean=own.mean, std=own.std
    )
    return in_class_order(probs, json.loads(meta["classes"]), classes).argmax(1), meta


def ensemble_accuracy(
    models: pl.DataFrame,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    classes: list[str],
    spec: Any,
    k: int,
    load: Loader,
) -> dict[str, Any]:
    """Accuracy of the mean probabilities of the top-``k`` registered models (by their own
    recorded test accuracy) on the same test images.

    Parameters
    ----------
    models : pl.DataFrame
        The registry's rows: ``model_version``, ``checkpoint_uri``, ``checkpoint_sha256``,
        ``metrics`` (JSON with ``accuracy``).
    images : np.ndarray
        uint8 (N, S, S, 3) test images under ``spec``.
    labels : np.ndarray
        int (N,) indices into ``classes``.
    classes : list of str
    spec : training.preprocess.PreprocessSpec
        Models with another class map or preprocessing contract are left out.
    k : int
        How many of the best models to average.
    load : callable
        ``load(uri, sha256) -> (model, checkpoint metadata)``.

    Returns
    -------
    dict
        ``models`` (the versions averaged, or the top-k when fewer than two could be) and
        ``accuracy`` (None, with a ``note``, when fewer than two models are comparable).
    """
    from training.checkpoint import checkpoint_spec
    from training.evaluate import ensemble_proba, evaluate, predict_proba

    rows = models.with_columns(
        acc=pl.col("metrics").str.json_path_match("$.accuracy").cast(pl.Float64)
    )
    top = rows.sort("acc", descending=True, nulls_last=True).head(k)
    if top.height < 2:
        return {
            "models": top["model_version"].to_list(),
            "accuracy": None,
            "note": "needs two or more models",
        }
    probs, used = [], []
    for r in top.iter_rows(named=True):
        m, meta = load(r["checkpoint_uri"], r["checkpoint_sha256"])
        if json.loads(meta["classes"]) != classes or checkpoint_spec(meta) != spec:
            continue
        probs.append(predict_proba(m, images, mean=spec.mean, std=spec.std))
        used.append(r["model_version"])
    if len(probs) < 2:
        return {
            "models": top["model_version"].to_list(),
            "accuracy": None,
            "note": "models not comparable",
        }
    return {
        "models": used,
        "accuracy": evaluate(ensemble_proba(probs), labels, classes=classes)["accuracy"],
    }

"""Scoring a model the way a factory reads it: accuracy, per-class recall, false rejects, calibration.

    probs = predict_proba(model, test_images)                 # (N, K)
    metrics = evaluate(probs, test_labels, classes=classes)   # JSON-ready dict
    png = confusion_png(metrics["confusion"], classes=classes)

An ensemble is scored the same way: ``evaluate(ensemble_proba([p1, p2, p3]), ...)``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from training.preprocess import MEAN, STD

__all__ = [
    "in_class_order",
    "predict_proba",
    "embed",
    "evaluate",
    "ensemble_proba",
    "confusion_png",
    "reliability_png",
    "calibration_bins",
    "condition_slices",
    "slices_png",
]


def predict_proba(
    model,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> np.ndarray:
    """Softmax probabilities of a model on RGB uint8 images.

    Parameters
    ----------
    model
        A :class:`training.model.LenslineNet` (switched to eval mode).
    images
        uint8 (N, S, S, 3) RGB.

    Returns
    -------
    np.ndarray
        float32 (N, K); rows sum to 1.
    """
    import torch

    return _batched(model, images, batch_size, lambda m, x: torch.softmax(m(x), dim=1), mean, std)


def embed(
    model,
    images: np.ndarray,
    *,
    batch_size: int = 256,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> np.ndarray:
    """Penultimate embeddings ``model.features``: uint8 (N, S, S, 3) -> float32 (N, D)."""
    return _batched(model, images, batch_size, lambda m, x: m.features(x), mean, std)


def _batched(
    model,
    images: np.ndarray,
    batch_size: int,
    fn,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> np.ndarray:
    import torch

    from training.data import preprocess

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(
                fn(
                    model, preprocess(images[start : start + batch_size], mean=mean, std=std)
                ).numpy()
            )
    if not out:
        raise ValueError("no images to score")
    return np.concatenate(out).astype(np.float32, copy=False)


def ensemble_proba(
    probs: Sequence[np.ndarray], *, weights: Sequence[float] | None = None
) -> np.ndarray:
    """(Weighted) mean of several models' probabilities on the same images.

    Parameters
    ----------
    probs
        M arrays of shape (N, K), same class order (e.g. the top-k trials of a sweep).
    weights
        M non-negative weights; equal if omitted.

    Returns
    -------
    np.ndarray
        (N, K), rows sum to 1.
    """
    if not probs:
        raise ValueError("ensemble_proba needs at least one probability array")
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probs])  # (M, N, K)
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(probs),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(probs)} non-negative numbers with a positive sum")
    return np.tensordot(w / w.sum(), stack, axes=1)


def evaluate(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    classes: Sequence[str],
    good_class: str = "good",
    n_bins: int = 10,
) -> dict:
    """Metrics of predicted probabilities against true labels.

    Parameters
    ----------
    probs
        (N, K) class probabilities, K = len(classes).
    labels
        int (N,) true class indices.
    classes
        Class names, index order.
    good_class
        Name of the defect-free class; if absent, the good/defect rates are None.
    n_bins
        Equal-width confidence bins for the expected calibration error.

    Returns
    -------
    dict
        JSON-ready: ``n``, ``accuracy``, ``macro_f1``, ``log_loss``, ``ece``,
        ``false_reject_rate`` (false-positive rate on good items: truly good predicted as any
        defect), ``escape_rate`` (truly defective predicted good), ``per_class``
        ``{name: {precision, recall, f1, support}}`` (precision 0.0 when never predicted,
        recall None when the class has no examples), ``confusion`` (K x K list, rows = truth,
        columns = prediction), ``classes``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = len(classes)
    if probs.ndim != 2 or probs.shape[1] != k or len(labels) != len(probs) or len(probs) == 0:
        raise ValueError(
            f"probs must be (N, {k}) with N = len(labels) > 0; got {probs.shape}, {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k})")
    pred = probs.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)

    per_class, f1s = {}, []
    for i, name in enumerate(classes):
        tp, support, predicted = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else None
        f1 = 2 * precision * recall / (precision + recall) if recall and precision else 0.0
        if support:
            f1s.append(f1)
        per_class[name] = {
            "precision": float(precision),
            "recall": None if recall is None else float(recall),
            "f1": float(f1),
            "support": int(support),
        }

    false_reject = escape = None
    if good_class in classes:
        g = list(classes).index(good_class)
        good, defect = labels == g, labels != g
        false_reject = float((pred[good] != g).mean()) if good.any() else None
        escape = float((pred[defect] == g).mean()) if defect.any() else None

    p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    bins = calibration_bins(probs, labels, n_bins=n_bins)
    ece = float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / len(labels))
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "log_loss": float(-np.log(p_true).mean()),
        "ece": ece,
        "false_reject_rate": false_reject,
        "escape_rate": escape,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": list(classes),
    }


def calibration_bins(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 10) -> list[dict]:
    """Non-empty equal-width bins of top-class confidence, each ``(lo, hi]``.

    Returns
    -------
    list of dict
        ``lo``, ``hi``, ``count``, ``confidence`` (mean top probability), ``accuracy``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            out.append({
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": int(mask.sum()),
                "confidence": float(conf[mask].mean()),
                "accuracy": float(correct[mask].mean()),
            })  # fmt: skip
    return out


def confusion_png(
    confusion: np.ndarray | list, *, classes: Sequence[str], title: str = "confusion"
) -> bytes:
    """PNG heat map of a K x K confusion matrix (rows truth, columns prediction), counts annotated."""
    cm = np.asarray(confusion)
    fig, ax = _figure(1.2 + 0.9 * len(classes), 1.0 + 0.8 * len(classes))
    ax.imshow(cm, cmap="Blues")
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    top = cm.max() if cm.size else 0
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    return _png(fig)


def reliability_png(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 10) -> bytes:
    """PNG reliability diagram: per-bin accuracy vs confidence, with the ECE in the title."""
    bins = calibration_bins(probs, labels, n_bins=n_bins)
    ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / len(labels)
    fig, ax = _figure(4.0, 4.0)
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect")
    ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=1 / n_bins, align="edge",
           alpha=0.7, edgecolor="black", label="accuracy")  # fmt: skip
    ax.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        "o",
        color="C1",
        label="bin mean",
    )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence",
        ylabel="accuracy",
        title=f"reliability (ECE {ece:.3f})",
    )
    ax.legend(loc="upper left")
    return _png(fig)


def condition_slices(
    cameras: Sequence[str], videos: Sequence[str], drift_videos: Sequence[str] = ()
) -> np.ndarray:
    """The line condition of each test frame, for a slice-aware promotion gate: its camera, and
    ``<camera>/drift`` for frames of videos labelled because they drifted (a new look of the
    line that the reference conditions must not outvote)."""
    drifted = set(drift_videos)
    return np.asarray(
        [f"{c}/drift" if v in drifted else str(c) for c, v in zip(cameras, videos, strict=True)],
        dtype=object,
    )


def slices_png(parts: Sequence, *, title: str = "champion vs challenger per slice") -> bytes:
    """PNG grouped bars: champion and challenger accuracy per slice (and recall per class) on
    the same test frames; slices with a significant regression are marked with a red ``!``.

    ``parts``: :class:`training.promotion.SliceComparison` items."""
    labels = [f"{p.name}\n(n={p.n})" if p.kind == "slice" else f"{p.name}\nrecall" for p in parts]
    x = np.arange(len(parts))
    fig, ax = _figure(1.4 + 0.8 * max(len(parts), 1), 3.4)
    ax.bar(x - 0.2, [p.champion for p in parts], 0.4, label="champion", color="C7")
    ax.bar(x + 0.2, [p.challenger for p in parts], 0.4, label="challenger", color="C0")
    for i, p in enumerate(parts):
        if p.regression:
            ax.text(i + 0.2, p.challenger + 0.02, "!", color="red", ha="center", weight="bold")
    ax.set(xticks=x, ylim=(0, 1.08), ylabel="accuracy / recall", title=title)
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend(loc="lower right", fontsize=7)
    return _png(fig)


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    return fig, fig.subplots()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def in_class_order(probs: np.ndarray, source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Probabilities (N, len(source)) re-indexed to ``target``; a class the model lacks gets 0."""
    out = np.zeros((len(probs), len(target)), dtype=np.float64)
    for j, name in enumerate(source):
        if name in target:
            out[:, list(target).index(name)] = probs[:, j]
    return out

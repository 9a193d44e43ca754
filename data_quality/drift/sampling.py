"""Which frames of a drifted video to send for annotation first."""

from __future__ import annotations

import numpy as np

__all__ = ["needs_labels"]


def _entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])


def _rank01(x: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share the mean rank); 0.5 for a single value."""
    from scipy.stats import rankdata

    if len(x) < 2:
        return np.full(len(x), 0.5)
    return (rankdata(x) - 1.0) / (len(x) - 1.0)


def _knn_distance(x: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance of each row of x (N, D) to its k nearest rows of ref (M, D)."""
    k = max(1, min(k, len(ref)))
    out = np.empty(len(x))
    rsq = np.sum(ref * ref, axis=1)
    for s in range(0, len(x), 1024):
        xb = x[s : s + 1024]
        d2 = np.maximum(np.sum(xb * xb, axis=1)[:, None] + rsq[None, :] - 2 * xb @ ref.T, 0.0)
        part = np.partition(d2, k - 1, axis=1)[:, :k]
        out[s : s + 1024] = np.sqrt(part).mean(axis=1)
    return out


def needs_labels(
    new_embeddings: np.ndarray | None,
    new_probs: np.ndarray | None,
    reference_embeddings: np.ndarray | None,
    *,
    budget: int,
    k: int = 5,
    novelty_weight: float = 0.5,
) -> np.ndarray:
    """Frames to queue for annotation: most uncertain and most novel first, diverse.

    Each frame gets a priority in [0, 1]: ``novelty_weight`` times the rank of its mean
    distance to the ``k`` nearest reference embeddings (novelty) plus the rest times the
    rank of its normalised predictive entropy (uncertainty). Frames are then picked
    greedily by priority times a diversity factor ``min(1, d / r)``, where ``d`` is the
    embedding distance to the nearest frame already picked and ``r`` the median
    nearest-neighbour distance among the new frames, so near-duplicate consecutive frames
    of one item are not all picked before other items.

    Parameters
    ----------
    new_embeddings : np.ndarray or None
        float (N, D) embeddings of the new video's frames; None: no novelty, no diversity.
    new_probs : np.ndarray or None
        float (N, K) softmax probabilities of the same frames; None: no uncertainty.
    reference_embeddings : np.ndarray or None
        float (M, D) embeddings of the camera's reference; None or empty: no novelty.
    budget : int
        At most this many indices are returned (fewer when N is smaller).
    k : int
        Neighbours for the novelty distance.
    novelty_weight : float
        Weight of novelty against uncertainty, in [0, 1] (used only when both exist).

    Returns
    -------
    np.ndarray
        int64 (min(budget, N),): frame indices into the new video's arrays, highest
        priority first, without repeats.
    """
    if new_embeddings is None and new_probs is None:
        raise ValueError("needs_labels needs new_embeddings or new_probs")
    n = len(new_embeddings) if new_embeddings is not None else len(new_probs)  # type: ignore[arg-type]
    if new_probs is not None and len(new_probs) != n:
        raise ValueError(f"new_probs has {len(new_probs)} rows for {n} embeddings")
    budget = max(0, min(int(budget), n))
    if budget == 0:
        return np.zeros(0, np.int64)
    parts: list[tuple[float, np.ndarray]] = []
    emb = None if new_embeddings is None else np.asarray(new_embeddings, dtype=np.float64)
    if new_probs is not None:
        parts.append((1.0 - novelty_weight, _rank01(_entropy(new_probs))))
    if emb is not None and reference_embeddings is not None and len(reference_embeddings):
        ref = np.asarray(reference_embeddings, dtype=np.float64)
        parts.append((novelty_weight, _rank01(_knn_distance(emb, ref, k))))
    total = sum(w for w, _ in parts) or 1.0
    priority = sum(w * r for w, r in parts) / total if parts else np.zeros(n)
    priority = np.asarray(priority, dtype=np.float64) + 1e-9  # all-zero priorities still pick
    if emb is None or n < 2:
        return np.argsort(-priority, kind="stable")[:budget].astype(np.int64)
    nn = _knn_distance(emb, emb, 2) * 2.0  # mean of (0, nearest other) * 2 = nearest other
    radius = float(np.median(nn)) or 1.0
    picked: list[int] = []
    dmin = np.full(n, np.inf)
    for _ in range(budget):
        score = priority * np.minimum(1.0, dmin / radius)
        score[picked] = -1.0
        i = int(np.argmax(score))
        picked.append(i)
        dmin = np.minimum(dmin, np.sqrt(np.sum((emb - emb[i]) ** 2, axis=1)))
    return np.asarray(picked, dtype=np.int64)

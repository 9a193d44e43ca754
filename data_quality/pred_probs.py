"""Out-of-sample predicted probabilities and the shared cosine kNN graph, for cleanlab.

``out_of_sample_pred_probs`` cross-validates a cheap classifier on embeddings (never in-sample:
cleanlab's estimates need held-out probabilities); ``cosine_knn_graph`` builds the neighbour graph
that Datalab's outlier and near-duplicate issue managers share.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

__all__ = ["cosine_knn_graph", "embedding_classes", "held_out_arrays", "out_of_sample_pred_probs"]

_KEYS = ["video_id", "frame_index"]


# ------------------------------------------------- the frame_embeddings table ---


def embedding_classes(table: pl.DataFrame) -> list[str]:
    """The K class names of a ``frame_embeddings`` table (column ``k`` of ``pred_probs``).

    ``classes`` is a list column (one list per row, all equal); a legacy string column holds
    the names comma-joined (safe only because class names cannot contain a comma, see
    :data:`data_quality.labels.CLASS_NAME_RULE`).
    """
    if table.is_empty():
        return []
    value = table["classes"][0]
    if isinstance(value, str):
        return value.split(",") if value else []
    return [str(c) for c in (value.to_list() if isinstance(value, pl.Series) else value)]


def held_out_arrays(
    table: pl.DataFrame, keys: pl.DataFrame
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Classes, held-out probabilities and embeddings of a ``frame_embeddings`` table, by key.

    Parameters
    ----------
    table : pl.DataFrame
        ``frame_embeddings``: ``video_id``, ``frame_index``, ``pred_probs`` (list of K floats),
        ``embedding`` (list of D floats), ``classes`` (list of K names, or comma-joined).
    keys : pl.DataFrame of shape (N, 2+)
        ``video_id``, ``frame_index`` of the wanted rows, in the wanted order.

    Returns
    -------
    classes : list of str, length K
    probs : np.ndarray of shape (N, K), float64
        Row ``i`` is ``keys[i]``'s held-out class probabilities.
    embeddings : np.ndarray of shape (N, D), float32

    Raises
    ------
    ValueError
        A key has no row in ``table``.
    """
    joined = keys.select(_KEYS).join(
        table.select(*_KEYS, "pred_probs", "embedding"), on=_KEYS, how="left", maintain_order="left"
    )
    missing = joined.filter(pl.col("embedding").is_null())
    if missing.height:
        raise ValueError(
            f"{missing.height} labeled frames have no embedding, e.g. {missing.row(0)}: "
            "materialise frame_embeddings first"
        )
    classes = embedding_classes(table)
    if joined.is_empty():
        return classes, np.zeros((0, len(classes))), np.zeros((0, 0), np.float32)
    probs = np.asarray(joined["pred_probs"].to_list(), dtype=np.float64).reshape(len(joined), -1)
    emb = np.asarray(joined["embedding"].to_list(), dtype=np.float32).reshape(len(joined), -1)
    if probs.shape[1] != len(classes):
        raise ValueError(f"pred_probs has {probs.shape[1]} columns but {len(classes)} classes")
    return classes, probs, emb


# ------------------------------------------------------ nearest neighbours ---


def _normalize(x: np.ndarray):
    import torch

    return torch.nn.functional.normalize(torch.as_tensor(np.asarray(x), dtype=torch.float32), dim=1)


def _topk_cosine(queries: np.ndarray, reference: np.ndarray, k: int, *, exclude_self: bool = False):
    """Exact top-``k`` cosine neighbours of each query row among ``reference`` rows.

    Returns ``(similarity (Q, k) float32 descending, index (Q, k) int64)``. With
    ``exclude_self`` the queries are the reference and row ``i`` never returns
    ``i``. Brute force in chunks (torch matmul + topk): O(Q R D) time.
    """
    import torch

    q, r = _normalize(queries), _normalize(reference)
    k = min(k, len(r) - (1 if exclude_self else 0))
    sims = torch.empty((len(q), k), dtype=torch.float32)
    idx = torch.empty((len(q), k), dtype=torch.int64)
    step = max(1, (1 << 24) // max(len(r), 1))
    for start in range(0, len(q), step):
        s = q[start : start + step] @ r.T
        if exclude_self:
            rows = torch.arange(s.shape[0])
            s[rows, rows + start] = -math.inf
        sims[start : start + step], idx[start : start + step] = torch.topk(s, k, dim=1)
    return sims.numpy(), idx.numpy()


def cosine_knn_graph(features: np.ndarray, *, k: int = 10) -> csr_matrix:
    """k-nearest-neighbour graph in cleanlab's format (cosine distance).

    Parameters
    ----------
    features : np.ndarray of shape (N, D)
        Embeddings, N >= 2.
    k : int
        Neighbours per row (capped at N - 1).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (N, N)
        Row ``i`` holds its ``k`` nearest other rows, ``data`` = cosine
        distance ``1 - cos`` in ascending order, as expected by
        ``Datalab.find_issues(knn_graph=...)``. Exact, O(N^2 D): 100k x 64
        takes 25-50 s on 2 cores; for millions of rows build the graph with
        a dedicated ANN index and pass it to :func:`find_label_issues`.
    """
    sims, idx = _topk_cosine(features, features, k, exclude_self=True)
    n, kk = idx.shape
    dist = np.clip(1.0 - sims.astype(np.float64), 0.0, None)
    return csr_matrix((dist.ravel(), idx.ravel(), np.arange(0, n * kk + 1, kk)), shape=(n, n))


# ------------------------------------------------- out-of-sample pred_probs ---


def _folds(labels: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise ValueError("need at least 2 groups for out-of-sample predictions")
        cv = StratifiedGroupKFold(n_splits=min(n_folds, n_groups), shuffle=True, random_state=seed)
        split = cv.split(labels, labels, groups)
    else:
        if len(labels) < 2:
            raise ValueError("need at least 2 examples for out-of-sample predictions")
        cv = StratifiedKFold(n_splits=min(n_folds, len(labels)), shuffle=True, random_state=seed)
        split = cv.split(labels, labels)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        return list(split)


def _fit_predict_logreg(x_tr, y_tr, x_te, n_classes: int, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    out = np.zeros((len(x_te), n_classes))
    present = np.unique(y_tr)
    if len(present) == 1:
        out[:, present[0]] = 1.0
        return out
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        model = LogisticRegression(C=c, max_iter=500).fit(x_tr, y_tr)
    out[:, model.classes_] = model.predict_proba(x_te)
    return out


class _FoldKnn:
    """kNN votes for one fold; neighbour lists are searched once and reused.

    The first search keeps ``2k`` neighbours; later rounds drop training rows
    that were excluded and only re-search the (rare) queries left with fewer
    than ``k`` usable neighbours, so results stay exact.
    """

    def __init__(self, x_tr: np.ndarray, x_te: np.ndarray, k: int) -> None:
        self.x_tr, self.x_te, self.k = x_tr, x_te, min(k, len(x_tr))
        self.nbr = _topk_cosine(x_te, x_tr, 2 * k)[1]

    def predict(self, y_tr: np.ndarray, keep: np.ndarray, n_classes: int) -> np.ndarray:
        ok = keep[self.nbr]
        use = ok & (np.cumsum(ok, axis=1) <= self.k)
        out = np.zeros((len(self.x_te), n_classes))
        rows = np.broadcast_to(np.arange(len(self.x_te))[:, None], use.shape)
        np.add.at(out, (rows[use], y_tr[self.nbr][use]), 1.0)
        short = use.sum(axis=1) < min(self.k, int(keep.sum()))
        if short.any():
            kept = np.flatnonzero(keep)
            idx = kept[_topk_cosine(self.x_te[short], self.x_tr[kept], self.k)[1]]
            out[short] = 0.0
            np.add.at(out, (np.repeat(np.flatnonzero(short), idx.shape[1]), y_tr[idx].ravel()), 1.0)
        return out / np.maximum(out.sum(axis=1, keepdims=True), 1.0)


def out_of_sample_pred_probs(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    n_folds: int = 5,
    seed: int = 0,
    groups: np.ndarray | None = None,
    method: str = "ensemble",
    n_rounds: int = 3,
    C: float = 0.1,
    n_neighbors: int = 10,
) -> np.ndarray:
    """Cross-validated (never in-sample) predicted class probabilities.

    Each example is predicted by models that did not see it: K-fold
    (``StratifiedKFold``), or ``StratifiedGroupKFold`` when ``groups`` is
    given so that frames of one video never sit on both sides of a split.
    Features are standardized with training-fold statistics.

    Parameters
    ----------
    features : np.ndarray of shape (N, D), float
        Embeddings.
    labels : np.ndarray of shape (N,), int
        Given (possibly noisy) labels in ``0 .. n_classes-1``.
    n_classes : int
        K, the number of classes (columns of the result).
    n_folds : int
        Folds (capped at N, or at the number of groups).
    seed : int
        Fold shuffling seed; the result is deterministic for fixed inputs.
    groups : np.ndarray of shape (N,), optional
        Group id per example (e.g. video_id); needs >= 2 distinct groups.
    method : {"ensemble", "logreg", "knn"}
        ``"logreg"``: L2 logistic regression (strength ``C``) on standardized
        features. ``"knn"``: ``n_neighbors`` cosine neighbours' label votes.
        ``"ensemble"``: their average, which on the digits benchmark is
        both more accurate and more noise-robust than either alone.
    n_rounds : int
        ``1``: plain cross-validation. ``>= 2``: after each round, examples
        cleanlab flags as label issues (``prune_by_noise_rate``) are left
        out of the *training* folds of the next round (they are still
        predicted), so mislabelled examples stop teaching the model their
        wrong label. On the digits benchmark each extra round adds 1-3
        points of recall at equal precision (3 rounds vs 1); the kNN
        neighbour search is done once and reused, so rounds are cheap.
    C : float
        Inverse L2 strength for logistic regression (0.1 suits noisy labels).
    n_neighbors : int
        k for the kNN member.

    Returns
    -------
    np.ndarray of shape (N, K)
        Rows sum to 1.
    """
    from cleanlab.filter import find_label_issues as cl_find
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (N, D) with N == len(labels); got {x.shape}, {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    if method not in {"ensemble", "logreg", "knn"}:
        raise ValueError(f"unknown method {method!r}")
    folds = _folds(y, None if groups is None else np.asarray(groups), n_folds, seed)
    excluded = np.zeros(len(y), dtype=bool)
    probs = np.zeros((len(y), n_classes))
    # Small BLAS calls thrash when threaded on shared CPUs; one thread is faster here.
    knn: dict[int, _FoldKnn] = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for round_ in range(max(1, n_rounds)):
            probs = np.zeros((len(y), n_classes))
            for f, (train, test) in enumerate(folds):
                # Standardize with the whole training fold (unsupervised, so no leak).
                mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
                x_tr, x_te = (x[train] - mean) / std, (x[test] - mean) / std
                keep = (
                    ~excluded[train]
                    if excluded[train].sum() < len(train)
                    else np.ones(len(train), bool)
                )
                members = []
                if method in {"ensemble", "logreg"}:
                    members.append(
                        _fit_predict_logreg(x_tr[keep], y[train][keep], x_te, n_classes, C)
                    )
                if method in {"ensemble", "knn"}:
                    if f not in knn:
                        knn[f] = _FoldKnn(x_tr, x_te, n_neighbors)
                    members.append(knn[f].predict(y[train], keep, n_classes))
                probs[test] = np.mean(members, axis=0)
            if round_ + 1 < n_rounds and len(np.unique(y)) > 1:
                excluded = cl_find(y, _smooth(probs), filter_by="prune_by_noise_rate", n_jobs=1)
    return _smooth(probs)


def _smooth(probs: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Avoid exact zeros (kNN votes) and renormalise rows."""
    p = probs + eps
    return p / p.sum(axis=1, keepdims=True)

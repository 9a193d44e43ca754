"""Held-out predicted probabilities for cleanlab: read back by key, and the shared kNN graph.

The probabilities and embeddings themselves come from K-fold training of the edge CNN
(:func:`training.crossval.cross_val_predict`, the ``frame_embeddings`` asset): never in-sample,
because cleanlab's estimates need held-out probabilities. :func:`held_out_arrays` reads them
back in key order; :func:`cosine_knn_graph` builds the neighbour graph that Datalab's outlier
and near-duplicate issue managers share.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from data_quality.contract import KEYS as _KEYS

__all__ = ["cosine_knn_graph", "embedding_classes", "held_out_arrays"]


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

"""Label issues and other per-frame data issues, cleanlab style.

Pipeline (what the ``label_issues`` asset calls; ``probs`` and ``embeddings`` are the
held-out outputs of :func:`training.crossval.cross_val_predict`, read back with
:func:`data_quality.pred_probs.held_out_arrays`)::

    issues = find_label_issues(label_codes, probs, keys=frame_keys, features=embeddings,
                               quality=frames_table, classes=classes)

Each issue type is one small class with a stable ``issue_name`` (like
cleanlab's Datalab issue managers), one module per family in
:mod:`data_quality.issue_types` (label / Datalab / image quality), registered once in
:data:`REGISTRY`; the thumbnail grid for asset metadata is :mod:`data_quality.plots`.
Every issue type adds ``is_<issue_name>`` (bool) and ``<issue_name>_score``
(0..1, lower = more severe) columns. When an issue type's inputs are missing
(no ``features`` or no ``quality``) its columns are present but null, so the
table schema never changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from data_quality.contract import KEYS as _KEYS
from data_quality.issue_types.base import IssueContext, IssueType
from data_quality.issue_types.datalab import NearDuplicateIssue, OutlierIssue
from data_quality.issue_types.image_quality import (
    BlurryIssue,
    DarkIssue,
    OverexposedIssue,
    camera_stats,
)
from data_quality.issue_types.label import LabelIssue

__all__ = [
    "REGISTRY",
    "BlurryIssue",
    "DarkIssue",
    "IssueContext",
    "IssueType",
    "LabelIssue",
    "NearDuplicateIssue",
    "OutlierIssue",
    "OverexposedIssue",
    "camera_stats",
    "find_label_issues",
    "issue_counts",
]


REGISTRY: dict[str, type[IssueType]] = {
    cls.issue_name: cls
    for cls in (
        LabelIssue,
        OutlierIssue,
        NearDuplicateIssue,
        DarkIssue,
        OverexposedIssue,
        BlurryIssue,
    )
}
"""Every issue type by its stable ``issue_name``; :func:`find_label_issues` runs them in this order."""


def find_label_issues(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    keys: pl.DataFrame,
    features: np.ndarray | None = None,
    quality: pl.DataFrame | None = None,
    classes: Sequence[str] | None = None,
    issue_types: Sequence[str] | None = None,
    issue_params: Mapping[str, Mapping[str, Any]] | None = None,
    knn_graph: csr_matrix | None = None,
    knn_k: int = 10,
) -> pl.DataFrame:
    """Build the ``label_issues`` table: one row per labelled frame, all issue types.

    Parameters
    ----------
    labels : np.ndarray of shape (N,), int
        Given labels (e.g. consensus labels) in ``0 .. K-1``.
    pred_probs : np.ndarray of shape (N, K)
        Out-of-sample predicted probabilities (:func:`training.crossval.cross_val_predict`).
    keys : pl.DataFrame of shape (N, 2+)
        ``video_id``, ``frame_index`` of each row.
    features : np.ndarray of shape (N, D), optional
        Embeddings; enables ``outlier`` and ``near_duplicate``.
    quality : pl.DataFrame, optional
        Per-frame ``video_id``, ``frame_index``, ``brightness`` (0..255 mean
        gray) and/or ``sharpness`` (variance of Laplacian) and optionally
        ``camera_id``, e.g. the ``frames`` table; enables ``dark``,
        ``overexposed``, ``blurry``, which judge each frame against the
        frames of its camera (all frames as one camera without ``camera_id``).
    classes : sequence of str, optional
        Class names for ``given_label`` / ``suggested_label`` (default ``"0"``, ``"1"``...).
    issue_types : sequence of str, optional
        Names from :data:`REGISTRY` to run (default all); the rest get null columns.
    issue_params : mapping, optional
        Keyword options per issue type, e.g. ``{"dark": {"threshold": 30}}``;
        Datalab types take their issue-manager options (``{"near_duplicate": {"threshold": 0.1}}``).
    knn_graph : scipy.sparse.csr_matrix of shape (N, N), optional
        Precomputed neighbour graph in cleanlab's format (e.g. from an ANN
        index for very large N); default :func:`cosine_knn_graph` of ``features``.
    knn_k : int
        Neighbours for the default graph.

    Returns
    -------
    pl.DataFrame
        Rows in the order of ``keys``. Columns ``video_id``, ``frame_index``,
        ``given_label``, ``suggested_label``, ``label_quality``,
        ``is_label_issue``, ``suggested_confidence``, then per issue type
        ``is_<name>`` / ``<name>_score`` (and ``near_duplicate_set``) for
        outlier, near_duplicate, dark, overexposed, blurry. Flags are null
        where the issue type could not run.
    """
    y = np.asarray(labels).astype(np.int64)
    p = np.asarray(pred_probs, dtype=np.float64)
    n = len(y)
    if p.shape[0] != n or keys.height != n:
        raise ValueError(
            f"labels ({n}), pred_probs ({p.shape[0]}) and keys ({keys.height}) differ in length"
        )
    names = (
        [str(c) for c in classes] if classes is not None else [str(i) for i in range(p.shape[1])]
    )
    if len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} classes but pred_probs has {p.shape[1]} columns")
    feats = None if features is None else np.asarray(features, dtype=np.float32)
    if feats is not None and len(feats) != n:
        raise ValueError("features and labels differ in length")
    aligned = None
    if quality is not None:
        cols = [c for c in ("brightness", "sharpness", "camera_id") if c in quality.columns]
        aligned = keys.select(_KEYS).join(
            quality.select(*_KEYS, *cols).unique(subset=_KEYS, keep="first"),
            on=_KEYS,
            how="left",
            maintain_order="left",
        )
    ctx = IssueContext(y, p, feats, aligned, knn_graph, knn_k)
    wanted = list(REGISTRY) if issue_types is None else list(issue_types)
    unknown = set(wanted) - set(REGISTRY)
    if unknown:
        raise ValueError(f"unknown issue types {sorted(unknown)}; known: {list(REGISTRY)}")

    out = keys.select(_KEYS).with_columns(
        given_label=pl.Series([names[i] for i in y], dtype=pl.String),
        suggested_label=pl.Series([names[i] for i in p.argmax(axis=1)], dtype=pl.String),
    )
    for name, cls in REGISTRY.items():
        values: dict[str, Any] = {}
        if name in wanted and all(ctx.has(need) for need in cls.needs) and n:
            values = cls(**dict((issue_params or {}).get(name, {}))).find(ctx)
        out = out.with_columns(
            [
                _series(col, values[col], dtype)
                if col in values
                else pl.lit(None, dtype).alias(col)
                for col, dtype in cls.columns.items()
                if col not in out.columns
            ]
        )
    return out


def _series(name: str, values: Any, dtype: Any) -> pl.Series:
    """Column from numpy/list values; NaN floats and None flags become null."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        values = values.tolist()
    series = pl.Series(name, values, dtype=dtype, strict=False)
    return series.fill_nan(None) if dtype == pl.Float64 else series


def issue_counts(df: pl.DataFrame) -> dict[str, int]:
    """Number of flagged rows per issue type: ``{"label": 12, "outlier": 3, ...}``.

    Counts every boolean ``is_*`` column (nulls count as not flagged); the key
    drops the ``is_`` prefix and an ``_issue`` suffix.
    """
    counts = {}
    for col, dtype in df.schema.items():
        if col.startswith("is_") and dtype == pl.Boolean:
            name = col[3:].removesuffix("_issue")
            counts[name] = int(df[col].fill_null(False).sum())
    return counts

"""The interface every issue type implements and the inputs they share."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from data_quality.pred_probs import cosine_knn_graph

__all__ = ["IssueContext", "IssueType"]


class IssueContext:
    """Inputs shared by the issue types for one call of :func:`find_label_issues`.

    Attributes
    ----------
    labels : np.ndarray of shape (N,) int
    pred_probs : np.ndarray of shape (N, K)
    features : np.ndarray of shape (N, D) or None
    quality : pl.DataFrame or None
        ``brightness`` and ``sharpness`` aligned to the N rows (null where missing).
    cameras : np.ndarray of shape (N,)
        Camera of each row (``camera_id`` of ``quality``; one camera for all when absent):
        frame-quality issue types judge a frame against its own camera.
    """

    def __init__(self, labels, pred_probs, features, quality, knn_graph, knn_k: int) -> None:
        self.labels = labels
        self.pred_probs = pred_probs
        self.features = features
        self.quality = quality
        self._graph = knn_graph
        self._knn_k = knn_k

    @cached_property
    def cameras(self) -> np.ndarray:
        """(N,) camera per row; ``"all"`` where unknown."""
        if self.quality is not None and "camera_id" in self.quality.columns:
            return self.quality["camera_id"].fill_null("all").cast(pl.String).to_numpy()
        return np.full(len(self.labels), "all", dtype=object)

    @cached_property
    def knn_graph(self) -> csr_matrix:
        """Shared cosine kNN graph (computed once, used by every Datalab issue type)."""
        if self._graph is not None:
            return self._graph
        return cosine_knn_graph(self.features, k=self._knn_k)

    def has(self, need: str) -> bool:
        if need == "features":
            return self.features is not None and len(self.labels) > 2
        if need in {"brightness", "sharpness"}:
            return self.quality is not None and need in self.quality.columns
        return True


class IssueType:
    """Base class: set ``issue_name``, ``needs`` and ``columns``; implement ``find``."""

    issue_name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[dict[str, Any]]

    def find(self, ctx: IssueContext) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

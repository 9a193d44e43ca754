"""Issue types computed by cleanlab's Datalab on the shared cosine kNN graph of the embeddings."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl

from data_quality.issue_types.base import IssueContext, IssueType

__all__ = ["NearDuplicateIssue", "OutlierIssue"]


class _DatalabIssue(IssueType):
    """Runs one cleanlab Datalab issue manager on the shared kNN graph."""

    needs = ("features",)

    def __init__(self, **params: Any) -> None:
        self.params = params

    def _run(self, ctx: IssueContext):
        from cleanlab import Datalab

        graph = ctx.knn_graph
        k = graph.nnz // graph.shape[0]
        lab = Datalab(data={"row": np.arange(graph.shape[0])}, verbosity=0)
        params = {"k": k, **self.params}
        lab.find_issues(knn_graph=graph, issue_types={self.issue_name: params})
        return lab


class OutlierIssue(_DatalabIssue):
    """Atypical embedding: large mean distance to its k neighbours (Datalab ``outlier``)."""

    issue_name = "outlier"
    columns: ClassVar[dict[str, Any]] = {"is_outlier": pl.Boolean, "outlier_score": pl.Float64}

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        issues = self._run(ctx).get_issues("outlier")
        return {
            "is_outlier": issues["is_outlier_issue"].to_numpy(),
            "outlier_score": issues["outlier_score"].to_numpy(),
        }


class NearDuplicateIssue(_DatalabIssue):
    """(Near-)identical embeddings (Datalab ``near_duplicate``).

    ``near_duplicate_set`` is the row number (in this table) of the first
    member of the example's connected set of near-duplicates; null if none.
    """

    issue_name = "near_duplicate"
    columns: ClassVar[dict[str, Any]] = {
        "is_near_duplicate": pl.Boolean,
        "near_duplicate_score": pl.Float64,
        "near_duplicate_set": pl.Int64,
    }

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        lab = self._run(ctx)
        issues = lab.get_issues("near_duplicate")
        sets = lab.get_info("near_duplicate")["near_duplicate_sets"]
        n = len(sets)
        rows = np.repeat(np.arange(n), [len(s) for s in sets])
        cols = (
            np.concatenate([np.asarray(s, dtype=np.int64) for s in sets])
            if n
            else np.array([], int)
        )
        _, comp = connected_components(
            coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False
        )
        first = np.full(comp.max() + 1 if n else 0, n, dtype=np.int64)
        np.minimum.at(first, comp, np.arange(n))
        size = np.bincount(comp) if n else np.array([], int)
        set_id = np.where(size[comp] > 1, first[comp], -1) if n else np.array([], int)
        return {
            "is_near_duplicate": issues["is_near_duplicate_issue"].to_numpy(),
            "near_duplicate_score": issues["near_duplicate_score"].to_numpy(),
            "near_duplicate_set": [int(s) if s >= 0 else None for s in set_id],
        }

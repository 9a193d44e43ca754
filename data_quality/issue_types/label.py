"""The ``label`` issue type: the given label is probably wrong (cleanlab confident learning)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl

from data_quality.issue_types.base import IssueContext, IssueType

__all__ = ["LabelIssue"]


class LabelIssue(IssueType):
    """Given label probably wrong (cleanlab confident learning).

    ``is_label_issue`` from ``cleanlab.filter.find_label_issues(filter_by=...)``;
    ``label_quality`` from ``cleanlab.rank.get_label_quality_scores(method=...)``
    (0..1, low = likely wrong); ``suggested_label`` is the model's argmax and
    ``suggested_confidence`` its probability.
    """

    issue_name = "label"
    columns: ClassVar[dict[str, Any]] = {
        "given_label": pl.String,
        "suggested_label": pl.String,
        "label_quality": pl.Float64,
        "is_label_issue": pl.Boolean,
        "suggested_confidence": pl.Float64,
    }

    def __init__(
        self, *, filter_by: str = "prune_by_noise_rate", rank_method: str = "self_confidence"
    ):
        self.filter_by, self.rank_method = filter_by, rank_method

    def find(self, ctx: IssueContext) -> dict[str, Any]:
        from cleanlab.filter import find_label_issues as cl_find
        from cleanlab.rank import get_label_quality_scores

        y, p = ctx.labels, ctx.pred_probs
        flagged = np.zeros(len(y), dtype=bool)
        if len(np.unique(y)) > 1:
            flagged = cl_find(y, p, filter_by=self.filter_by, n_jobs=1)
        return {
            "label_quality": get_label_quality_scores(y, p, method=self.rank_method),
            "is_label_issue": flagged,
            "suggested_confidence": p.max(axis=1),
        }

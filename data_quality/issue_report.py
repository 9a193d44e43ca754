"""The ``label_issues`` step: held-out probabilities and frames -> issues table and worst cases.

:func:`label_issue_report` is what the ``label_issues`` asset computes between reading and
writing the lake: every per-frame issue (:func:`data_quality.label_issues.find_label_issues`)
on the labelled frames, the counts per issue type, and the worst label issues with their
captions for the thumbnail grid. It gets data frames and arrays, never storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from data_quality.contract import KEYS as _KEYS
from data_quality.label_issues import find_label_issues, issue_counts

__all__ = ["IssueReport", "label_issue_report"]


@dataclass(frozen=True)
class IssueReport:
    """Result of :func:`label_issue_report`.

    Attributes
    ----------
    issues : pl.DataFrame
        The ``label_issues`` table (see :func:`data_quality.label_issues.find_label_issues`).
    counts : dict of str to int
        Flagged frames per issue type (see :func:`data_quality.label_issues.issue_counts`).
    worst : pl.DataFrame
        Up to ``n_worst`` label issues, lowest ``label_quality`` first: the ``issues`` columns
        plus ``uri`` and ``sha256`` of the frame (to load its image).
    captions : list of str
        One caption per row of ``worst``:
        ``"<video_id>#<frame_index> <given>-><suggested> q=<label_quality:.2f>"``.
    """

    issues: pl.DataFrame
    counts: dict[str, int]
    worst: pl.DataFrame
    captions: list[str]


def label_issue_report(
    consensus: pl.DataFrame,
    *,
    classes: Sequence[str],
    probs: np.ndarray,
    features: np.ndarray | None,
    frames: pl.DataFrame,
    n_worst: int = 12,
) -> IssueReport:
    """Find every per-frame issue of the labelled frames and pick the worst label issues.

    Parameters
    ----------
    consensus : pl.DataFrame, N rows
        Consensus labels of the usable frames, sorted by key: ``video_id``, ``frame_index``,
        ``consensus_label`` (one of ``classes``).
    classes : sequence of str, K names
        Class names; column ``k`` of ``probs`` is ``classes[k]``.
    probs : np.ndarray, shape (N, K), float
        Held-out predicted probabilities, rows in the order of ``consensus``.
    features : np.ndarray, shape (N, D), float, or None
        Held-out embeddings (outliers, near duplicates); None skips those issue types.
    frames : pl.DataFrame
        The ``frames`` table: ``video_id``, ``frame_index``, ``camera_id``, ``uri``,
        ``sha256`` and the quality columns. Only the labelled frames set a camera's quality
        baseline, so an unlabelled video landing cannot move it.
    n_worst : int, optional
        How many label issues ``worst`` holds.

    Returns
    -------
    IssueReport
    """
    keys = consensus.select(_KEYS)
    y = consensus["consensus_label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
    issues = find_label_issues(
        y,
        probs,
        keys=keys,
        features=features,
        quality=frames.join(keys, on=_KEYS),
        classes=classes,
    )
    worst = (
        issues.filter("is_label_issue")
        .sort("label_quality")
        .head(n_worst)
        .join(frames.select(*_KEYS, "uri", "sha256"), on=_KEYS, maintain_order="left")
    )
    captions = [
        f"{r['video_id']}#{r['frame_index']} {r['given_label']}->{r['suggested_label']}"
        f" q={r['label_quality']:.2f}"
        for r in worst.iter_rows(named=True)
    ]
    return IssueReport(issues=issues, counts=issue_counts(issues), worst=worst, captions=captions)

"""data_quality.consensus.crowdlab (long format) against cleanlab's get_label_quality_multiannotator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cleanlab.multiannotator import get_label_quality_multiannotator

from data_quality.consensus import Crowd, crowdlab


def _matrix(seed: int, *, n=300, m=12, k=4, lonely=True):
    """(N, M) labels with NaN: 1-4 annotators per frame, per-annotator noise, a lonely annotator."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    noise = rng.uniform(0.02, 0.5, m)
    matrix = np.full((n, m), np.nan)
    for i in range(n):
        who = rng.choice(m - 1 if lonely else m, rng.integers(1, 5), replace=False)
        flip = rng.random(len(who)) < noise[who]
        matrix[i, who] = np.where(flip, rng.integers(0, k, len(who)), truth[i])
    if lonely:  # only ever labels frames nobody else labelled
        alone = np.flatnonzero((~np.isnan(matrix)).sum(1) == 1)[:5]
        matrix[alone] = np.nan
        matrix[alone, m - 1] = truth[alone]
    probs = rng.dirichlet(np.ones(k) * 0.7, n)
    probs[np.arange(n), truth] += rng.uniform(0, 1.5, n)
    return matrix, probs / probs.sum(1, keepdims=True)


def _reference(matrix, probs, k):
    np.random.seed(0)
    if probs is None:
        counts = np.stack([(matrix == c).sum(1) for c in range(k)], 1) + 1e-3
        probs_in, cm, qm = counts / counts.sum(1, keepdims=True), "majority_vote", "agreement"
    else:
        probs_in, cm, qm = probs, "best_quality", "crowdlab"
    return get_label_quality_multiannotator(
        pd.DataFrame(matrix), probs_in, consensus_method=cm, quality_method=qm, verbose=False
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("with_model", [True, False])
def test_crowdlab_long_matches_cleanlab(seed, with_model):
    k = 4
    matrix, probs = _matrix(seed, k=k)
    probs = probs if with_model else None
    ref = _reference(matrix, probs, k)
    np.random.seed(0)
    got = crowdlab(Crowd.from_matrix(matrix, k), probs)

    frames = ref["label_quality"]
    np.testing.assert_array_equal(got.consensus_label, frames["consensus_label"].to_numpy())
    np.testing.assert_allclose(
        got.consensus_quality_score, frames["consensus_quality_score"].to_numpy(), rtol=1e-10
    )
    np.testing.assert_allclose(got.annotator_agreement, frames["annotator_agreement"].to_numpy())
    stats = ref["annotator_stats"].sort_index()
    np.testing.assert_allclose(
        got.annotator_quality, stats["annotator_quality"].to_numpy(dtype=float), rtol=1e-10
    )
    np.testing.assert_allclose(
        got.agreement_with_consensus, stats["agreement_with_consensus"].to_numpy(dtype=float)
    )
    np.testing.assert_array_equal(got.worst_class, stats["worst_class"].to_numpy())
    np.testing.assert_array_equal(got.num_examples_labeled, stats["num_examples_labeled"])
    if with_model:  # (cleanlab's agreement-mode detail counts float labels positionally:
        # value_counts puts [0, 2] into classes [0, 1]; compute_consensus does not use it)
        detailed = np.nanmean(ref["detailed_label_quality"].to_numpy(dtype=float), axis=0)
        np.testing.assert_allclose(got.label_quality_mean, detailed, rtol=1e-10)


@pytest.mark.parametrize(
    "patterns",
    [
        [(0, 0, 1), (1, 1, 0), (0, 1)],  # ties resolved by annotator agreement (tie-break 3)
        [(0, 0), (1, 1), (0, 1)],  # everyone agrees elsewhere: seeded random (tie-break 4)
    ],
)
def test_majority_vote_ties_follow_cleanlab(patterns):
    """Balanced classes and a useless model: ties reach cleanlab's third and fourth tie-breaks."""
    rng = np.random.default_rng(7)
    n, m, k = 240, 5, 2
    matrix = np.full((n, m), np.nan)
    for i in range(n):
        votes = patterns[i % 3]  # both classes get the same number of votes
        matrix[i, rng.choice(m, len(votes), replace=False)] = votes
    probs = np.full((n, k), 1 / k)
    ref = _reference(matrix, probs, k)
    np.random.seed(0)
    got = crowdlab(Crowd.from_matrix(matrix, k), probs)
    np.testing.assert_array_equal(
        got.consensus_label, ref["label_quality"]["consensus_label"].to_numpy()
    )
    np.testing.assert_allclose(
        got.consensus_quality_score,
        ref["label_quality"]["consensus_quality_score"].to_numpy(),
        rtol=1e-10,
    )

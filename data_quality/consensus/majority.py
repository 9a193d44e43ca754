"""Majority vote with cleanlab's four tie-breaks (method ``majority_vote``; also CROWDLAB's start)."""

from __future__ import annotations

import numpy as np

from data_quality.consensus.crowd import Crowd, first_candidate

__all__ = ["majority_vote"]


def majority_vote(crowd: Crowd, pred_probs: np.ndarray | None = None) -> np.ndarray:
    """cleanlab's ``get_majority_vote_label`` in long format.

    Ties are broken as cleanlab does: by ``pred_probs``, then the rarer class, then the
    annotators' agreement with the untied majority, then ``np.random.choice`` (the global
    numpy RNG, frames in order).

    Returns
    -------
    np.ndarray of shape (N,), int64
    """
    counts = crowd.counts()
    cand = counts == counts.max(axis=1, keepdims=True)
    untied = cand.sum(axis=1) == 1
    label = first_candidate(cand)
    tied = np.flatnonzero(~untied)
    if len(tied) and pred_probs is not None:  # 1: the model
        pp = np.where(cand[tied], pred_probs[tied], -np.inf)
        cand[tied] &= pp == pp.max(axis=1, keepdims=True)
        tied = tied[cand[tied].sum(axis=1) > 1]
    if len(tied):  # 2: the class fewer votes went to overall
        freq = np.where(cand[tied], counts.sum(axis=0), np.inf)
        cand[tied] &= freq == freq.min(axis=1, keepdims=True)
        tied = tied[cand[tied].sum(axis=1) > 1]
    if len(tied):  # 3: the annotators who agree more with the untied majority
        fr, lab = crowd.frame, crowd.label
        agree = crowd.per_annotator_mean(lab == label[fr], where=untied[fr])
        agree = np.where(np.isnan(agree), np.mean(agree[~np.isnan(agree)]), agree)
        in_tied = np.zeros(crowd.n_frames, bool)
        in_tied[tied] = True
        rows = in_tied[fr]
        k = crowd.n_classes
        key = fr[rows] * k + lab[rows]
        num = np.bincount(key, weights=agree[crowd.annotator[rows]], minlength=crowd.n_frames * k)
        den = np.bincount(key, minlength=crowd.n_frames * k)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = (num / den).reshape(crowd.n_frames, k)[tied]
        score = np.where(cand[tied], score, -np.inf)
        best = cand[tied] & (score == score.max(axis=1, keepdims=True))
        cand[tied] = np.where(best.any(axis=1, keepdims=True), best, cand[tied])
        tied = tied[cand[tied].sum(axis=1) > 1]
    label = first_candidate(cand)
    for i in tied:  # 4: random, as cleanlab (the caller seeds the global RNG)
        label[i] = np.random.choice(np.flatnonzero(cand[i]))
    return label.astype(np.int64)

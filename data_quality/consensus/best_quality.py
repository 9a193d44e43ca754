"""CROWDLAB (method ``crowdlab``): cleanlab's ``consensus_method="best_quality"``.

Without model predictions the same steps give cleanlab's majority vote with
``quality_method="agreement"`` (method ``majority_vote``).
"""

from __future__ import annotations

import numpy as np

from data_quality.consensus.crowd import CLIP, Crowd, CrowdStats, first_candidate
from data_quality.consensus.majority import majority_vote

__all__ = ["crowdlab"]


def _peer_agreement(crowd: Crowd, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(M,) cleanlab's ``_get_annotator_agreement_with_annotators``."""
    fr = crowd.frame
    others = (n[fr] - 1).astype(float)
    same = counts[fr, crowd.label] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        per_label = np.where(others > 0, same / np.where(others > 0, others, 1), 0.0)
    num = np.bincount(crowd.annotator, weights=per_label * others, minlength=crowd.n_annotators)
    den = np.bincount(crowd.annotator, weights=others, minlength=crowd.n_annotators)
    with np.errstate(invalid="ignore", divide="ignore"):
        agree = np.where(den > 0, num / den, np.nan)
    if np.isnan(agree).any():  # shares no frame with anyone: the mean of the others
        agree[np.isnan(agree)] = np.mean(agree[~np.isnan(agree)])
    return agree


def _posterior(
    crowd: Crowd,
    counts: np.ndarray,
    n: np.ndarray,
    consensus: np.ndarray,
    pred_probs: np.ndarray,
    peer: np.ndarray,
) -> tuple[np.ndarray, float, np.ndarray]:
    """cleanlab's ``_get_post_pred_probs_and_weights`` (crowdlab): (post (N, K), model weight, annotator weights (M,))."""
    k = crowd.n_classes
    agreement = counts[np.arange(crowd.n_frames), consensus] / n
    multi = n != 1
    likely = np.mean(agreement[multi])
    unlikely = (1 - likely) / (k - 1)
    sub = consensus[multi]
    class_error = np.clip(np.mean(sub != np.argmax(np.bincount(sub, minlength=k))), CLIP, None)
    weight = np.clip(1 - (1 - peer) / class_error, CLIP, None)
    model_error = np.mean(np.argmax(pred_probs[multi], axis=1) != sub)
    model_weight = max(1 - model_error / class_error, CLIP) * np.sqrt(np.mean(n))
    post = pred_probs * model_weight
    total = np.zeros(crowd.n_frames)
    # add each frame's annotators in column order, as cleanlab's loop over columns does
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    position = np.arange(len(crowd.frame)) - start[crowd.frame]
    classes = np.arange(k)
    for p in range(int(n.max())):
        at = np.flatnonzero(position == p)
        fr, w = crowd.frame[at], weight[crowd.annotator[at]]
        total[fr] += w
        post[fr] += np.where(
            crowd.label[at, None] == classes, w[:, None] * likely, w[:, None] * unlikely
        )
    post /= (total + model_weight)[:, None]
    return post, float(model_weight), weight


def _worst_class(crowd: Crowd, consensus: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """(M,) cleanlab's ``_get_annotator_worst_class``: lowest accuracy, then most labels, then best quality."""
    k, m = crowd.n_classes, crowd.n_annotators
    key = crowd.annotator * k + crowd.label
    count = np.bincount(key, minlength=m * k).reshape(m, k).astype(float)
    right = np.bincount(key, weights=crowd.label == consensus[crowd.frame], minlength=m * k)
    score = np.bincount(key, weights=quality[crowd.frame], minlength=m * k)
    present = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(present, right.reshape(m, k) / count, np.inf)
        score = np.where(present, score.reshape(m, k) / count, -np.inf)
    cand = present & (accuracy == accuracy.min(axis=1, keepdims=True))
    many = np.where(cand, count, -1)
    cand &= many == many.max(axis=1, keepdims=True)
    score = np.where(cand, score, -np.inf)
    cand &= score == score.max(axis=1, keepdims=True)
    return first_candidate(cand).astype(np.int64)


def crowdlab(crowd: Crowd, pred_probs: np.ndarray | None = None) -> CrowdStats:
    """cleanlab's ``get_label_quality_multiannotator`` from long-format labels.

    Parameters
    ----------
    crowd : Crowd
        The labels; every frame has at least one, some frame has two or more.
    pred_probs : np.ndarray of shape (N, K), optional
        Model probabilities per frame: CROWDLAB (``consensus_method="best_quality"``,
        ``quality_method="crowdlab"``). Without them: majority vote and agreement
        (``consensus_method="majority_vote"``, ``quality_method="agreement"``).

    Returns
    -------
    CrowdStats
        What cleanlab returns in ``label_quality`` and ``annotator_stats``, in frame and
        annotator order. Exhausted ties use the global numpy RNG, as cleanlab does.
    """
    n = crowd.num_annotations()
    counts = crowd.counts()
    fr, lab = crowd.frame, crowd.label
    rows = np.arange(crowd.n_frames)
    consensus = majority_vote(crowd, pred_probs)
    multi = n != 1
    if pred_probs is not None:
        peer = _peer_agreement(crowd, counts, n)
        post, _, _ = _posterior(crowd, counts, n, consensus, pred_probs, peer)
        top = post == post.max(axis=1, keepdims=True)
        consensus = np.where(top.sum(axis=1) == 1, np.argmax(post, axis=1), consensus)
        post, model_weight, weight = _posterior(crowd, counts, n, consensus, pred_probs, peer)
        quality = post[rows, consensus]
        label_quality = post[fr, lab]
    else:
        quality = counts[rows, consensus] / n
        label_quality = counts[fr, lab] / n[fr]
    agreement = counts[rows, consensus] / n
    right = lab == consensus[fr]
    agree_multi = crowd.per_annotator_mean(right, where=multi[fr])
    label_quality_mean = crowd.per_annotator_mean(label_quality)
    if pred_probs is not None:
        adjusted = np.sum(weight) * (np.mean(n) / crowd.n_annotators)
        w = model_weight / (model_weight + adjusted)
        annotator_quality = w * label_quality_mean + (1 - w) * agree_multi
    else:
        annotator_quality = agree_multi
    return CrowdStats(
        consensus_label=consensus.astype(np.int64),
        consensus_quality_score=quality,
        annotator_agreement=agreement,
        annotator_quality=annotator_quality,
        agreement_with_consensus=crowd.per_annotator_mean(right),
        worst_class=_worst_class(crowd, consensus, quality),
        num_examples_labeled=np.bincount(crowd.annotator, minlength=crowd.n_annotators),
        label_quality_mean=label_quality_mean,
    )

"""Frames with one annotator each (method ``single_annotation``): that label is the consensus."""

from __future__ import annotations

import numpy as np

from data_quality.consensus.crowd import Crowd, CrowdStats

__all__ = ["single_annotation"]


def single_annotation(crowd: Crowd, pred_probs: np.ndarray | None) -> CrowdStats:
    """Each frame's one label; quality from the model's self-confidence, else unknown (NaN)."""
    consensus = np.zeros(crowd.n_frames, np.int64)
    consensus[crowd.frame] = crowd.label  # one label per frame
    if pred_probs is not None:
        quality = pred_probs[np.arange(crowd.n_frames), consensus]  # cleanlab self-confidence
        ann_quality = crowd.per_annotator_mean(quality[crowd.frame])
    else:
        quality = np.full(crowd.n_frames, np.nan)
        ann_quality = np.full(crowd.n_annotators, np.nan)
    return CrowdStats(
        consensus_label=consensus,
        consensus_quality_score=quality,
        annotator_agreement=np.ones(crowd.n_frames),
        annotator_quality=ann_quality,
        agreement_with_consensus=np.ones(crowd.n_annotators),
        worst_class=np.full(crowd.n_annotators, -1, np.int64),
        num_examples_labeled=np.bincount(crowd.annotator, minlength=crowd.n_annotators),
        label_quality_mean=ann_quality,
    )

"""Prediction drift: the champion's top-class confidence and predicted-label mix."""

from __future__ import annotations

import numpy as np

from data_quality.drift.kinds.base import (
    DEFAULT_CONFIG,
    DriftConfig,
    DriftKind,
    DriftTest,
    adjust,
    blocks,
    enough_blocks,
)
from data_quality.drift.reference import CameraReference
from data_quality.drift.stats import block_means, block_sums, ks_blocks, label_mix_chi2

__all__ = ["PREDICTION_STATISTICS", "PredictionDrift", "prediction_drift_tests"]

PREDICTION_STATISTICS: tuple[str, ...] = ("confidence_ks", "label_mix_chi2")


class PredictionDrift(DriftKind):
    """``prediction``: KS of block-mean confidence and chi-square of the label mix."""

    kind = "prediction"
    statistics = PREDICTION_STATISTICS

    def run(
        self, reference: CameraReference, new: CameraReference, config: DriftConfig
    ) -> list[DriftTest]:
        return prediction_drift_tests(reference, new, config=config)


def prediction_drift_tests(
    reference: CameraReference, new: CameraReference, *, config: DriftConfig = DEFAULT_CONFIG
) -> list[DriftTest]:
    """The champion's outputs: top-class confidence (KS) and predicted-label mix (chi-square).

    Two-sample tests on softmax outputs were the strongest simple shift detectors in
    Rabanser et al., *Failing Loudly* (NeurIPS 2019). Both run on blocks of frames.

    Returns
    -------
    list of DriftTest
        One row per name in ``PREDICTION_STATISTICS``.
    """
    status = "ok"
    if new.probs is None:
        status = "no_predictions"
    elif reference.probs is None:
        status = "no_reference_predictions"
    elif reference.probs.shape[1] != new.probs.shape[1]:
        status = "class_mismatch"
    if status != "ok":
        return PredictionDrift().skipped(status, config)
    assert reference.probs is not None and new.probs is not None
    block = config.effective_block(new.n_frames)
    rb, nb = blocks(reference, block), blocks(new, block)
    if not enough_blocks(rb, nb, block):
        return PredictionDrift().skipped("too_few_frames", config)
    d, p_conf = ks_blocks(
        block_means(reference.probs.max(axis=1), rb, min_size=block),
        block_means(new.probs.max(axis=1), nb, min_size=block),
    )
    k = reference.probs.shape[1]
    r_counts, _ = block_sums(np.eye(k)[reference.probs.argmax(axis=1)], rb)
    n_counts, _ = block_sums(np.eye(k)[new.probs.argmax(axis=1)], nb)
    chi2, p_mix = label_mix_chi2(
        r_counts, n_counts, n_permutations=config.n_permutations, seed=config.seed
    )
    raw = [("confidence_ks", d, p_conf, "ok", 0.0), ("label_mix_chi2", chi2, p_mix, "ok", 0.0)]
    return adjust("prediction", raw, config.alpha)

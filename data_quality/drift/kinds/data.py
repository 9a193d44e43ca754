"""Data drift: frame statistics, colour histograms and embeddings of the new video's frames."""

from __future__ import annotations

import numpy as np

from data_quality.drift.kinds.base import (
    DEFAULT_CONFIG,
    NAN,
    DriftConfig,
    DriftKind,
    DriftTest,
    adjust,
    blocks,
    enough_blocks,
)
from data_quality.drift.reference import COLOUR_BINS, FRAME_STATS, CameraReference
from data_quality.drift.stats import block_ids, block_means, mean_change_test, mmd_permutation

__all__ = ["DATA_STATISTICS", "DataDrift", "data_drift_tests"]

DATA_STATISTICS: tuple[str, ...] = (
    *FRAME_STATS,
    "colour_hue",
    "colour_saturation",
    "colour_value",
    "embedding_mmd",
)


class DataDrift(DriftKind):
    """``data``: block-level two-sample tests of frame statistics, colours and embeddings."""

    kind = "data"
    statistics = DATA_STATISTICS

    def run(
        self, reference: CameraReference, new: CameraReference, config: DriftConfig
    ) -> list[DriftTest]:
        return data_drift_tests(reference, new, config=config)


def data_drift_tests(
    reference: CameraReference, new: CameraReference, *, config: DriftConfig = DEFAULT_CONFIG
) -> list[DriftTest]:
    """Frame statistics, colour histograms and embeddings: block-level two-sample tests.

    Parameters
    ----------
    reference, new : CameraReference
        The camera's reference and the new video's summary.
    config : DriftConfig
        Options.

    Returns
    -------
    list of DriftTest
        One row per name in ``DATA_STATISTICS``, in that order.
    """
    block = config.effective_block(new.n_frames)
    rb, nb = blocks(reference, block), blocks(new, block)
    if not enough_blocks(rb, nb, block):
        return DataDrift().skipped("too_few_frames", config)
    raw: list[tuple[str, float, float, str, float]] = []
    gate = config.min_change
    for j, name in enumerate(FRAME_STATS):
        change, p, _ = mean_change_test(
            block_means(reference.stats[:, j], rb, min_size=block),
            block_means(new.stats[:, j], nb, min_size=block),
        )
        raw.append((name, change, p, "ok", gate))
    for c, name in enumerate(("colour_hue", "colour_saturation", "colour_value")):
        if reference.colour is None or new.colour is None:
            raw.append((name, NAN, NAN, "no_images", gate))
            continue
        cols = slice(c * COLOUR_BINS, (c + 1) * COLOUR_BINS)
        change, p = _histogram_test(
            reference.colour[:, cols], new.colour[:, cols], rb, nb, block, config
        )
        raw.append((name, change, p, "ok", config.min_bin_change))
    raw.append(_embedding_test(reference, new, block, config))
    return adjust("data", raw, config.alpha)


def _histogram_test(
    ref: np.ndarray,
    new: np.ndarray,
    rb: np.ndarray,
    nb: np.ndarray,
    block: int,
    config: DriftConfig,
) -> tuple[float, float]:
    """(relative change, p) of the most significant bin among bins that changed enough.

    The p-value is Bonferroni-corrected over the bins; with no bin past ``min_bin_change`` it
    is that of the most significant bin overall (and the row cannot drift).
    """
    r = block_means(ref, rb, min_size=block)
    n = block_means(new, nb, min_size=block)
    tests = [mean_change_test(r[:, k], n[:, k], floor=config.bin_floor) for k in range(r.shape[1])]
    big = [t for t in tests if t[0] >= config.min_bin_change] or tests
    change, p, _ = min(big, key=lambda t: (t[1], -t[0]))
    if big is tests:
        change = max(t[0] for t in tests)
    return change, min(1.0, len(tests) * p)


def _embedding_test(
    reference: CameraReference, new: CameraReference, block: int, config: DriftConfig
) -> tuple[str, float, float, str, float]:
    name = "embedding_mmd"
    if new.embeddings is None:
        return name, NAN, NAN, "no_embeddings", 0.0
    if reference.embeddings is None or reference.embedding_segment is None:
        return name, NAN, NAN, "no_reference_embeddings", 0.0
    if reference.embeddings.shape[1] != new.embeddings.shape[1]:
        return name, NAN, NAN, "embedding_dim_mismatch", 0.0
    new_seg = new.embedding_segment if new.embedding_segment is not None else new.segment
    r = block_means(
        reference.embeddings, block_ids(reference.embedding_segment, block), min_size=block
    )
    n = block_means(new.embeddings, block_ids(new_seg, block), min_size=block)
    if len(r) < 2 or len(n) < 2:
        return name, NAN, NAN, "too_few_frames", 0.0
    mmd2, p, _ = mmd_permutation(r, n, n_permutations=config.n_permutations, seed=config.seed)
    return name, mmd2, p, "ok", 0.0

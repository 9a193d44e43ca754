"""Two-sample tests for autocorrelated frame sequences, and the Holm correction.

Frames of one video are not independent: an item stays in view for several frames, the
light flickers slowly, a hand passes. A test that treats every frame as an independent
draw finds "drift" between two unshifted videos. Every test here therefore works on
*blocks* of consecutive frames: univariate tests compare block means, and permutation
tests permute whole blocks, which keeps the within-block dependence under the null.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

__all__ = [
    "block_ids",
    "block_means",
    "block_sums",
    "holm",
    "ks_blocks",
    "label_mix_chi2",
    "mean_change_test",
    "mmd_permutation",
]


def block_ids(segment: np.ndarray, block_size: int) -> np.ndarray:
    """Block id per frame: runs of ``block_size`` consecutive frames within one segment.

    Parameters
    ----------
    segment : np.ndarray
        int (N,): segment (video, or run) of each frame; frames ordered in time within one.
    block_size : int
        Frames per block (the last block of a segment may be shorter).

    Returns
    -------
    np.ndarray
        int64 (N,): 0..B-1, non-decreasing.
    """
    seg = np.asarray(segment)
    if len(seg) == 0:
        return np.zeros(0, np.int64)
    new_seg = np.r_[True, seg[1:] != seg[:-1]]
    start = np.maximum.accumulate(np.where(new_seg, np.arange(len(seg)), 0))
    pos = np.arange(len(seg)) - start
    return np.cumsum(new_seg | (pos % block_size == 0)) - 1


def block_sums(x: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-block sums of x (N,) or (N, D), and the block sizes (B,)."""
    x = np.asarray(x, dtype=np.float64)
    nb = int(blocks.max()) + 1 if len(blocks) else 0
    sizes = np.bincount(blocks, minlength=nb).astype(np.float64)
    if x.ndim == 1:
        return np.bincount(blocks, weights=x, minlength=nb), sizes
    sums = np.zeros((nb, x.shape[1]))
    np.add.at(sums, blocks, x)
    return sums, sizes


def block_means(x: np.ndarray, blocks: np.ndarray, *, min_size: int = 1) -> np.ndarray:
    """Means of x (N,) or (N, D) over blocks with at least ``min_size`` frames: (B',) or (B', D)."""
    sums, sizes = block_sums(x, blocks)
    keep = sizes >= min_size
    return sums[keep] / (sizes[keep] if sums.ndim == 1 else sizes[keep, None])


def ks_blocks(ref: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test on block means: ``(D, p_value)``.

    Parameters
    ----------
    ref, new : np.ndarray
        float (B_ref,) and (B_new,) block means.
    """
    res = sps.ks_2samp(ref, new, method="auto")
    return float(res.statistic), float(res.pvalue)


def mean_change_test(
    ref: np.ndarray, new: np.ndarray, *, floor: float = 0.0
) -> tuple[float, float, float]:
    """Welch's t-test on block means, and the relative change of the mean.

    Parameters
    ----------
    ref, new : np.ndarray
        float (B_ref,) and (B_new,) block means (at least two of each).
    floor : float
        Added to ``|mean(ref)|`` in the denominator of the relative change, so that
        features whose reference mean is near zero (a rare colour) do not blow up.

    Returns
    -------
    tuple of float
        ``(relative_change, p_value, t)``: ``|mean(new) - mean(ref)| / (|mean(ref)| + floor)``,
        the two-sided p-value and the t statistic. Constant, equal samples give p = 1.
    """
    ref, new = np.asarray(ref, np.float64), np.asarray(new, np.float64)
    diff = float(new.mean() - ref.mean())
    denom = abs(float(ref.mean())) + floor
    change = abs(diff) / denom if denom > 0 else (0.0 if diff == 0 else float("inf"))
    var = ref.var(ddof=1) / len(ref) + new.var(ddof=1) / len(new)
    if not var > 0:
        return change, (1.0 if diff == 0 else 0.0), (0.0 if diff == 0 else np.inf)
    res = sps.ttest_ind(new, ref, equal_var=False)
    return change, float(res.pvalue), float(res.statistic)


def _perm_masks(n_ref: int, n_new: int, n_permutations: int, rng) -> np.ndarray:
    """Bool (P, n_ref + n_new): which units a permutation calls "new" (row 0 = observed)."""
    n = n_ref + n_new
    keys = rng.random((n_permutations, n))
    perm = np.argsort(keys, axis=1) < n_new
    observed = np.r_[np.zeros(n_ref, bool), np.ones(n_new, bool)]
    return np.vstack([observed, perm])


def _perm_p(stat: np.ndarray) -> float:
    """Permutation p-value of stat[0] among stat[1:] (with the +1 correction)."""
    return float((1 + np.sum(stat[1:] >= stat[0] - 1e-12)) / len(stat))


def mmd_permutation(
    ref: np.ndarray,
    new: np.ndarray,
    *,
    n_permutations: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Maximum mean discrepancy with an RBF kernel and a permutation p-value.

    Parameters
    ----------
    ref, new : np.ndarray
        float (B_ref, D) and (B_new, D): units to compare (here block-mean embeddings;
        units are exchangeable under the null).
    n_permutations : int
        Random relabellings; the p-value cannot fall below ``1 / (n_permutations + 1)``.
    seed : int
        Seed of the permutations.

    Returns
    -------
    tuple of float
        ``(mmd2, p_value, bandwidth)``: the biased squared MMD estimate, its p-value and the
        kernel bandwidth (median pairwise distance of the pooled units).
    """
    z = np.vstack([ref, new]).astype(np.float64)
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    iu = np.triu_indices(len(z), 1)
    med = float(np.median(d2[iu])) if len(iu[0]) else 1.0
    bandwidth2 = med if med > 0 else 1.0
    k = np.exp(-d2 / bandwidth2)
    masks = _perm_masks(len(ref), len(new), n_permutations, np.random.default_rng(seed))
    w = np.where(masks, 1.0 / len(new), -1.0 / len(ref))  # (P, n): mean(new) - mean(ref)
    mmd2 = np.einsum("pi,ij,pj->p", w, k, w, optimize=True)
    return float(mmd2[0]), _perm_p(mmd2), float(np.sqrt(bandwidth2))


def label_mix_chi2(
    ref_counts: np.ndarray,
    new_counts: np.ndarray,
    *,
    n_permutations: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Chi-square statistic of the predicted-label mix with a block-permutation p-value.

    The chi-square distribution assumes independent frames; consecutive frames of one
    item share a prediction, so the p-value comes from permuting whole blocks instead.

    Parameters
    ----------
    ref_counts, new_counts : np.ndarray
        int (B_ref, K) and (B_new, K): predicted-label counts per block.

    Returns
    -------
    tuple of float
        ``(chi2, p_value)``.
    """
    c = np.vstack([ref_counts, new_counts]).astype(np.float64)
    masks = _perm_masks(
        len(ref_counts), len(new_counts), n_permutations, np.random.default_rng(seed)
    )
    new_tot = masks.astype(np.float64) @ c  # (P, K)
    ref_tot = c.sum(axis=0)[None, :] - new_tot
    table = np.stack([ref_tot, new_tot], axis=1)  # (P, 2, K)
    expected = table.sum(axis=2, keepdims=True) * table.sum(axis=1, keepdims=True) / c.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (table - expected) ** 2 / expected, 0.0)
    chi2 = terms.sum(axis=(1, 2))
    return float(chi2[0]), _perm_p(chi2)


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control); NaN stays NaN.

    Parameters
    ----------
    p_values : array-like
        float (M,) raw p-values.

    Returns
    -------
    np.ndarray
        float (M,) adjusted p-values in the input order, each in [0, 1].
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok) == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out

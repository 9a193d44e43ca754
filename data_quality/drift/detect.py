"""Drift tests of one video against its camera's reference: one function per test kind.

``detect_drift`` returns one :class:`DriftTest` per statistic, always the same rows in the
same order whatever the input, so the ``drift`` table has a stable shape:

==========  =================  ============================================  ==============
kind        statistic          value                                         threshold
==========  =================  ============================================  ==============
data        brightness         relative change of the mean (0.3 = 30 %)      alpha
data        contrast           same
data        sharpness          same
data        colour_hue         relative change of the most significant bin   alpha
data        colour_saturation  same
data        colour_value       same
data        embedding_mmd      squared MMD of block-mean embeddings (RBF)    alpha
viewpoint   shift_px           shift of the static scene in pixels           max_shift_px
viewpoint   rotation_deg       absolute rotation in degrees                  max_rotation_deg
prediction  confidence_ks      KS D of block-mean top-class confidence       alpha
prediction  label_mix_chi2     chi-square of predicted-label counts          alpha
==========  =================  ============================================  ==============

Statistical rows carry a Holm-adjusted ``p_value`` (Holm runs within a kind: each kind is
one asset check) and drift when it is below alpha; the six frame-statistic and colour rows
must *also* show a practically relevant change (``value >= DriftConfig.min_change``,
10 %, for the frame statistics; ``min_bin_change``, 50 %, for a colour bin), because videos of one unchanged line differ a little (belt texture, item mix) and
with hundreds of frames such harmless differences are already significant. Viewpoint rows
drift when ``value > threshold``; their ``p_value`` is NaN.

All statistical tests run on blocks of consecutive frames (see :mod:`.stats`), since the
frames of one video are autocorrelated: frame statistics and colour bins by Welch's t-test
on block means, confidence by KS on block means, embeddings by MMD on block means with a
permutation p-value, the label mix by a chi-square statistic with a block-permutation
p-value.

``status`` is ``"ok"`` for a test that ran, otherwise why it could not run
(``no_reference``, ``too_few_frames``, ``no_images``, ``no_embeddings``,
``no_reference_embeddings``, ``embedding_dim_mismatch``, ``no_predictions``,
``no_reference_predictions``, ``class_mismatch``, ``size_mismatch``): such a row has
``drifted=False`` and NaN value and p-value, and must be shown as inconclusive (see
:func:`summary`), never as "no drift".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from data_quality.drift.reference import COLOUR_BINS, FRAME_STATS, CameraReference
from data_quality.drift.stats import (
    block_ids,
    block_means,
    block_sums,
    holm,
    ks_blocks,
    label_mix_chi2,
    mean_change_test,
    mmd_permutation,
)
from data_quality.drift.viewpoint import estimate_shift

__all__ = [
    "DATA_STATISTICS",
    "PREDICTION_STATISTICS",
    "VIEWPOINT_STATISTICS",
    "DriftConfig",
    "DriftTest",
    "data_drift_tests",
    "detect_drift",
    "prediction_drift_tests",
    "summary",
    "viewpoint_tests",
]

DATA_STATISTICS: tuple[str, ...] = (
    *FRAME_STATS,
    "colour_hue",
    "colour_saturation",
    "colour_value",
    "embedding_mmd",
)
VIEWPOINT_STATISTICS: tuple[str, ...] = ("shift_px", "rotation_deg")
PREDICTION_STATISTICS: tuple[str, ...] = ("confidence_ks", "label_mix_chi2")
_NAN = float("nan")


@dataclass(frozen=True)
class DriftConfig:
    """Options of the drift tests (all have defaults that suit 2-fps sampled frames).

    Attributes
    ----------
    alpha : float
        Family-wise error rate per kind (Holm); a test drifts when its adjusted p < alpha.
    block_size : int
        Consecutive frames averaged into one test unit (handles autocorrelation).
    min_blocks : int
        Fewest blocks the new video must give; shorter videos use smaller blocks, down to
        one frame per block.
    min_frames : int
        Fewer new frames than this: ``too_few_frames``.
    n_permutations : int
        Permutations of the MMD and chi-square tests (p-values >= 1 / (n + 1)).
    max_shift_px, max_rotation_deg : float
        Viewpoint thresholds.
    min_change : float
        Practical-significance gate of the brightness, contrast and sharpness tests: they
        drift only when the mean also changed by at least this fraction. Videos of one line
        differ a little (belt texture, item mix), and with hundreds of frames a tiny,
        harmless difference is already significant.
    min_bin_change : float
        The same gate for the colour rows, per bin: a colour's share of the image must
        change by at least this fraction (0.5: it halved, or grew by half). Histogram bins
        also pick up the static scene's texture, which differs a little between videos.
    bin_floor : float
        Added to a colour bin's reference share (a fraction of the image) before the
        relative change is taken, so bins holding almost no pixels (< 0.05 % of the
        image) are not amplified.
    seed : int
        Seed of the permutations (results are deterministic).
    """

    alpha: float = 0.01
    block_size: int = 10
    min_blocks: int = 8
    min_frames: int = 24
    n_permutations: int = 2000
    max_shift_px: float = 4.0
    max_rotation_deg: float = 2.0
    min_change: float = 0.10
    min_bin_change: float = 0.5
    bin_floor: float = 0.0005
    seed: int = 0

    def effective_block(self, n_new: int) -> int:
        """Block size used for a new video of ``n_new`` frames."""
        return max(1, min(self.block_size, n_new // self.min_blocks))


@dataclass(frozen=True)
class DriftTest:
    """One row of the ``drift`` table (without the video, camera and time columns).

    Attributes
    ----------
    kind : str
        ``data``, ``viewpoint`` or ``prediction``.
    statistic : str
        Stable name (see the module docstring).
    value : float
        The test statistic or measured shift; NaN when the test did not run.
    p_value : float
        Holm-adjusted p-value; NaN for viewpoint rows and tests that did not run.
    threshold : float
        What ``p_value`` (alpha) or ``value`` (viewpoint limits) is compared with.
    drifted : bool
        The test ran and found drift.
    status : str
        ``ok`` or why the test could not run.
    p_raw : float
        Unadjusted p-value (NaN where none).
    """

    kind: str
    statistic: str
    value: float
    p_value: float
    threshold: float
    drifted: bool
    status: str = "ok"
    p_raw: float = _NAN

    def to_row(self) -> dict:
        """Plain dict, ready for a table row."""
        return asdict(self)


def _skipped(kind: str, names: tuple[str, ...], status: str, threshold: float) -> list[DriftTest]:
    return [DriftTest(kind, s, _NAN, _NAN, threshold, False, status) for s in names]


def _adjust(
    kind: str, raw: list[tuple[str, float, float, str, float]], alpha: float
) -> list[DriftTest]:
    """Rows from (statistic, value, raw p, status, min value), Holm-adjusted over the rows that ran.

    A row drifts when its adjusted p-value is below ``alpha`` and its value is at least its
    minimum (the practical-significance gate; 0 for none).
    """
    adj = holm([r[2] if r[3] == "ok" else _NAN for r in raw])
    out = []
    for (name, value, p, st, gate), pa in zip(raw, adj, strict=True):
        if st != "ok":
            out.append(DriftTest(kind, name, _NAN, _NAN, alpha, False, st))
        else:
            drifted = bool(pa < alpha and value >= gate)
            out.append(DriftTest(kind, name, float(value), float(pa), alpha, drifted, st, float(p)))
    return out


def _blocks(obj: CameraReference, block: int) -> np.ndarray:
    return block_ids(obj.segment, block)


def _enough_blocks(rb: np.ndarray, nb: np.ndarray, block: int) -> bool:
    """At least two full blocks on each side (short videos in a reference give none)."""
    full = [int((np.bincount(b) >= block).sum()) if len(b) else 0 for b in (rb, nb)]
    return min(full) >= 2


def data_drift_tests(
    reference: CameraReference, new: CameraReference, *, config: DriftConfig = DriftConfig()
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
    rb, nb = _blocks(reference, block), _blocks(new, block)
    if not _enough_blocks(rb, nb, block):
        return _skipped("data", DATA_STATISTICS, "too_few_frames", config.alpha)
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
            raw.append((name, _NAN, _NAN, "no_images", gate))
            continue
        cols = slice(c * COLOUR_BINS, (c + 1) * COLOUR_BINS)
        change, p = _histogram_test(
            reference.colour[:, cols], new.colour[:, cols], rb, nb, block, config
        )
        raw.append((name, change, p, "ok", config.min_bin_change))
    raw.append(_embedding_test(reference, new, block, config))
    return _adjust("data", raw, config.alpha)


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
        return name, _NAN, _NAN, "no_embeddings", 0.0
    if reference.embeddings is None or reference.embedding_segment is None:
        return name, _NAN, _NAN, "no_reference_embeddings", 0.0
    if reference.embeddings.shape[1] != new.embeddings.shape[1]:
        return name, _NAN, _NAN, "embedding_dim_mismatch", 0.0
    new_seg = new.embedding_segment if new.embedding_segment is not None else new.segment
    r = block_means(
        reference.embeddings, block_ids(reference.embedding_segment, block), min_size=block
    )
    n = block_means(new.embeddings, block_ids(new_seg, block), min_size=block)
    if len(r) < 2 or len(n) < 2:
        return name, _NAN, _NAN, "too_few_frames", 0.0
    mmd2, p, _ = mmd_permutation(r, n, n_permutations=config.n_permutations, seed=config.seed)
    return name, mmd2, p, "ok", 0.0


def viewpoint_tests(
    reference: CameraReference, new: CameraReference, *, config: DriftConfig = DriftConfig()
) -> list[DriftTest]:
    """Camera shift of the new video's static scene against the reference background.

    Returns
    -------
    list of DriftTest
        ``shift_px`` and ``rotation_deg`` rows (value compared with the thresholds).
    """
    limits = (config.max_shift_px, config.max_rotation_deg)
    if reference.background is None or new.background is None:
        status = "no_images"
    elif reference.background.shape != new.background.shape:
        status = "size_mismatch"
    else:
        status = "ok"
    if status != "ok":
        return [
            DriftTest("viewpoint", s, _NAN, _NAN, t, False, status)
            for s, t in zip(VIEWPOINT_STATISTICS, limits, strict=True)
        ]
    assert reference.background is not None and new.background is not None
    shift = estimate_shift(reference.background, new.background)
    values = (shift.shift_px, abs(shift.angle_deg))
    return [
        DriftTest("viewpoint", s, float(v), _NAN, t, bool(v > t), "ok")
        for s, v, t in zip(VIEWPOINT_STATISTICS, values, limits, strict=True)
    ]


def prediction_drift_tests(
    reference: CameraReference, new: CameraReference, *, config: DriftConfig = DriftConfig()
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
        return _skipped("prediction", PREDICTION_STATISTICS, status, config.alpha)
    assert reference.probs is not None and new.probs is not None
    block = config.effective_block(new.n_frames)
    rb, nb = _blocks(reference, block), _blocks(new, block)
    if not _enough_blocks(rb, nb, block):
        return _skipped("prediction", PREDICTION_STATISTICS, "too_few_frames", config.alpha)
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
    return _adjust("prediction", raw, config.alpha)


def detect_drift(
    reference: CameraReference | None,
    new: CameraReference,
    *,
    alpha: float | None = None,
    config: DriftConfig | None = None,
) -> list[DriftTest]:
    """All drift tests of one new video against its camera's reference.

    Parameters
    ----------
    reference : CameraReference or None
        The camera's reference; None gives ``no_reference`` rows.
    new : CameraReference
        Summary of the new video (:func:`build_reference` on its frames, in order).
    alpha : float, optional
        Family-wise error rate per kind; overrides ``config.alpha`` (default 0.01).
    config : DriftConfig, optional
        Other options.

    Returns
    -------
    list of DriftTest
        Rows for ``DATA_STATISTICS``, ``VIEWPOINT_STATISTICS`` and
        ``PREDICTION_STATISTICS``, in that order, whatever the input.
    """
    cfg = config or DriftConfig()
    if alpha is not None:
        cfg = replace(cfg, alpha=alpha)
    if reference is None or new.n_frames < cfg.min_frames or reference.n_frames < cfg.min_frames:
        status = "no_reference" if reference is None else "too_few_frames"
        return (
            _skipped("data", DATA_STATISTICS, status, cfg.alpha)
            + [
                DriftTest("viewpoint", s, _NAN, _NAN, t, False, status)
                for s, t in zip(
                    VIEWPOINT_STATISTICS, (cfg.max_shift_px, cfg.max_rotation_deg), strict=True
                )
            ]
            + _skipped("prediction", PREDICTION_STATISTICS, status, cfg.alpha)
        )
    return (
        data_drift_tests(reference, new, config=cfg)
        + viewpoint_tests(reference, new, config=cfg)
        + prediction_drift_tests(reference, new, config=cfg)
    )


def summary(tests: list[DriftTest]) -> dict[str, str]:
    """Verdict per kind, for an asset check.

    ``drifted`` (some test found drift), ``ok`` (every test ran, none drifted),
    ``partial`` (some ran without drift, some could not run) or ``inconclusive`` (none ran).
    """
    out: dict[str, str] = {}
    for kind in ("data", "viewpoint", "prediction"):
        rows = [t for t in tests if t.kind == kind]
        ran = [t for t in rows if t.status == "ok"]
        if any(t.drifted for t in rows):
            out[kind] = "drifted"
        elif not ran:
            out[kind] = "inconclusive"
        else:
            out[kind] = "ok" if len(ran) == len(rows) else "partial"
    return out

"""Drift tests of one video against its camera's reference: one class per drift kind.

``detect_drift`` runs every kind in :data:`REGISTRY` (one :class:`~.kinds.base.DriftKind` per
kind in :mod:`data_quality.drift.kinds`) and returns one :class:`DriftTest` per statistic,
always the same rows in the same order whatever the input, so the ``drift`` table has a
stable shape:

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

from dataclasses import replace

from data_quality.drift.kinds.base import DriftConfig, DriftKind, DriftTest
from data_quality.drift.kinds.data import DataDrift
from data_quality.drift.kinds.prediction import PredictionDrift
from data_quality.drift.kinds.viewpoint import ViewpointDrift
from data_quality.drift.reference import CameraReference

__all__ = ["REGISTRY", "detect_drift", "summary"]

REGISTRY: dict[str, type[DriftKind]] = {
    kind.kind: kind for kind in (DataDrift, ViewpointDrift, PredictionDrift)
}
"""Every drift kind by its stable name, in the order of the ``drift`` table's rows."""


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
        return [row for kind in REGISTRY.values() for row in kind().skipped(status, cfg)]
    return [row for kind in REGISTRY.values() for row in kind().run(reference, new, cfg)]


def summary(tests: list[DriftTest]) -> dict[str, str]:
    """Verdict per kind, for an asset check.

    ``drifted`` (some test found drift), ``ok`` (every test ran, none drifted),
    ``partial`` (some ran without drift, some could not run) or ``inconclusive`` (none ran).
    """
    out: dict[str, str] = {}
    for kind in REGISTRY:
        rows = [t for t in tests if t.kind == kind]
        ran = [t for t in rows if t.status == "ok"]
        if any(t.drifted for t in rows):
            out[kind] = "drifted"
        elif not ran:
            out[kind] = "inconclusive"
        else:
            out[kind] = "ok" if len(ran) == len(rows) else "partial"
    return out

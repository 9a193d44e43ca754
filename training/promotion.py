"""Promotion policy: when a challenger replaces the champion (a pure rule, no I/O).

:class:`training.registry.ModelRegistry` records the decision (alias events in Delta); this
module only decides, from two :func:`training.evaluate.evaluate` dicts, and says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge_export.paired import mcnemar

__all__ = [
    "LOWER_IS_BETTER",
    "PromotionDecision",
    "SliceComparison",
    "compare_slices",
    "mcnemar",
    "decide_promotion",
    "decide_promotion_paired",
    "mcnemar_power",
    "min_detectable_drop",
]

UNPROTECTED = ("block", "report")
"""What the gate does with a condition too small to protect its accuracy (:func:`decide_promotion_paired`)."""

LOWER_IS_BETTER = frozenset(
    {"log_loss", "ece", "false_reject_rate", "escape_rate", "loss", "val_loss"}
)
"""Metrics for which a smaller value is better."""


@dataclass(frozen=True)
class SliceComparison:
    """Champion and challenger on the same test frames of one slice (a line condition or a class)."""

    kind: str  # "slice" (camera / condition) or "class" (recall)
    name: str
    n: int
    champion: float  # accuracy on these frames (recall, for a class)
    challenger: float
    champion_only: int  # frames the champion gets right and the challenger wrong
    challenger_only: int  # and the other way round
    p_worse: float  # one-sided exact McNemar p-value of "the challenger is worse here"
    p_better: float  # one-sided exact McNemar p-value of "the challenger is better here"
    regression: bool = False  # a drop beyond the tolerance that survives Holm's correction
    mdd_points: float | None = None  # slice: smallest drop (points) detected with the power
    protected: bool | None = None  # slice: mdd_points within the tolerance (None: a class)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a challenger should replace the champion, and every reason, pro and contra."""

    promote: bool
    reasons: list[str]
    slices: list[SliceComparison] | None = None
    """Per-slice and per-class paired comparison, when decided by :func:`decide_promotion_paired`."""
    unprotected: list[str] = field(default_factory=list)
    """One line per condition too small to protect its accuracy ("unprotected: <name>: N frames,
    could miss a drop of X points"); also among ``reasons``."""


def decide_promotion(
    challenger_metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None,
    *,
    margin: float = 0.0,
    recall_tolerance: float = 0.0,
    metric: str = "accuracy",
) -> PromotionDecision:
    """Pure promotion rule on two :func:`training.evaluate.evaluate` dicts.

    Promote when there is no champion, or when the challenger, scored on the same test set,
    beats the champion on ``metric`` (strictly, and by at least ``margin``; lower is better
    for metrics in :data:`LOWER_IS_BETTER`) AND no class's recall falls by more than
    ``recall_tolerance``. Test sets count as different when both dicts carry ``test_set``
    and the values differ, or their ``n`` differ.
    """
    if champion_metrics is None:
        return PromotionDecision(
            True, ["no champion yet: the first qualified model becomes champion"]
        )
    reasons: list[str] = []
    for key in ("test_set", "n"):
        a, b = challenger_metrics.get(key), champion_metrics.get(key)
        if a is not None and b is not None and a != b:
            return PromotionDecision(
                False,
                [
                    f"not comparable: evaluated on different test sets ({key} {a!r} vs champion {b!r})"
                ],
            )
    new, old = _number(challenger_metrics.get(metric)), _number(champion_metrics.get(metric))
    if new is None or old is None:
        who = "challenger" if new is None else "champion"
        return PromotionDecision(
            False, [f"{who} has no finite {metric!r}; re-evaluate it on this test set"]
        )

    lower = metric in LOWER_IS_BETTER
    gain = old - new if lower else new - old
    beats = gain > 0 and gain >= margin - 1e-12
    verdict = "beats" if beats else "does not beat"
    reasons.append(
        f"{metric} {new:.4f} vs champion {old:.4f} ({'lower' if lower else 'higher'} is better): "
        f"{verdict} it by the margin {margin:.4f} (gain {gain:+.4f})"
    )

    recall_ok = True
    new_pc, old_pc = (
        challenger_metrics.get("per_class") or {},
        champion_metrics.get("per_class") or {},
    )
    for name, stats in sorted(old_pc.items()):
        old_r = _number((stats or {}).get("recall"))
        if old_r is None:
            continue
        new_r = _number((new_pc.get(name) or {}).get("recall"))
        if new_r is None:
            recall_ok = False
            reasons.append(f"recall[{name}] missing for the challenger (champion {old_r:.4f})")
        elif old_r - new_r > recall_tolerance + 1e-12:
            recall_ok = False
            reasons.append(
                f"recall[{name}] drops {old_r - new_r:.4f} ({old_r:.4f} -> {new_r:.4f}), "
                f"more than the tolerance {recall_tolerance:.4f}"
            )
    if recall_ok:
        reasons.append(f"no per-class recall drops more than {recall_tolerance:.4f}")
    return PromotionDecision(beats and recall_ok, reasons)


def compare_slices(
    y: np.ndarray,
    champion_pred: np.ndarray,
    challenger_pred: np.ndarray,
    groups: np.ndarray,
    *,
    kind: str = "slice",
) -> list[SliceComparison]:
    """Paired comparison of two models' predictions on the same frames, per group.

    For each group: both accuracies, the discordant counts (``b`` frames only the champion gets
    right, ``c`` only the challenger) and the one-sided exact McNemar p-values
    (``binom(b + c, 1/2)`` tail): the right test for two classifiers scored on the same frames
    (Dietterich 1998), and exact at the small counts a new condition has in a test split.
    """
    y, a, b, g = (np.asarray(v) for v in (y, champion_pred, challenger_pred, groups))
    out = []
    for name in sorted({str(v) for v in g.tolist()}):
        rows = g.astype(str) == name
        right_a, right_b = a[rows] == y[rows], b[rows] == y[rows]
        only_a, only_b, worse = mcnemar(right_a, right_b)
        _, _, better = mcnemar(right_b, right_a)
        out.append(
            SliceComparison(
                kind=kind,
                name=name,
                n=int(rows.sum()),
                champion=float(right_a.mean()),
                challenger=float(right_b.mean()),
                champion_only=only_a,
                challenger_only=only_b,
                p_worse=float(worse),
                p_better=float(better),
            )
        )
    return out


def _critical_counts(m: np.ndarray, level: float) -> np.ndarray:
    """int: for each number of discordant frames ``m``, the smallest count ``k`` of
    champion-only frames at which the one-sided exact McNemar test rejects, i.e. the smallest
    ``k`` with ``P(Binomial(m, 1/2) >= k) < level`` (``m + 1``: never)."""
    from scipy.stats import binom

    k = np.asarray(binom.isf(level, m, 0.5), dtype=float)
    k = np.nan_to_num(k, nan=0.0).astype(int) + 1
    for _ in range(3):  # settle the discrete quantile's edge exactly (strict "< level")
        k = np.where(binom.sf(k - 1, m, 0.5) >= level, k + 1, k)
        k = np.where((k > 0) & (binom.sf(k - 2, m, 0.5) < level), k - 1, k)
    return np.minimum(k, m + 1)


def mcnemar_power(n: int, drop: float, *, level: float, discordance: float = 0.0) -> float:
    """Probability that the one-sided exact McNemar test rejects "the challenger is not worse"
    at ``level`` on ``n`` paired frames when its accuracy truly is ``drop`` lower.

    The paired model: each frame is discordant with probability ``psi`` (``discordance``,
    floored at ``drop``: a drop of ``d`` needs at least a share ``d`` of frames the champion
    gets right and the challenger wrong); a discordant frame is the champion's with probability
    ``(psi + drop) / (2 psi)``. Exact: the sum over the number of discordant frames
    ``m ~ Binomial(n, psi)`` of the binomial power of the conditional test at ``m``.

    Parameters
    ----------
    n : int
        Paired test frames of the condition.
    drop : float
        True accuracy drop, a fraction in (0, 1].
    level : float
        The test's level (e.g. ``alpha`` over the number of tests).
    discordance : float
        Share of frames the two models disagree on being right (observed); floored at ``drop``.

    Returns
    -------
    float
        Power in [0, 1].
    """
    from scipy.stats import binom

    if n <= 0 or drop <= 0:
        return 0.0
    psi = min(1.0, max(float(discordance), float(drop)))
    q = min(1.0, (psi + drop) / (2 * psi))
    m = np.arange(n + 1)
    k = _critical_counts(m, level)
    return float(np.sum(binom.pmf(m, n, psi) * binom.sf(k - 1, m, q)))


def min_detectable_drop(
    n: int, *, level: float, discordance: float = 0.0, power: float = 0.8, step: float = 0.5
) -> float | None:
    """The smallest accuracy drop, in points on a grid of ``step`` points up to 100, that the
    gate's test detects with probability ``power`` on ``n`` paired frames
    (:func:`mcnemar_power`); None when not even a 100-point drop is.

    The power is increasing in the drop (a larger drop shifts the discordant frames to the
    champion and, past ``discordance``, makes more of them), so the first grid point that
    reaches ``power`` is the minimum.
    """
    for i in range(1, int(round(100 / step)) + 1):
        drop = i * step
        if mcnemar_power(n, drop / 100, level=level, discordance=discordance) >= power:
            return drop
    return None


def decide_promotion_paired(
    y: np.ndarray,
    champion_pred: np.ndarray | None,
    challenger_pred: np.ndarray,
    *,
    slices: np.ndarray,
    classes: Sequence[str],
    margin: float = 0.0,
    recall_tolerance: float = 0.02,
    alpha: float = 0.05,
    power: float = 0.8,
    unprotected: str = "report",
    new_conditions: Sequence[str] = (),
) -> PromotionDecision:
    """Promotion on per-frame predictions of both models on the same test frames.

    A test split is dominated by the conditions the line had for longest; a new condition
    (a camera whose look drifted, whose frames were just labelled) is a small share of it, so
    plain accuracy barely moves when a challenger learns it, and a fixed recall tolerance is
    below the noise of a few dozen frames. So:

    * **the metric is slice-balanced accuracy**: the mean of the accuracies of the slices (e.g.
      ``cam1``, ``cam1/drift``, ``cam2``), each line condition counting once however few
      frames it has; the challenger must beat the champion by more than ``margin``;
    * **no significant regression**: for every slice and every class (its recall), a drop of
      more than ``recall_tolerance`` blocks promotion when the one-sided exact McNemar test of
      "the challenger is worse on these frames" rejects at ``alpha`` after Holm's correction
      over all slices and classes (a drop within the noise of a small slice does not block,
      a real one does).

    * **a gate that knows its power**: for every slice, the smallest accuracy drop its ``n``
      frames detect with probability ``power`` (``mdd_points``, :func:`min_detectable_drop`:
      the exact power of this one-sided McNemar test, at the slice's observed share of
      discordant frames floored at the drop). The level is ``alpha`` over the number of tests
      (slices and classes): Holm's first step, the level a lone real regression among
      unchanged slices and classes must reach, so the statement does not depend on the other
      p-values. A slice whose ``mdd_points`` exceeds ``recall_tolerance`` is *unprotected*: a
      drop beyond the tolerance could pass unseen. ``unprotected="report"`` names it in the
      reasons ("unprotected: cam1/drift: 28 frames, could miss a drop of 37.5 points");
      ``"block"`` also refuses promotion until the condition has enough test frames.

    * **a tie goes to the line's current look**: with ``margin`` 0, a challenger that ties the
      champion exactly and trained on a line condition the champion never trained on
      (``new_conditions``: a camera's drifted look, just labelled), which the test split holds
      and where it is no worse, is promoted. A few test frames of a new look rarely tell two
      models apart (5 in the drift scenario); the one that has seen the look is the better
      bet, and the regression tests and ``unprotected`` still apply.

    ``champion_pred`` ``None``: no champion yet, the challenger is promoted (nothing to
    protect, whatever ``unprotected`` says).
    """
    from data_quality.drift.stats import holm

    if unprotected not in UNPROTECTED:
        raise ValueError(f"unprotected={unprotected!r}: one of {', '.join(UNPROTECTED)}")
    if champion_pred is None:
        return PromotionDecision(
            True, ["no champion yet: the first qualified model becomes champion"]
        )
    y = np.asarray(y)
    names = np.asarray(classes, dtype=object)[y] if len(y) else np.asarray([], dtype=object)
    parts = compare_slices(y, champion_pred, challenger_pred, slices, kind="slice")
    parts += compare_slices(y, champion_pred, challenger_pred, names, kind="class")
    adjusted = holm([p.p_worse for p in parts]) if parts else np.array([])
    parts = [
        replace(p, regression=bool(p.champion - p.challenger > recall_tolerance + 1e-12
                                   and q < alpha))
        for p, q in zip(parts, adjusted, strict=True)
    ]  # fmt: skip
    level = alpha / max(len(parts), 1)
    parts = [_with_power(p, level=level, power=power, tolerance=recall_tolerance) for p in parts]
    slice_parts = [p for p in parts if p.kind == "slice"]
    old = float(np.mean([p.champion for p in slice_parts])) if slice_parts else 0.0
    new = float(np.mean([p.challenger for p in slice_parts])) if slice_parts else 0.0
    gain = new - old
    beats = gain > 0 and gain >= margin - 1e-12
    fresh = [p.name for p in slice_parts if p.name in set(new_conditions)]
    tie_to_new_look = (
        not beats and abs(gain) <= 1e-12 and margin <= 1e-12 and bool(fresh)
        and all(p.challenger >= p.champion for p in slice_parts if p.name in fresh)
    )  # fmt: skip
    overall = compare_slices(y, champion_pred, challenger_pred, np.zeros(len(y), int))
    p_gain = overall[0].p_better if overall else 1.0
    verdict = (
        "ties it" if tie_to_new_look
        else f"{'beats' if beats else 'does not beat'} it by the margin {margin:.4f}"
    )  # fmt: skip
    reasons = [
        f"slice-balanced accuracy {new:.4f} vs champion {old:.4f} over {len(slice_parts)} "
        f"slice(s): {verdict} (gain {gain:+.4f}; paired McNemar p={p_gain:.3g} on {len(y)} frames)"
    ]
    if tie_to_new_look:
        beats = True
        reasons.append(
            f"a tie goes to the challenger: it trained on {', '.join(fresh)}, which the "
            "champion never trained on, and is no worse there"
        )
    for p in slice_parts:
        if p.challenger != p.champion:
            reasons.append(
                f"{p.name}: {p.champion:.3f} -> {p.challenger:.3f} on {p.n} frames "
                f"(+{p.challenger_only}/-{p.champion_only})"
            )
    bad = [p for p in parts if p.regression]
    for p in bad:
        what = f"recall[{p.name}]" if p.kind == "class" else f"accuracy on {p.name}"
        reasons.append(
            f"{what} drops {p.champion - p.challenger:.4f} ({p.champion:.4f} -> "
            f"{p.challenger:.4f}, {p.n} frames): beyond the tolerance {recall_tolerance:.4f} and "
            f"significant (McNemar p={p.p_worse:.3g}, Holm-adjusted < {alpha})"
        )
    if not bad:
        reasons.append(
            f"no slice or class drops significantly (Holm-adjusted McNemar at {alpha}) by more "
            f"than {recall_tolerance:.4f}"
        )
    weak = [_unprotected_line(p) for p in slice_parts if not p.protected]
    reasons += weak
    if not weak:
        reasons.append(
            f"every condition is protected: its test frames detect a drop of "
            f"{100 * recall_tolerance:g} points with power {power:g} (McNemar at "
            f"{alpha}/{len(parts)})"
        )
    elif unprotected == "block":
        reasons.append(
            f"blocked: {len(weak)} condition(s) too small to protect a drop of "
            f"{100 * recall_tolerance:g} points (unprotected='block'); add test frames or "
            "raise the tolerance"
        )
    ok = beats and not bad and not (weak and unprotected == "block")
    return PromotionDecision(ok, reasons, parts, weak)


def _with_power(
    p: SliceComparison, *, level: float, power: float, tolerance: float
) -> SliceComparison:
    """A slice's comparison with its minimum detectable drop and whether it is protected."""
    if p.kind != "slice":
        return p
    discordance = (p.champion_only + p.challenger_only) / p.n if p.n else 0.0
    mdd = min_detectable_drop(p.n, level=level, discordance=discordance, power=power)
    protected = mdd is not None and mdd <= 100 * tolerance + 1e-9
    return replace(p, mdd_points=mdd, protected=protected)


def _unprotected_line(p: SliceComparison) -> str:
    miss = "any drop" if p.mdd_points is None else f"a drop of {p.mdd_points:g} points"
    return f"unprotected: {p.name}: {p.n} frames, could miss {miss}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)

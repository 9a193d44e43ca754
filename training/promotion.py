"""Promotion policy: when a challenger replaces the champion (a pure rule, no I/O).

:class:`training.registry.ModelRegistry` records the decision (alias events in Delta); this
module only decides, from two :func:`training.evaluate.evaluate` dicts, and says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LOWER_IS_BETTER", "PromotionDecision", "decide_promotion"]

LOWER_IS_BETTER = frozenset(
    {"log_loss", "ece", "false_reject_rate", "escape_rate", "loss", "val_loss"}
)
"""Metrics for which a smaller value is better."""


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a challenger should replace the champion, and every reason, pro and contra."""

    promote: bool
    reasons: list[str]


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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)

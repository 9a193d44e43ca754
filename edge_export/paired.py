"""The exact McNemar test: two models compared on the same items (pure Python + numpy).

Used by the promotion gate (``training.promotion``, which re-exports it) and by the INT8
accuracy gate (:mod:`edge_export.int8`); a leaf module so the export side needs no scipy and
does not import ``training``.
"""

from __future__ import annotations

from math import comb

import numpy as np

__all__ = ["mcnemar"]


def mcnemar(right_a: np.ndarray, right_b: np.ndarray) -> tuple[int, int, float]:
    """Paired comparison of two models on the same items (bool arrays: each one right?).

    Returns ``(b, c, p)``: items only A gets right, items only B gets right, and the one-sided
    exact McNemar p-value of "B is worse than A" (the binomial(b + c, 1/2) upper tail at b).
    """
    right_a, right_b = np.asarray(right_a, bool), np.asarray(right_b, bool)
    b = int((right_a & ~right_b).sum())
    c = int((right_b & ~right_a).sum())
    n = b + c
    p = sum(comb(n, k) for k in range(b, n + 1)) / 2**n if n else 1.0
    return b, c, float(p)

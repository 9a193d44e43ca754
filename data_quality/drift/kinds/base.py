"""What every drift kind shares: the options, the row, the kind interface and the Holm step."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from data_quality.drift.reference import CameraReference
from data_quality.drift.stats import block_ids, holm

__all__ = [
    "DEFAULT_CONFIG",
    "NAN",
    "DriftConfig",
    "DriftKind",
    "DriftTest",
    "adjust",
    "blocks",
    "enough_blocks",
]

NAN = float("nan")


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
    empty_share : float
        Not a test option: the share of a drifted video's label budget that may go to frames
        without an item (``item_present`` false), in [0, 1]. 0 (default): none, the budget
        goes to frames that show an item; e.g. 0.1 keeps an "empty belt" class supplied.
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
    empty_share: float = 0.0

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
    p_raw: float = NAN

    def to_row(self) -> dict:
        """Plain dict, ready for a table row."""
        return asdict(self)


DEFAULT_CONFIG = DriftConfig()
"""The defaults (a frozen instance, shared as the default argument of the per-kind tests)."""


class DriftKind:
    """Base class: set ``kind`` and ``statistics``; implement ``run``.

    ``run`` returns one :class:`DriftTest` per name in ``statistics``, in that order, whatever
    the input; ``skipped`` gives the same rows for a test that could not run.
    """

    kind: ClassVar[str]
    statistics: ClassVar[tuple[str, ...]]

    def thresholds(self, config: DriftConfig) -> tuple[float, ...]:
        """What each statistic is compared with (default: ``alpha`` for every row)."""
        return (config.alpha,) * len(self.statistics)

    def skipped(self, status: str, config: DriftConfig) -> list[DriftTest]:
        """Rows of a kind that could not run: ``drifted=False``, NaN value and p-value."""
        return [
            DriftTest(self.kind, s, NAN, NAN, t, False, status)
            for s, t in zip(self.statistics, self.thresholds(config), strict=True)
        ]

    def run(
        self, reference: CameraReference, new: CameraReference, config: DriftConfig
    ) -> list[DriftTest]:  # pragma: no cover - interface
        raise NotImplementedError


def adjust(
    kind: str, raw: list[tuple[str, float, float, str, float]], alpha: float
) -> list[DriftTest]:
    """Rows from (statistic, value, raw p, status, min value), Holm-adjusted over the rows that ran.

    A row drifts when its adjusted p-value is below ``alpha`` and its value is at least its
    minimum (the practical-significance gate; 0 for none).
    """
    adj = holm([r[2] if r[3] == "ok" else NAN for r in raw])
    out = []
    for (name, value, p, st, gate), pa in zip(raw, adj, strict=True):
        if st != "ok":
            out.append(DriftTest(kind, name, NAN, NAN, alpha, False, st))
        else:
            drifted = bool(pa < alpha and value >= gate)
            out.append(DriftTest(kind, name, float(value), float(pa), alpha, drifted, st, float(p)))
    return out


def blocks(obj: CameraReference, block: int) -> np.ndarray:
    return block_ids(obj.segment, block)


def enough_blocks(rb: np.ndarray, nb: np.ndarray, block: int) -> bool:
    """At least two full blocks on each side (short videos in a reference give none)."""
    full = [int((np.bincount(b) >= block).sum()) if len(b) else 0 for b in (rb, nb)]
    return min(full) >= 2

"""The promotion gate knows its power: per condition the smallest drop its frames detect, and
what it does with a condition too small to protect (training.promotion)."""

from math import comb

import numpy as np
import pytest

from edge_export.paired import mcnemar
from training.promotion import decide_promotion_paired, mcnemar_power, min_detectable_drop

CLASSES = ["good", "dent", "scratch"]


def _split(rng, sizes: dict[str, int]):
    """Labels and slice ids of a test split with ``sizes`` frames per condition."""
    slices = np.concatenate([[name] * n for name, n in sizes.items()]).astype(object)
    return rng.integers(0, 3, len(slices)), slices


def _wrong(y, rows):
    return (y[rows] + 1) % 3


def _improving_pair(y, slices, learned: str):
    """Champion misses every tenth frame of ``learned``; the challenger gets everything right."""
    champ, chal = y.copy(), y.copy()
    rows = np.flatnonzero(slices == learned)[::10]
    champ[rows] = _wrong(y, rows)
    return champ, chal


def test_a_large_condition_protects_a_five_point_drop():
    rng = np.random.default_rng(0)
    y, slices = _split(rng, {"cam1": 2000, "cam2": 2000})
    champ, chal = _improving_pair(y, slices, "cam2")
    d = decide_promotion_paired(
        y, champ, chal, slices=slices, classes=CLASSES, recall_tolerance=0.05, unprotected="block"
    )
    cam1 = next(p for p in d.slices if p.name == "cam1")
    assert cam1.protected and cam1.mdd_points is not None and cam1.mdd_points <= 5.0
    assert not d.unprotected and d.promote, d.reasons
    assert any("every condition is protected" in r for r in d.reasons)


def test_a_28_frame_condition_is_unprotected_blocked_or_reported():
    rng = np.random.default_rng(1)
    y, slices = _split(rng, {"cam1": 2000, "cam1/drift": 28})
    champ, chal = _improving_pair(y, slices, "cam1/drift")
    common = dict(slices=slices, classes=CLASSES, recall_tolerance=0.05)
    blocked = decide_promotion_paired(y, champ, chal, unprotected="block", **common)
    reported = decide_promotion_paired(y, champ, chal, unprotected="report", **common)
    drift = next(p for p in reported.slices if p.name == "cam1/drift")
    assert drift.n == 28 and not drift.protected and drift.mdd_points > 5.0
    line = f"unprotected: cam1/drift: 28 frames, could miss a drop of {drift.mdd_points:g} points"
    assert reported.unprotected == [line] == blocked.unprotected
    assert not blocked.promote and any("blocked: 1 condition" in r for r in blocked.reasons)
    assert reported.promote and line in reported.reasons  # promoted, with the note
    assert next(p for p in reported.slices if p.name == "cam1").protected


def test_the_minimum_detectable_drop_shrinks_as_frames_grow():
    level = 0.05 / 7
    mdds = [min_detectable_drop(n, level=level, discordance=0.1) for n in (20, 28, 50, 100, 300)]
    assert all(m is not None for m in mdds)
    assert mdds == sorted(mdds, reverse=True) and mdds[0] > mdds[-1]
    assert min_detectable_drop(3, level=level) is None  # 3 frames: not even a 100-point drop


def test_a_real_18_point_drop_on_300_frames_blocks_in_either_mode():
    rng = np.random.default_rng(2)
    y, slices = _split(rng, {"cam1": 300, "cam2": 300})
    champ = y.copy()
    champ[np.flatnonzero(slices == "cam2")] = _wrong(y, slices == "cam2")  # big gain on cam2
    chal = y.copy()
    lost = np.flatnonzero(slices == "cam1")[:54]  # 18 points of 300
    chal[lost] = _wrong(y, lost)
    for mode in ("report", "block"):
        d = decide_promotion_paired(
            y, champ, chal, slices=slices, classes=CLASSES, unprotected=mode
        )
        assert not d.promote
        assert any(p.name == "cam1" and p.regression for p in d.slices)


def test_no_champion_never_blocks():
    rng = np.random.default_rng(3)
    y, slices = _split(rng, {"cam1/drift": 5})
    d = decide_promotion_paired(y, None, y, slices=slices, classes=CLASSES, unprotected="block")
    assert d.promote and not d.unprotected
    with pytest.raises(ValueError):
        decide_promotion_paired(y, y, y, slices=slices, classes=CLASSES, unprotected="warn")


def _brute_force_power(n, drop, level, discordance):
    """Every (champion-only, challenger-only) count of n frames, multinomially weighted,
    tested with the gate's own exact McNemar."""
    psi = max(discordance, drop)
    pb, pc = (psi + drop) / 2, (psi - drop) / 2
    total = 0.0
    for b in range(n + 1):
        for c in range(n + 1 - b):
            right_a = np.array([True] * b + [False] * c, dtype=bool)
            if mcnemar(right_a, ~right_a)[2] < level:
                total += comb(n, b) * comb(n - b, c) * pb**b * pc**c * (1 - psi) ** (n - b - c)
    return total


@pytest.mark.parametrize(
    "n, drop, level, discordance",
    [(12, 0.3, 0.05, 0.0), (20, 0.2, 0.05 / 3, 0.35), (15, 0.1, 0.05, 0.5)],
)
def test_power_is_exact_against_brute_force(n, drop, level, discordance):
    got = mcnemar_power(n, drop, level=level, discordance=discordance)
    assert got == pytest.approx(_brute_force_power(n, drop, level, discordance), abs=1e-12)


def test_the_mdd_is_the_first_grid_drop_reaching_the_power():
    n, level = 28, 0.05 / 7
    mdd = min_detectable_drop(n, level=level)
    assert mdd is not None
    assert _brute_force_power(n, mdd / 100, level, 0.0) >= 0.8
    assert _brute_force_power(n, (mdd - 0.5) / 100, level, 0.0) < 0.8

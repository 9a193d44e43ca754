"""The paired, slice-aware promotion gate (training.promotion.decide_promotion_paired)."""

import numpy as np

from training.evaluate import condition_slices, slices_png
from training.promotion import compare_slices, decide_promotion_paired

CLASSES = ["good", "dent", "scratch"]


def _line(rng, n_ref=420, n_drift=20):
    """A test split: many reference-condition frames, a few of a drifted camera."""
    y = rng.integers(0, 3, n_ref + n_drift)
    slices = np.array(["cam1"] * n_ref + ["cam1/drift"] * n_drift, dtype=object)
    return y, slices


def test_a_challenger_that_learned_the_drifted_condition_is_promoted_despite_small_noise():
    rng = np.random.default_rng(0)
    y, slices = _line(rng)
    champ = y.copy()
    drift = np.flatnonzero(slices == "cam1/drift")
    champ[drift[:16]] = (y[drift[:16]] + 1) % 3  # champion: 4/20 on the new look
    chal = y.copy()
    chal[drift[:3]] = (y[drift[:3]] + 1) % 3  # challenger: 17/20
    ref_dent = np.flatnonzero((slices == "cam1") & (y == 1))
    champ[ref_dent[10:16]] = 0  # on reference dents the champion misses 6, the challenger
    chal[ref_dent[:10]] = 0  # 10 others: a recall drop beyond 0.02, within the noise
    plain_acc_gain = (chal == y).mean() - (champ == y).mean()
    assert plain_acc_gain < 0.03  # a small share of the split: plain accuracy barely moves
    d = decide_promotion_paired(y, champ, chal, slices=slices, classes=CLASSES)
    assert d.promote, d.reasons
    assert "slice-balanced accuracy" in d.reasons[0]
    parts = {(p.kind, p.name): p for p in d.slices}
    assert parts["slice", "cam1/drift"].challenger_only == 13
    assert parts["class", "dent"].champion_only == 10 and not parts["class", "dent"].regression
    drop = (champ == y)[ref_dent].mean() - (chal == y)[ref_dent].mean()
    assert drop > 0.02  # beyond the tolerance on the reference dents, yet not significant


def test_a_significant_regression_on_the_reference_condition_blocks_promotion():
    rng = np.random.default_rng(1)
    y, slices = _line(rng)
    champ = y.copy()
    drift = np.flatnonzero(slices == "cam1/drift")
    champ[drift] = (y[drift] + 1) % 3  # champion: 0/20 on the new look
    chal = y.copy()
    ref = np.flatnonzero(slices == "cam1")
    chal[ref[:60]] = (y[ref[:60]] + 1) % 3  # challenger forgets the old look: 60 frames lost
    d = decide_promotion_paired(y, champ, chal, slices=slices, classes=CLASSES)
    assert not d.promote
    blocked = [p for p in d.slices if p.regression]
    assert any(p.kind == "slice" and p.name == "cam1" for p in blocked)
    assert any("accuracy on cam1 drops" in r and "McNemar" in r for r in d.reasons)


def test_equal_models_are_not_promoted_and_no_champion_promotes():
    rng = np.random.default_rng(2)
    y, slices = _line(rng)
    pred = y.copy()
    pred[:30] = (y[:30] + 1) % 3
    d = decide_promotion_paired(y, pred, pred.copy(), slices=slices, classes=CLASSES)
    assert not d.promote and "does not beat" in d.reasons[0]
    assert decide_promotion_paired(y, None, pred, slices=slices, classes=CLASSES).promote


def test_a_tie_goes_to_a_challenger_that_trained_on_the_new_look_and_no_further():
    rng = np.random.default_rng(4)
    y, slices = _line(rng)
    pred = y.copy()
    pred[:30] = (y[:30] + 1) % 3  # both miss the same 30 reference frames: an exact tie

    def gate(chal, **kw):
        return decide_promotion_paired(y, pred, chal, slices=slices, classes=CLASSES, **kw)

    tie = gate(pred.copy(), new_conditions=["cam1/drift", "cam9/drift"])
    assert tie.promote and tie.reasons[0].startswith("slice-balanced accuracy")
    assert "ties it" in tie.reasons[0]
    assert tie.reasons[1] == (
        "a tie goes to the challenger: it trained on cam1/drift, which the champion never "
        "trained on, and is no worse there"
    )
    assert not gate(pred.copy()).promote  # nothing new: a tie stays a tie
    assert not gate(pred.copy(), new_conditions=["cam9/drift"]).promote  # not in the test split
    assert not gate(pred.copy(), new_conditions=["cam1/drift"], margin=0.01).promote
    # a tie made of a gain on the old look and a loss on the new one is not the new look's
    drift, ref = np.flatnonzero(slices == "cam1/drift"), np.flatnonzero(slices == "cam1")
    traded = pred.copy()
    traded[drift[:1]] = (y[drift[:1]] + 1) % 3  # -1/20 on the new look: -0.025 balanced
    traded[ref[:21]] = y[ref[:21]]  # +21/420 on the old one: +0.025 balanced
    assert not gate(traded, new_conditions=["cam1/drift"]).promote
    # the regression tests still apply to a tie
    worse = pred.copy()
    worse[drift[:4]] = (y[drift[:4]] + 1) % 3
    assert not gate(worse, new_conditions=["cam1/drift"]).promote


def test_margin_is_on_the_slice_balanced_accuracy():
    rng = np.random.default_rng(3)
    y, slices = _line(rng)
    champ, chal = y.copy(), y.copy()
    drift = np.flatnonzero(slices == "cam1/drift")
    champ[drift[:2]] = (y[drift[:2]] + 1) % 3  # challenger +2/20 on drift: balanced gain 0.05
    assert decide_promotion_paired(
        y, champ, chal, slices=slices, classes=CLASSES, margin=0.04
    ).promote
    assert not decide_promotion_paired(
        y, champ, chal, slices=slices, classes=CLASSES, margin=0.06
    ).promote


def test_compare_slices_counts_discordant_pairs_and_exact_p_values():
    y = np.array([0, 0, 0, 0, 1, 1])
    a = np.array([0, 0, 1, 1, 1, 1])  # champion wrong on 2, 3
    b = np.array([0, 1, 0, 0, 1, 1])  # challenger wrong on 1
    (part,) = compare_slices(y, a, b, np.zeros(6, int))
    assert (part.champion_only, part.challenger_only, part.n) == (1, 2, 6)
    assert np.isclose(part.p_better, 0.5) and np.isclose(part.p_worse, 0.875)


def test_condition_slices_and_plot():
    s = condition_slices(["cam1", "cam1", "cam2"], ["v1", "v2", "v3"], ["v2"])
    assert s.tolist() == ["cam1", "cam1/drift", "cam2"]
    rng = np.random.default_rng(4)
    y, slices = _line(rng, 50, 10)
    d = decide_promotion_paired(y, (y + 1) % 3, y, slices=slices, classes=CLASSES)
    png = slices_png(d.slices)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000

"""AlarmRules and the alarm state machine on crafted frame sequences."""

from __future__ import annotations

import numpy as np
import pytest

from edge_export.postprocess import (
    AlarmRules,
    AlarmStateMachine,
    RulesError,
    frame_quality,
)

CLASSES = ["good", "scratch", "dent"]


def run(rules: AlarmRules, frames: list) -> list:
    """Feed ``frames`` (label, confidence[, quality_ok]) and return the Events."""
    fsm = AlarmStateMachine(rules)
    return [fsm.step(*f) for f in frames]


def alarms(events) -> str:
    return "".join("A" if e.alarm else "." for e in events)


def test_raises_after_exactly_n_consecutive_defects():
    rules = AlarmRules(raise_after=3, clear_after=2)
    ev = run(rules, [("scratch", 0.9)] * 4)
    assert alarms(ev) == "..AA"
    assert [e.raised for e in ev] == [False, False, True, False]
    assert [e.state for e in ev] == ["arming", "arming", "alarm", "alarm"]


def test_n_minus_one_defects_never_raise():
    ev = run(AlarmRules(raise_after=3), [("dent", 0.99)] * 2 + [("good", 0.99)])
    assert not any(e.alarm for e in ev)


def test_interrupted_run_starts_over():
    seq = [("scratch", 0.9), ("scratch", 0.9), ("good", 0.9), ("scratch", 0.9), ("dent", 0.9)]
    ev = run(AlarmRules(raise_after=3), seq)
    assert alarms(ev) == "....."
    ev = run(AlarmRules(raise_after=3), [*seq, ("scratch", 0.9)])
    assert alarms(ev) == ".....A"
    assert ev[-1].raised


def test_clears_after_exactly_m_good_frames_and_defect_resets_clearing():
    rules = AlarmRules(raise_after=1, clear_after=3)
    seq = [("scratch", 0.9), ("good", 0.9), ("good", 0.9), ("dent", 0.9)]
    seq += [("good", 0.9)] * 3 + [("good", 0.9)]
    ev = run(rules, seq)
    assert alarms(ev) == "AAAAAA.."
    assert [e.state for e in ev] == [
        "alarm",
        "clearing",
        "clearing",
        "alarm",
        "clearing",
        "clearing",
        "idle",
        "idle",
    ]
    assert [i for i, e in enumerate(ev) if e.cleared] == [6]
    assert [i for i, e in enumerate(ev) if e.raised] == [0]


def test_raises_again_after_clearing():
    fsm = AlarmStateMachine(AlarmRules(raise_after=2, clear_after=1))
    seq = [("scratch", 0.9)] * 2 + [("good", 0.9)] + [("scratch", 0.9)] * 2
    ev = [fsm.step(*f) for f in seq]
    assert alarms(ev) == ".A..A"
    assert fsm.raised_count == 2


def test_low_confidence_frames_are_ignored_neither_extending_nor_breaking_a_run():
    rules = AlarmRules(raise_after=3, min_confidence=0.6)
    ev = run(rules, [("scratch", 0.9), ("scratch", 0.59), ("good", 0.3), ("scratch", 0.9)])
    assert alarms(ev) == "...."
    assert ev[1].vote == ev[2].vote == "ignored_confidence"
    ev = run(rules, [("scratch", 0.9), ("good", 0.5), ("scratch", 0.9), ("scratch", 0.6)])
    assert alarms(ev) == "...A"


def test_dark_frames_ignored_only_when_configured():
    seq = [("scratch", 0.9), ("good", 0.9, False), ("scratch", 0.9)]
    ev = run(AlarmRules(raise_after=2), seq)
    assert alarms(ev) == "..A"
    assert ev[1].vote == "ignored_quality"
    ev = run(AlarmRules(raise_after=2, ignore_quality=False), seq)
    assert alarms(ev) == "..."
    ev = run(AlarmRules(raise_after=1), [("scratch", 0.99, False)] * 5)
    assert not any(e.alarm for e in ev)


def test_frame_quality_flags_dark_and_blurry_frames():
    rules = AlarmRules(min_brightness=20, min_sharpness=5)
    rng = np.random.default_rng(0)
    textured = rng.integers(60, 200, (48, 64, 3), dtype=np.uint8)
    assert frame_quality(textured, rules) == "ok"
    assert frame_quality((textured // 20).astype(np.uint8), rules) == "dark"
    assert frame_quality(np.full((48, 64, 3), 128, np.uint8), rules) == "blurry"
    assert frame_quality(np.full((48, 64, 3), 128, np.uint8), AlarmRules(min_sharpness=0)) == "ok"


def test_default_defect_classes_are_everything_but_good():
    rules = AlarmRules().resolved(CLASSES)
    assert rules.defect_classes == ("scratch", "dent")
    assert AlarmRules(defect_classes=["dent"]).resolved(CLASSES).defect_classes == ("dent",)
    ev = run(AlarmRules(defect_classes=["dent"], raise_after=1), [("scratch", 0.9), ("dent", 0.9)])
    assert alarms(ev) == ".A"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (AlarmRules(defect_classes=["scratch", "crack"]), "['crack'] are not in the model's"),
        (AlarmRules(defect_classes=[]), "empty"),
        (AlarmRules(ok_classes=CLASSES), "is empty"),
        (AlarmRules(defect_classes=CLASSES), "could clear"),
    ],
)
def test_rules_that_do_not_fit_the_class_map_are_refused(rules, message):
    with pytest.raises(RulesError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rules.validate(CLASSES)


def test_class_map_with_only_good_resolves_to_alarms_off():
    rules = AlarmRules().resolved(["good"])
    assert not rules.enabled and "every class" in rules.disabled_reason


@pytest.mark.parametrize(
    "classes",
    [
        [str(d) for d in range(10)],  # digits
        ["no defect", "scratch", "dent"],  # the README's example names, with a known ok name
        ["ok", "reject"],
        ["Good", "Dent"],
    ],
)
def test_default_roles_never_fail_a_class_map(classes):
    """Issue 15.1: the default rules resolve on any class map; alarms are on only where a class
    is a known ok name, and otherwise off with a reason that says how to turn them on."""
    rules = AlarmRules().resolved(classes)
    ok = [c for c in classes if c.lower() in ("good", "ok", "no defect")]
    assert rules.enabled == bool(ok)
    if ok:
        assert rules.ok_classes == tuple(ok)
        assert set(rules.defect_classes) == set(classes) - set(ok)
    else:
        assert rules.defect_classes == () and "ok_classes" in rules.disabled_reason
        assert "no class in the class map" in rules.disabled_reason
        ev = run(rules, [(classes[1], 0.99)] * 10)
        assert alarms(ev) == "." * 10 and {e.vote for e in ev} == {"off"}
    assert AlarmRules.from_json(rules.to_json()) == rules


def test_configured_roles_turn_alarms_on_for_digits():
    digits = [str(d) for d in range(10)]
    rules = AlarmRules(ok_classes=["0"], ignore_classes=["9"], raise_after=1, clear_after=1)
    rules = rules.resolved(digits)
    assert rules.enabled and rules.defect_classes == tuple(digits[1:9])
    ev = run(rules, [("3", 0.9), ("9", 0.9), ("0", 0.9), ("9", 0.9)])
    assert alarms(ev) == "AA.." and [e.vote for e in ev] == [
        "defect", "ignored_class", "good", "ignored_class"
    ]  # fmt: skip


def test_a_role_named_twice_or_unknown_is_refused():
    with pytest.raises(RulesError, match="both defect_classes and ok_classes"):
        AlarmRules(defect_classes=["dent"], ok_classes=["dent"])
    with pytest.raises(RulesError, match="ok_classes \\['fine'\\] are not in"):
        AlarmRules(ok_classes=["fine"]).resolved(CLASSES)


def test_rules_written_before_class_roles_still_read():
    v1 = {"format": "lensline.postprocess/1", "version": "1", "defect_classes": ["dent"],
          "min_confidence": 0.6, "raise_after": 1, "clear_after": 1, "ignore_quality": True,
          "min_brightness": 20.0, "min_sharpness": 5.0}  # fmt: skip
    rules = AlarmRules.from_dict(v1)
    assert rules.enabled and rules.role("dent") == "defect" and rules.role("good") == "ok"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"raise_after": 0},
        {"clear_after": 1.5},
        {"min_confidence": 1.2},
        {"min_confidence": "high"},
        {"defect_classes": "scratch"},
        {"ignore_quality": "yes"},
    ],
)
def test_malformed_rules_are_refused(kwargs):
    with pytest.raises(RulesError):
        AlarmRules(**kwargs)


def test_json_round_trip_and_bad_json():
    rules = AlarmRules(version="7", defect_classes=["dent"], min_confidence=0.7, raise_after=4)
    assert AlarmRules.from_json(rules.to_json()) == rules
    assert AlarmRules.from_json(AlarmRules().to_json()) == AlarmRules()
    with pytest.raises(RulesError, match="unknown post-processing format"):
        AlarmRules.from_dict({"format": "lensline.postprocess/9"})
    with pytest.raises(RulesError, match="unknown alarm rule fields"):
        AlarmRules.from_dict({"format": "lensline.postprocess/1", "raise_afterr": 2})
    with pytest.raises(RulesError, match="not JSON"):
        AlarmRules.from_json("{")

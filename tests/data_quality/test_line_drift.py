"""Drift from the line: heartbeat windows against a camera's reference (seeded, synthetic)."""

from __future__ import annotations

import numpy as np

from data_quality.drift import build_reference
from data_quality.drift.line import LINE_STATISTICS, line_drift_tests
from edge_export.service.telemetry import FrameStatsWindow

BASE = np.array([120.0, 40.0, 300.0])  # brightness, contrast, sharpness


def _frames(rng, n: int, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(n, 3) per-frame stats: an AR(1) wobble (items passing, flicker) around BASE * scale."""
    out = np.empty((n, 3))
    e = np.zeros(3)
    for i in range(n):
        e = 0.9 * e + rng.normal(0, [3.0, 1.5, 20.0])
        out[i] = BASE * scale + e
    return out


def _reference(rng):
    stats = np.vstack([_frames(rng, 200) for _ in range(4)])
    return build_reference(
        stats, camera_id="cam1", version="m-1", segments=np.repeat(range(4), 200)
    )


def _beats(rng, n_beats: int, scale=(1.0, 1.0, 1.0), per_beat: int = 100) -> np.ndarray:
    """Heartbeat means as the box computes them (FrameStatsWindow over each beat's frames)."""
    window, means = FrameStatsWindow(), []
    for _ in range(n_beats):
        for s in _frames(rng, per_beat, scale):
            window.add(dict(zip(LINE_STATISTICS, s, strict=True)))
        beat = window.take()
        means.append([beat[k]["mean"] for k in LINE_STATISTICS])
    return np.asarray(means)


def test_a_lighting_change_in_heartbeats_is_detected_and_steady_ones_are_not():
    rng = np.random.default_rng(0)
    ref = _reference(rng)
    false_alarms = sum(
        any(t.drifted for t in line_drift_tests(ref, _beats(rng, 12))) for _ in range(20)
    )
    darker = [line_drift_tests(ref, _beats(rng, 12, scale=(0.6, 0.7, 0.5))) for _ in range(20)]
    detected = sum(any(t.drifted for t in rows) for rows in darker)
    assert false_alarms == 0
    assert detected == 20
    by_name = {t.statistic: t for t in darker[0]}
    assert by_name["brightness"].drifted and by_name["brightness"].value > 0.3
    assert [t.statistic for t in darker[0]] == list(LINE_STATISTICS)


def test_too_few_heartbeats_says_so_and_never_drifts():
    rng = np.random.default_rng(1)
    rows = line_drift_tests(_reference(rng), _beats(rng, 2, scale=(0.5, 0.5, 0.5)))
    assert {t.status for t in rows} == {"too_few_heartbeats"} and not any(t.drifted for t in rows)


def test_the_window_histograms_use_the_shared_edges():
    window = FrameStatsWindow()
    for b in (10.0, 100.0, 300.0):  # 300 falls in the last bin
        window.add({"brightness": b, "contrast": 5.0, "sharpness": 0.0})
    beat = window.take()
    assert beat["brightness"]["n"] == 3 and sum(beat["brightness"]["hist"]) == 3
    assert beat["brightness"]["hist"][0] == 1 and beat["brightness"]["hist"][-1] == 1
    assert window.take()["brightness"]["n"] == 0  # reset each beat

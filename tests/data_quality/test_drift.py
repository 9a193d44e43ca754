"""Drift tests on small seeded synthetic videos (rendered without encoding) and arrays."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import stats as sps

from data_quality.drift import (
    DATA_STATISTICS,
    PREDICTION_STATISTICS,
    VIEWPOINT_STATISTICS,
    CameraReference,
    DriftConfig,
    build_reference,
    detect_drift,
    estimate_shift,
    holm,
    mmd_permutation,
    needs_labels,
    summary,
)
from data_quality.drift.stats import block_ids, block_means, mean_change_test
from demo import CONDITIONS, Scene

ALL_STATS = DATA_STATISTICS + VIEWPOINT_STATISTICS + PREDICTION_STATISTICS
FRAMES = 200  # 100 s of line at the 2 fps ingestion keeps
SIZE = (320, 240)  # the demo size
_W = np.random.default_rng(7).standard_normal((48, 4))


def _frames(seed: int, conditions: str, n: int = FRAMES) -> list[np.ndarray]:
    scene = Scene(
        seed=seed, camera_id="cam1", seconds=n / 2, fps=2, size=SIZE,
        cond=CONDITIONS[conditions],
    )  # fmt: skip
    return [img for img, _ in scene.frames()][:n]


def _model(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A fixed stand-in for the champion: 4x4 colour thumbnails as embeddings, a linear head."""
    emb = np.stack([cv2.resize(f, (4, 4), interpolation=cv2.INTER_AREA).ravel() for f in frames])
    emb = emb.astype(np.float32) / 255.0
    logits = (emb - 0.2) @ _W * 4.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return emb, probs / probs.sum(axis=1, keepdims=True)


def _summary(seed: int, conditions: str, **kw) -> CameraReference:
    frames = _frames(seed, conditions, **kw)
    emb, probs = _model(frames)
    return build_reference(frames, emb, probs, camera_id="cam1", version=f"{conditions}-{seed}")


@pytest.fixture(scope="module")
def reference() -> CameraReference:
    frames = _frames(100, "nominal") + _frames(101, "nominal")
    emb, probs = _model(frames)
    segments = ["v100"] * FRAMES + ["v101"] * FRAMES
    return build_reference(frames, emb, probs, camera_id="cam1", version="ds-1", segments=segments)


def _by_stat(rows) -> dict:
    return {r.statistic: r for r in rows}


def test_no_drift_on_reference_conditions_with_a_new_seed(reference):
    rows = detect_drift(reference, _summary(7, "nominal"))
    assert [r.statistic for r in rows] == list(ALL_STATS)
    assert all(r.status == "ok" for r in rows), [(r.statistic, r.status) for r in rows]
    assert not [r.statistic for r in rows if r.drifted]
    assert summary(rows) == {"data": "ok", "viewpoint": "ok", "prediction": "ok"}


def test_dark_light_is_data_drift_not_a_moved_camera(reference):
    rows = _by_stat(detect_drift(reference, _summary(8, "dark")))
    assert rows["brightness"].drifted and rows["brightness"].value > 0.3
    assert not rows["shift_px"].drifted


def test_gray_gloves_drift_the_colour_histogram(reference):
    rows = _by_stat(detect_drift(reference, _summary(9, "gray_gloves")))
    assert rows["colour_hue"].drifted or rows["colour_saturation"].drifted
    assert not rows["brightness"].drifted
    assert not rows["shift_px"].drifted


def test_moved_camera_is_a_viewpoint_shift(reference):
    rows = _by_stat(detect_drift(reference, _summary(10, "moved_camera")))
    assert rows["shift_px"].drifted
    assert rows["shift_px"].value == pytest.approx(math.hypot(22, 14), abs=3.0)
    assert not rows["rotation_deg"].drifted


def test_dirty_lens_drifts_sharpness(reference):
    rows = _by_stat(detect_drift(reference, _summary(11, "dirty_lens")))
    assert rows["sharpness"].drifted
    assert not rows["shift_px"].drifted


def test_rotation_is_measured_in_degrees(reference):
    bg = reference.background
    assert bg is not None
    turned = cv2.warpAffine(
        bg, cv2.getRotationMatrix2D((160, 120), 3.0, 1.0), SIZE,
        borderMode=cv2.BORDER_REFLECT,
    )  # fmt: skip
    shift = estimate_shift(bg, turned)
    assert shift.angle_deg == pytest.approx(3.0, abs=0.3)
    assert shift.shift_px < 1.0


def test_no_reference_gives_a_status_on_every_row(reference):
    rows = detect_drift(None, _summary(12, "nominal", n=30))
    assert [r.statistic for r in rows] == list(ALL_STATS)
    assert {r.status for r in rows} == {"no_reference"}
    assert not any(r.drifted for r in rows)
    assert all(math.isnan(r.value) for r in rows)
    assert summary(rows) == {k: "inconclusive" for k in ("data", "viewpoint", "prediction")}


def test_too_short_video_is_too_few_frames(reference):
    new = build_reference(_frames(13, "dark", n=10), camera_id="cam1", version="short")
    rows = detect_drift(reference, new)
    assert {r.status for r in rows} == {"too_few_frames"}
    assert not any(r.drifted for r in rows)


def test_missing_embeddings_images_and_predictions_have_their_own_status(reference):
    stats_only = reference.stats[:60] * np.array([0.6, 1.0, 1.0], np.float32)  # darker
    new = build_reference(stats_only, camera_id="cam1", version="lake-stats")
    rows = _by_stat(detect_drift(reference, new))
    assert rows["brightness"].drifted  # what can run still runs
    assert rows["colour_hue"].status == "no_images"
    assert rows["shift_px"].status == "no_images"
    assert rows["embedding_mmd"].status == "no_embeddings"
    assert rows["confidence_ks"].status == "no_predictions"

    frames = _frames(14, "nominal", n=40)
    emb, probs = _model(frames)
    bare = build_reference(reference.stats, camera_id="cam1", version="old")  # no emb, no probs
    rows = _by_stat(
        detect_drift(bare, build_reference(frames, emb, probs, camera_id="cam1", version="v"))
    )
    assert rows["embedding_mmd"].status == "no_reference_embeddings"
    assert rows["label_mix_chi2"].status == "no_reference_predictions"


def test_reference_of_only_short_videos_is_too_few_frames(reference):
    rows_of_stats = list(reference.stats[:90])  # a list of (3,) per-frame stats rows
    choppy = build_reference(
        rows_of_stats, camera_id="cam1", version="choppy", segments=np.arange(90) // 3
    )
    new = build_reference(reference.stats[:60], camera_id="cam1", version="v")
    rows = _by_stat(detect_drift(choppy, new))
    assert {rows[s].status for s in DATA_STATISTICS} == {"too_few_frames"}
    assert not any(r.drifted for r in rows.values())


def test_serialised_reference_gives_the_same_result(reference):
    blob = reference.to_bytes()
    back = CameraReference.from_bytes(blob)
    assert back.camera_id == "cam1" and back.version == "ds-1"
    for name, arr in reference.to_arrays().items():
        assert np.array_equal(arr, back.to_arrays()[name]), name
    new = _summary(15, "nominal", n=40)
    a, b = detect_drift(back, new), detect_drift(reference, new)
    assert [(r.drifted, r.status) for r in a] == [(r.drifted, r.status) for r in b]
    assert np.allclose([r.p_value for r in a], [r.p_value for r in b], equal_nan=True)


def test_a_significant_but_tiny_change_is_not_drift():
    rng = np.random.default_rng(5)
    ref_stats = np.column_stack(
        [rng.normal(50, 2, 3000), rng.normal(30, 1, 3000), rng.normal(90, 5, 3000)]
    )
    ref = build_reference(ref_stats, camera_id="cam1", version="r")
    new_stats = np.column_stack(
        [rng.normal(51.5, 2, 600), rng.normal(30, 1, 600), rng.normal(90, 5, 600)]
    )
    tiny = _by_stat(detect_drift(ref, build_reference(new_stats, camera_id="cam1", version="n")))
    assert tiny["brightness"].p_value < 1e-6  # +3 %: significant ...
    assert not tiny["brightness"].drifted  # ... but below min_change (10 %)
    new_stats[:, 0] *= 0.8
    big = _by_stat(detect_drift(ref, build_reference(new_stats, camera_id="cam1", version="n")))
    assert big["brightness"].drifted and big["brightness"].value > 0.15


def test_holm_adjusts_like_the_textbook():
    adj = holm([0.01, 0.04, 0.03, float("nan"), 0.5])
    assert np.allclose(adj, [0.04, 0.09, 0.09, np.nan, 0.5], equal_nan=True)
    assert np.all(np.isnan(holm([float("nan")])))


def test_correction_is_applied_across_statistics(reference):
    rows = detect_drift(reference, _summary(16, "nominal", n=60))
    ran = [r for r in rows if r.kind == "data" and r.status == "ok"]
    assert all(r.p_value >= r.p_raw for r in ran)
    assert max(r.p_value / max(r.p_raw, 1e-300) for r in ran) > 1.0


def test_block_test_keeps_false_alarms_down_on_autocorrelated_frames():
    """AR(1) frame statistics (rho 0.9): per-frame KS cries wolf, block means do not."""
    naive = blocked = 0
    trials = 40
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        x = np.zeros(600)
        for t in range(1, 600):
            x[t] = 0.9 * x[t - 1] + rng.standard_normal()
        ref, new = x[:400], x[400:]
        naive += sps.ks_2samp(ref, new).pvalue < 0.05
        rb, nb = block_ids(np.zeros(400), 20), block_ids(np.zeros(200), 20)
        blocked += mean_change_test(block_means(ref, rb), block_means(new, nb))[1] < 0.05
    assert naive / trials > 0.3
    assert blocked / trials <= 0.15


def test_mmd_finds_a_shifted_embedding_cloud_only():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((60, 8))
    same = rng.standard_normal((20, 8))
    moved = rng.standard_normal((20, 8)) + 0.8
    assert mmd_permutation(ref, same, n_permutations=500)[1] > 0.05
    assert mmd_permutation(ref, moved, n_permutations=500)[1] < 0.01


def test_prediction_drift_on_a_changed_label_mix(reference):
    assert reference.probs is not None
    k = reference.probs.shape[1]
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(k, 0.3), size=80).astype(np.float32)
    probs[:, 0] += 2.0  # nearly every frame now predicted as class 0, confidently
    probs /= probs.sum(axis=1, keepdims=True)
    new = build_reference(reference.stats[:80], probs=probs, camera_id="cam1", version="p")
    rows = _by_stat(detect_drift(reference, new, config=DriftConfig(n_permutations=500)))
    assert rows["label_mix_chi2"].drifted
    assert rows["confidence_ks"].drifted


def test_needs_labels_respects_the_budget_and_puts_uncertain_first():
    probs = np.array([[0.98, 0.02], [0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    order = needs_labels(None, probs, None, budget=3)
    assert order.tolist() == [1, 3, 2]
    assert needs_labels(None, probs, None, budget=10).tolist() == [1, 3, 2, 0]
    assert needs_labels(None, probs, None, budget=0).size == 0


def test_needs_labels_prefers_novel_frames_and_spreads_over_items():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((200, 4))
    familiar = rng.standard_normal((10, 4)) * 0.5
    novel_item = np.full((6, 4), 6.0) + rng.standard_normal((6, 4)) * 0.01  # one item, 6 frames
    other_novel = np.full((1, 4), -5.0)
    emb = np.vstack([familiar, novel_item, other_novel])
    picked = needs_labels(emb, None, ref, budget=3)
    assert len(set(picked.tolist())) == 3
    assert picked[0] in range(10, 17)  # a novel frame first
    assert 16 in picked  # the second novel item beats more frames of the first one
    assert sum(10 <= i < 16 for i in picked) == 1


@pytest.mark.parametrize("n", [1, 2, 7, 10, 101, 150])
def test_median_background_is_numpys_median_truncated(n):
    """The partition-based median equals np.median (truncated to uint8) for odd and even
    frame counts, over the same up-to-101 evenly spaced frames."""
    import cv2

    from data_quality.drift.reference import median_background

    rng = np.random.default_rng(n)
    images = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(n)]
    pick = np.unique(np.linspace(0, n - 1, 101).round().astype(int))
    grey = np.stack([cv2.cvtColor(images[i], cv2.COLOR_BGR2GRAY) for i in pick])
    assert (median_background(images) == np.median(grey, axis=0).astype(np.uint8)).all()

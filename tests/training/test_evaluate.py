"""evaluate(): numbers checked against a hand-computed example; ensembles; plots."""

import math

import numpy as np
import pytest

from training.evaluate import calibration_bins, confusion_png, ensemble_proba, evaluate

CLASSES = ["dent", "good", "scratch"]
# truth, probabilities (dent, good, scratch); confidences avoid bin edges
CASES = [
    (1, [0.15, 0.75, 0.10]),  # good -> good          conf .75 right
    (1, [0.55, 0.35, 0.10]),  # good -> dent (false reject)  .55 wrong
    (0, [0.65, 0.25, 0.10]),  # dent -> dent          .65 right
    (0, [0.25, 0.45, 0.30]),  # dent -> good (escape) .45 wrong
    (2, [0.10, 0.15, 0.75]),  # scratch -> scratch    .75 right
    (2, [0.05, 0.10, 0.85]),  # scratch -> scratch    .85 right
]
LABELS = np.array([c[0] for c in CASES])
PROBS = np.array([c[1] for c in CASES])


def test_evaluate_matches_hand_computation():
    m = evaluate(PROBS, LABELS, classes=CLASSES)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert m["per_class"]["dent"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["good"]["recall"] == 0.5
    assert m["per_class"]["scratch"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["false_reject_rate"] == 0.5  # 1 of 2 good items rejected
    assert m["escape_rate"] == 0.25  # 1 of 4 defects passed as good
    # bins: .45 wrong, .55 wrong, .65 right, (.75, .75) right, .85 right
    assert m["ece"] == pytest.approx((0.45 + 0.55 + 0.35 + 2 * 0.25 + 0.15) / 6)
    p_true = [0.75, 0.35, 0.65, 0.25, 0.75, 0.85]
    assert m["log_loss"] == pytest.approx(-sum(math.log(p) for p in p_true) / 6)
    assert [b["count"] for b in calibration_bins(PROBS, LABELS)] == [1, 1, 1, 2, 1]


def test_undefined_rates_are_none_and_bad_shapes_raise():
    m = evaluate(PROBS[:2], LABELS[:2], classes=CLASSES)  # only good items
    assert m["per_class"]["scratch"]["recall"] is None
    assert m["escape_rate"] is None
    assert evaluate(PROBS, LABELS, classes=CLASSES, good_class="ok")["false_reject_rate"] is None
    with pytest.raises(ValueError):
        evaluate(PROBS[:, :2], LABELS, classes=CLASSES)


def test_ensemble_is_the_mean_and_scores_like_one_model():
    other = np.roll(PROBS, 1, axis=1)
    mean = ensemble_proba([PROBS, other])
    np.testing.assert_allclose(mean, (PROBS + other) / 2)
    np.testing.assert_allclose(ensemble_proba([PROBS, other], weights=[1, 0]), PROBS)
    assert evaluate(ensemble_proba([PROBS, PROBS]), LABELS, classes=CLASSES)[
        "accuracy"
    ] == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        ensemble_proba([])


def test_plots_are_png():
    from training.evaluate import reliability_png

    m = evaluate(PROBS, LABELS, classes=CLASSES)
    assert confusion_png(m["confusion"], classes=CLASSES).startswith(b"\x89PNG")
    assert reliability_png(PROBS, LABELS).startswith(b"\x89PNG")


def test_predict_proba_and_embed_shapes():
    import torch

    from training.evaluate import embed, predict_proba
    from training.model import build_model

    torch.manual_seed(0)
    model = build_model(3, width=4, image_size=16)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    probs = predict_proba(model, images, batch_size=2)
    assert probs.shape == (5, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert embed(model, images).shape == (5, model.embedding_dim)

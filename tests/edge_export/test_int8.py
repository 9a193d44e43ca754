"""edge_export.int8: QDQ S8S8 static quantisation and the int8_accuracy gate.

A width-4 LenslineNet trained for a few epochs on separable synthetic frames (plain / bright
square / dark square): the right calibration set (train frames through the same
PreprocessSpec) passes the gate; blank frames, white frames and un-normalised frames fail it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from edge_export.int8 import calibration_reader, evaluate_int8, quantize_int8, verify_accuracy
from edge_export.runtime import Predictor

SIDE = 32
CLASSES = ["good", "bright", "dark"]


def _frames(n, seed):
    """RGB uint8 (n, SIDE, SIDE, 3): noisy grey, plus a bright (1) or dark (2) 10 px square."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.normal(128, 20, (n, SIDE, SIDE, 3))
    for i, y in enumerate(labels):
        r, c = rng.integers(2, SIDE - 14, 2)
        if y:
            images[i, r : r + 10, c : c + 10] = 220 if y == 1 else 40
    return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(fp32 onnx path, spec, train images, test inputs, test labels)."""
    from edge_export.onnx import export_onnx
    from training.preprocess import PreprocessSpec
    from training.train import TrainConfig, train_model

    x, y = _frames(240, 0)
    tx, ty = _frames(150, 1)
    config = TrainConfig(
        epochs=5, lr=1e-2, image_size=SIDE, width=4, batch_size=16, num_threads=1, seed=0
    )
    result = train_model(x, y, classes=CLASSES, config=config)
    path = export_onnx(result.model, tmp_path_factory.mktemp("int8") / "fp32.onnx", image_size=SIDE)
    spec = PreprocessSpec(image_size=SIDE)
    return path, spec, x, spec.normalize(tx), ty


def test_right_calibration_passes_the_gate_with_a_qdq_s8s8_model(trained, tmp_path):
    fp32, spec, train_images, test_x, test_y = trained
    out = quantize_int8(fp32, tmp_path / "int8.onnx", spec.normalize(train_images[:96]))
    ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    q = next(
        i for i in onnx.load(str(out)).graph.initializer if i.data_type == onnx.TensorProto.INT8
    )
    assert q is not None  # signed 8-bit weights (S8S8)
    p = Predictor(out, "int8", threads=1)
    assert p.input_name == "input" and p.logits(test_x[:2]).shape == (2, 3)
    report = evaluate_int8(fp32, out, test_x, test_y, CLASSES, threads=1)
    assert report.passed, report.reasons
    assert report.fp32_accuracy >= 0.95 and abs(report.drop_points) <= 1.0
    assert set(report.per_class_recall_drop) == set(CLASSES)
    assert [f.name for f in tmp_path.iterdir()] == ["int8.onnx"]  # no temp dirs left


@pytest.mark.parametrize(
    "wrong",
    [
        "blank",  # all-zero model inputs (mean-grey frames)
        "white",  # constant white frames
        "unnormalised",  # raw 0..255 values: the spec's normalisation forgotten
    ],
)
def test_wrong_calibration_fails_the_gate(trained, tmp_path, wrong):
    fp32, spec, train_images, test_x, test_y = trained
    n = 96
    calibration = {
        "blank": np.zeros((n, 3, SIDE, SIDE), np.float32),
        "white": spec.normalize(np.full((n, SIDE, SIDE, 3), 255, np.uint8)),
        "unnormalised": train_images[:n].transpose(0, 3, 1, 2).astype(np.float32),
    }[wrong]
    out = quantize_int8(fp32, tmp_path / "bad.onnx", calibration)
    report = evaluate_int8(fp32, out, test_x, test_y, CLASSES, threads=1)
    assert not report.passed
    assert (
        report.drop_points > 1.0
        or max(v for v in report.per_class_recall_drop.values() if v is not None) > 2.0
    )
    assert report.reasons


def test_other_calibration_methods_and_bad_arguments(trained, tmp_path):
    fp32, spec, train_images, test_x, test_y = trained
    cal = spec.normalize(train_images[:48])
    out = quantize_int8(fp32, tmp_path / "p.onnx", cal, method="percentile", per_channel=False)
    assert evaluate_int8(fp32, out, test_x, test_y, CLASSES).fp32_accuracy >= 0.95
    u8 = quantize_int8(fp32, tmp_path / "u8.onnx", cal, activations="uint8")
    assert evaluate_int8(fp32, u8, test_x, test_y, CLASSES).passed  # U8S8: the fast x86 option
    with pytest.raises(ValueError, match="symmetric"):
        quantize_int8(fp32, tmp_path / "x.onnx", cal, activations="uint8",
                      symmetric_activations=True)  # fmt: skip
    with pytest.raises(ValueError, match="method"):
        quantize_int8(fp32, tmp_path / "x.onnx", cal, method="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        quantize_int8(fp32, tmp_path / "x.onnx", np.full_like(cal, np.nan))
    with pytest.raises(ValueError, match=r"\(N, 3, S, S\)"):
        quantize_int8(fp32, tmp_path / "x.onnx", cal[0])
    with pytest.raises(FileNotFoundError):
        quantize_int8(tmp_path / "none.onnx", tmp_path / "x.onnx", cal)


def test_calibration_reader_batches_and_rewinds():
    x = np.zeros((5, 3, 4, 4), np.float32)
    r = calibration_reader(x, batch_size=2)
    sizes = [len(b["input"]) for b in iter(r.get_next, None)]
    assert sizes == [2, 2, 1] and len(r) == 3
    r.rewind()
    assert r.get_next()["input"].shape == (2, 3, 4, 4)


def test_verify_accuracy_thresholds():
    labels = np.array([0] * 50 + [1] * 50)
    fp32 = np.eye(2)[labels]
    int8 = fp32.copy()
    int8[0] = [0.0, 1.0]  # one good frame lost: 1.0 point overall, 2.0 points of recall
    ok = verify_accuracy(fp32, int8, labels, ["good", "bad"])
    assert ok.passed and ok.drop_points == pytest.approx(1.0)
    assert ok.per_class_recall_drop == {"good": pytest.approx(2.0), "bad": 0.0}
    int8[1] = [0.0, 1.0]  # two frames: 2 points, beyond the allowance, but within the noise
    noise = verify_accuracy(fp32, int8, labels, ["good", "bad"])
    assert noise.passed and noise.drop_points == pytest.approx(2.0)
    assert (noise.fp32_only, noise.int8_only, noise.p_worse) == (2, 0, pytest.approx(0.25))
    int8[:8] = [0.0, 1.0]  # eight frames lost, none gained: p = 1/256, a real loss
    bad = verify_accuracy(fp32, int8, labels, ["good", "bad"])
    assert not bad.passed and len(bad.reasons) == 2
    assert "top-1 accuracy dropped 8.00 points" in bad.reasons[0] and "McNemar" in bad.reasons[0]
    assert "recall of 'good' dropped 16.00 points" in bad.reasons[1]
    assert verify_accuracy(fp32, int8, labels, ["good", "bad"], max_drop_points=10,
                           max_recall_drop_points=20).passed  # fmt: skip
    # agreement: INT8 flipping many frames both ways is broken even when accuracy holds
    ref = fp32.copy()
    ref[50:58] = [1.0, 0.0]  # FP32 wrong on 8 bad frames, INT8 right on them but wrong on 8 good
    swapped = fp32.copy()
    swapped[:8] = [0.0, 1.0]
    flips = verify_accuracy(ref, swapped, labels, ["good", "bad"], min_agreement=0.9)
    assert flips.drop_points == 0 and not flips.passed and "agrees" in flips.reasons[0]
    absent = verify_accuracy(np.eye(3)[[0, 1]], np.eye(3)[[0, 1]], np.array([0, 1]), "abc")
    assert absent.per_class_recall_drop["c"] is None and absent.passed
    with pytest.raises(ValueError, match="labels"):
        verify_accuracy(fp32, int8, labels + 1, ["good", "bad"])

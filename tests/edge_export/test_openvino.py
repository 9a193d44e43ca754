"""edge_export.openvino: FP32 IR parity with ONNX Runtime, NNCF INT8 IR through the accuracy gate.

Without openvino or nncf the module skips with the reason, except in CI (``CI=true``), where
that is a failure (both are pinned in requirements.lock).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edge_export import openvino as ovx
from edge_export.runtime import Predictor
from tests.conftest import unavailable

SIDE = 32


@pytest.fixture(scope="module", autouse=True)
def _openvino_installed():
    ok, why = ovx.available(int8=True)
    if not ok:
        unavailable(why)


def _frames(n, seed):
    """RGB uint8 (n, SIDE, SIDE, 3): noisy grey (0) or a bright 10 px square on it (1)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.normal(128, 20, (n, SIDE, SIDE, 3))
    for i in np.flatnonzero(labels):
        r, c = rng.integers(2, SIDE - 12, 2)
        images[i, r : r + 10, c : c + 10] = 220
    return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A width-4 LenslineNet trained 4 epochs on the frames above, as FP32 ONNX (opset 18)."""
    import torch

    from training.preprocess import PreprocessSpec
    from training.train import TrainConfig, train_model

    x, y = _frames(160, 0)
    config = TrainConfig(epochs=4, lr=1e-2, image_size=SIDE, width=4, batch_size=16,
                         num_threads=1, seed=0)  # fmt: skip
    model = train_model(x, y, classes=["good", "spot"], config=config).model
    path = tmp_path_factory.mktemp("ov") / "fp32.onnx"
    with warnings.catch_warnings():  # the fast TorchScript exporter: this file tests OpenVINO
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, SIDE, SIDE),), str(path), dynamo=False,
                          input_names=["input"], output_names=["logits"], opset_version=18,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
    spec = PreprocessSpec(image_size=SIDE)
    tx, ty = _frames(100, 1)
    return path, spec.normalize(x), spec.normalize(tx), ty


@pytest.fixture(scope="module")
def fp32_ir(trained, tmp_path_factory):
    return ovx.export_ir(trained[0], tmp_path_factory.mktemp("ir") / "model.xml")


def test_fp32_ir_matches_onnx_runtime_with_dynamic_batch(trained, fp32_ir):
    onnx_path, _, test_x, _ = trained
    xml = fp32_ir
    assert sorted(f.name for f in xml.parent.iterdir()) == ["model.bin", "model.xml"]
    report = ovx.verify_parity(onnx_path, xml, test_x, threads=1)
    assert report.passed, report.reasons
    p = Predictor(xml, "openvino", threads=1)
    assert p.logits(test_x[:1]).shape == (1, 2) and p.logits(test_x[:7]).shape == (7, 2)
    assert "f32" in xml.read_text() or "FP32" in xml.read_text().upper()  # not compressed


def test_nncf_int8_ir_passes_the_accuracy_gate(trained, tmp_path):
    from edge_export.int8 import evaluate_int8

    onnx_path, calibration, test_x, test_y = trained
    xml = ovx.quantize_ir(onnx_path, tmp_path / "int8.xml", calibration, subset_size=64)
    assert "FakeQuantize" in xml.read_text()
    report = evaluate_int8(onnx_path, xml, test_x, test_y, ["good", "spot"], target="openvino")
    assert report.fp32_accuracy >= 0.95
    assert report.passed, report.reasons


def test_ir_benchmark_and_errors(trained, fp32_ir, tmp_path):
    onnx_path, _, test_x, _ = trained
    r = ovx.benchmark(fp32_ir, test_x[:4], test_x[:16], warmup=2, iters=10)
    assert r.target == "openvino" and r.p50_ms > 0 and r.batch == 16
    with pytest.raises(ValueError, match=r"\.xml"):
        ovx.export_ir(onnx_path, tmp_path / "m.ir")
    with pytest.raises(FileNotFoundError):
        ovx.export_ir(tmp_path / "missing.onnx", tmp_path / "x.xml")


def test_available_names_the_missing_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a)
    )
    assert ovx.available() == (True, "")
    assert ovx.available(int8=True) == (False, "nncf not installed (pip install nncf)")

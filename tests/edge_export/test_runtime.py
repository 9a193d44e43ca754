"""edge_export.runtime: torch-free Predictor over ONNX Runtime and OpenVINO."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge_export.runtime import (
    Predictor,
    PredictorError,
    TargetUnavailable,
    available_targets,
    softmax,
)
from tests.conftest import unavailable


def _batch(levels, size=32):
    return np.stack([np.full((3, size, size), v, np.float32) for v in levels])


def test_import_needs_no_torch_dagster_or_polars():
    code = (
        "import sys, edge_export.runtime; "
        "bad = [m for m in ('torch', 'dagster', 'polars') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_onnx_predictor_logits_probs_and_dynamic_batch(brightness_onnx):
    p = Predictor(brightness_onnx.path, "onnx", threads=1)
    assert p.providers == ["CPUExecutionProvider"] and p.input_name == "input"
    x = _batch([-1.0, 0.5, 2.0])
    logits = p.logits(x)
    assert logits.dtype == np.float32 and logits.shape == (3, 2)
    np.testing.assert_allclose(logits[:, 1], 4.0 * np.array([-1.0, 0.5, 2.0]), rtol=1e-6)
    probs = p.probs(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert probs.argmax(1).tolist() == [0, 1, 1]
    assert p.logits(x[:1]).shape == (1, 2)
    np.testing.assert_array_equal(p.predict_batches(x, batch_size=2), logits)


def test_int8_target_runs_on_ort_and_float64_input_is_cast(brightness_onnx):
    p = Predictor(brightness_onnx.path, "int8")
    assert p.logits(_batch([1.0]).astype(np.float64)).dtype == np.float32


def test_bad_inputs_and_files_are_clear_errors(brightness_onnx, tiny_onnx, tmp_path):
    with pytest.raises(PredictorError, match="unknown target"):
        Predictor(brightness_onnx.path, "tflite")
    with pytest.raises(PredictorError, match="no such file"):
        Predictor(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(PredictorError, match="cannot load"):
        Predictor(broken)
    p = Predictor(tiny_onnx.path, threads=1)
    with pytest.raises(PredictorError, match="expects 32"):
        p.logits(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(PredictorError, match=r"\(N, C, S, S\)"):
        p.logits(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(PredictorError, match="threads"):
        Predictor(tiny_onnx.path, threads=0)


def test_cuda_asked_without_cuda_is_refused(brightness_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TargetUnavailable, match="CUDA"):
        Predictor(brightness_onnx.path, device="cuda")
    assert Predictor(brightness_onnx.path, device="auto").providers == ["CPUExecutionProvider"]


def test_openvino_predictor_matches_ort_or_says_what_is_missing(tiny_onnx, monkeypatch):
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    if "openvino" not in available_targets():
        with pytest.raises(TargetUnavailable, match="pip install openvino"):
            Predictor(tiny_onnx.path, "openvino")
        unavailable("openvino not installed: parity with ONNX Runtime not checked")
    ov = Predictor(tiny_onnx.path, "openvino", threads=1)
    ref = Predictor(tiny_onnx.path, "onnx", threads=1).logits(x)
    np.testing.assert_allclose(ov.logits(x), ref, atol=1e-4)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(TargetUnavailable, match="pip install openvino"):
        Predictor(tiny_onnx.path, "openvino")


def test_available_targets_and_softmax():
    assert set(available_targets()) >= {"onnx", "int8"}
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]], rtol=1e-6)

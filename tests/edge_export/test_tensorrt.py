"""edge_export.tensorrt: availability with a reason, ONNX precision checks, FP16 rewrite.

Engines themselves need TensorRT and an NVIDIA GPU: those tests are marked ``gpu`` and skip
with the reason :func:`available` gives (no machine in this project has TensorRT).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edge_export import tensorrt as trtx
from edge_export.runtime import Predictor

OK, REASON = trtx.available()


def _x(n=8, size=32):
    return np.random.default_rng(0).normal(size=(n, 3, size, size)).astype(np.float32)


def test_available_says_why_not_here():
    ok, reason = trtx.available()
    if ok:
        pytest.skip("this machine has TensorRT and a GPU")
    assert reason in ("tensorrt not installed", "no NVIDIA GPU")


def test_build_engine_checks_the_onnx_then_refuses_with_the_reason(tiny_onnx, tmp_path):
    if OK:
        pytest.skip("this machine has TensorRT and a GPU")
    out = tmp_path / "model.plan"
    with pytest.raises(trtx.TensorRTUnavailable, match=REASON) as e:
        trtx.build_engine(tiny_onnx.path, out, precision="fp32")
    assert e.value.reason == REASON
    assert not out.exists()  # never a fake engine
    with pytest.raises(trtx.TensorRTUnavailable):  # FP32 ONNX converted to FP16 first
        trtx.build_engine(tiny_onnx.path, out, precision="fp16")
    with pytest.raises(ValueError, match="no QuantizeLinear"):  # checked before TensorRT
        trtx.build_engine(tiny_onnx.path, out, precision="int8")


def test_fp16_rewrite_keeps_float32_io_and_the_answers(tiny_onnx, tmp_path):
    fp16 = trtx.to_fp16_onnx(tiny_onnx.path, tmp_path / "fp16.onnx")
    info = trtx.check_onnx(fp16, "fp16")
    assert info["float_weights"] == ["float16"] and info["input"] == "input"
    model = onnx.load(str(fp16))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    with pytest.raises(ValueError, match="float16"):
        trtx.check_onnx(fp16, "fp32")
    with pytest.raises(ValueError, match="to_fp16_onnx"):
        trtx.check_onnx(tiny_onnx.path, "fp16")
    ref = Predictor(tiny_onnx.path, threads=1).logits(_x())
    half = Predictor(fp16, threads=1).logits(_x())  # ORT CPU runs (or upcasts) fp16 kernels
    np.testing.assert_allclose(half, ref, atol=5e-2)


def test_int8_engines_need_symmetric_qdq(tiny_onnx, tmp_path):
    from edge_export.int8 import quantize_int8

    cal = _x(16)
    asym = quantize_int8(tiny_onnx.path, tmp_path / "asym.onnx", cal)
    with pytest.raises(ValueError, match="non-zero zero point"):
        trtx.check_onnx(asym, "int8")
    sym = quantize_int8(tiny_onnx.path, tmp_path / "sym.onnx", cal, symmetric_activations=True)
    assert trtx.check_onnx(sym, "int8")["qdq_nodes"] > 0
    assert trtx.check_onnx(tiny_onnx.path, "fp32")["qdq_nodes"] == 0
    with pytest.raises(ValueError, match="precision"):
        trtx.check_onnx(sym, "int4")  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not OK, reason=REASON)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnx_runtime(tiny_onnx, tmp_path, precision):
    from edge_export.int8 import quantize_int8

    src = {
        "fp32": lambda: tiny_onnx.path,
        "fp16": lambda: trtx.to_fp16_onnx(tiny_onnx.path, tmp_path / "fp16.onnx"),  # parity ref
        "int8": lambda: quantize_int8(
            tiny_onnx.path, tmp_path / "int8.onnx", _x(32), symmetric_activations=True
        ),
    }[precision]()
    plan = trtx.build_engine(src, tmp_path / f"{precision}.plan", precision=precision)
    report = trtx.verify_parity(src, plan, _x(16), precision=precision)
    assert report.passed, report.reasons
    assert trtx.benchmark(plan, _x(2), _x(16), warmup=2, iters=5).p50_ms > 0

"""edge_export.onnx: dynamo export with a dynamic batch, atomic write, and the parity gate."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edge_export.onnx import OPSET, compare_logits, export_onnx, torch_logits, verify_parity
from edge_export.runtime import Predictor

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A width-4 LenslineNet with non-trivial BatchNorm statistics, and its ONNX export."""
    from training.model import build_model

    torch.manual_seed(0)
    model = build_model(3, width=4, image_size=SIZE)
    model.train()
    with torch.no_grad():  # move the BN running stats away from (0, 1) so folding matters
        for _ in range(3):
            model(torch.randn(16, 3, SIZE, SIZE) * 2 + 0.5)
    model.eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", image_size=SIZE)
    return model, path


def _x(n, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 3, SIZE, SIZE)).astype(np.float32)


def test_export_names_opset_dynamic_batch_and_no_leftovers(exported):
    model, path = exported
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic batch
    assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}
    p = Predictor(path, threads=1)
    for n in (1, 5):
        assert p.logits(_x(n)).shape == (n, 3)
    assert sorted(f.name for f in path.parent.iterdir()) == ["model.onnx"]
    assert model.training is False


def test_parity_gate_passes_on_a_faithful_export(exported):
    model, path = exported
    report = verify_parity(model, path, _x(24), threads=1)
    assert report.passed, report.reasons
    assert report.max_abs_logit_diff <= 1e-4 and report.top1_agreement == 1.0 and report.n == 24
    assert report.to_metadata()["max_abs_diff_allowed"] == 1e-4


def test_parity_gate_fails_on_a_perturbed_initializer(exported, tmp_path):
    model, path = exported
    proto = onnx.load(str(path))
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    init = next(i for i in proto.graph.initializer if i.name == conv.input[1])
    w = numpy_helper.to_array(init).copy()
    w += 0.05 * np.random.default_rng(0).normal(size=w.shape).astype(w.dtype)
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    report = verify_parity(model, broken, _x(24), threads=1)
    assert not report.passed
    assert report.max_abs_logit_diff > 1e-4
    assert any("max |delta logit|" in r for r in report.reasons)


def test_failed_export_keeps_the_previous_file(exported, tmp_path, monkeypatch):
    model, _ = exported
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")

    def half_written(model, args, f, **kwargs):  # the exporter dies after writing part
        with open(f, "wb") as out:
            out.write(b"\x08\x09partial")
        raise RuntimeError("exporter died")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError, match="exporter died"):
        export_onnx(model, target, image_size=SIZE)
    assert target.read_bytes() == b"previous"
    assert [f.name for f in tmp_path.iterdir()] == ["model.onnx"]


def test_compare_logits_thresholds_and_nan():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    flipped = ref.copy()
    flipped[2] = [1.0, 2.0]
    r = compare_logits(ref, flipped)
    assert not r.passed and r.top1_agreement == pytest.approx(2 / 3)
    assert any("1 of 3 inputs differ" in s for s in r.reasons)
    assert compare_logits(ref, ref + 5e-5).passed
    assert not compare_logits(ref, ref + 5e-5, max_abs_diff=1e-5).passed
    loose = compare_logits(ref, flipped, max_abs_diff=10, min_top1_agreement=0.5)
    assert loose.passed
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert "non-finite" in compare_logits(ref, nan).reasons[0]
    with pytest.raises(ValueError, match="equal"):
        compare_logits(ref, ref[:2])


def test_torch_logits_leaves_the_callers_model_alone(exported):
    model, _ = exported
    model.train()
    try:
        out = torch_logits(model, _x(3))
    finally:
        model.eval()
    with torch.inference_mode():
        np.testing.assert_allclose(out, model(torch.from_numpy(_x(3))).numpy(), rtol=1e-6)

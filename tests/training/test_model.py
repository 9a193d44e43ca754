"""The edge CNN: shapes, embedding, parameter count, ONNX-friendly building blocks."""

import pytest
import torch

from training.model import build_model, count_parameters


def test_shapes_for_any_input_size():
    torch.manual_seed(0)
    model = build_model(4, width=8, image_size=64).eval()
    for side in (32, 64, 96):
        x = torch.randn(2, 3, side, side)
        assert model(x).shape == (2, 4)
        assert model.features(x).shape == (2, 128)  # avg and max pooled 8 * width channels
    assert model.embedding_dim == 128
    assert build_model(4, width=8, pool="avg").embedding_dim == 64


def test_repr_reports_parameters_and_config():
    model = build_model(4)
    assert "params=" in repr(model) and "width=16" in repr(model)
    assert 20_000 < count_parameters(model) < 100_000  # edge-sized


def test_only_plain_ops():
    allowed = {"Conv2d", "BatchNorm2d", "ReLU6", "SiLU", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Dropout", "Linear",
               "Sequential", "ConvBN", "SeparableBlock", "LenslineNet"}  # fmt: skip
    for act in ("relu6", "silu"):
        used = {type(m).__name__ for m in build_model(3, activation=act).modules()}
        assert used <= allowed, used - allowed


def test_bad_arguments():
    with pytest.raises(ValueError):
        build_model(1)
    with pytest.raises(ValueError):
        build_model(3, activation="gelu")

"""Shared edge-export fixtures: tiny ONNX models (seconds to build) and tiny inputs.

``tiny_onnx``        a random-init ``training.model.build_model(2, width=4, image_size=32)``
                     exported with ``torch.onnx.export`` (dynamic batch, opset 17): the real
                     architecture, meaningless predictions.
``brightness_onnx``  a hand-built ONNX graph (no torch): logits ``[-k*m, k*m]`` where ``m`` is
                     the mean of the normalised input, so bright frames are ``defect`` and dark
                     frames ``good`` -- a model whose answers a test can predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

TINY_CLASSES = ["good", "scratch"]
TINY_SIZE = 32


@dataclass(frozen=True)
class TinyModel:
    """An ONNX file with its class map and input side."""

    path: Path
    classes: list[str]
    image_size: int


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> TinyModel:
    """The real Lensline CNN (2 classes, width 4, 32 px), random weights, exported to ONNX."""
    import warnings

    import torch

    from training.model import build_model

    out = tmp_path_factory.mktemp("tiny_onnx") / "model.onnx"
    torch.manual_seed(0)
    model = build_model(len(TINY_CLASSES), width=4, image_size=TINY_SIZE).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, TINY_SIZE, TINY_SIZE),),
            str(out),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return TinyModel(out, list(TINY_CLASSES), TINY_SIZE)


def make_brightness_onnx(path: Path, *, k: float = 4.0) -> Path:
    """Write the ``brightness_onnx`` graph to ``path``: (N, 3, S, S) float32 -> (N, 2) logits."""
    import onnx
    from onnx import TensorProto, helper

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1, 2], [-k, k])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["m", "shape"], ["m2"]),
            helper.make_node("Mul", ["m2", "scale"], ["logits"]),
        ],
        "brightness",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, None, None])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[scale, helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def brightness_onnx(tmp_path_factory) -> TinyModel:
    """A predictable 2-class ONNX model: bright frames -> ``scratch``, dark frames -> ``good``."""
    out = make_brightness_onnx(tmp_path_factory.mktemp("brightness_onnx") / "model.onnx")
    return TinyModel(out, list(TINY_CLASSES), TINY_SIZE)


def write_video_levels(path: Path, levels: list[int], *, size=(64, 48), fps: int = 10) -> Path:
    """A tiny H.264 mp4 whose frame ``i`` is a flat grey of ``levels[i]`` (plus faint texture)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for level in levels:
            noise = rng.integers(-8, 9, (h, w, 1))
            img = np.clip(level + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture
def level_video():
    """``level_video(path, levels, size=(w, h), fps=10)``: frame ``i`` has grey level ``levels[i]``."""
    return write_video_levels

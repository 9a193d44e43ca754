"""TensorRT engines from the exported ONNX models, for NVIDIA GPUs (an optional extra).

Written for the current TensorRT Python API (10.x, and 11, which removed
``BuilderFlag.FP16/INT8`` and the implicit INT8 calibrators):

- the network is **strongly typed** (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): every
  tensor keeps the type the ONNX file gives it, no builder precision flags;
- **FP32**: the FP32 ONNX as exported (:mod:`edge_export.onnx`);
- **FP16**: the ONNX's own types -- :func:`to_fp16_onnx` rewrites the FP32 file with float16
  weights and activations (float32 input and output, a ``Cast`` at each end);
- **INT8**: the explicit Q/DQ of the quantised ONNX (:func:`edge_export.int8.quantize_int8`
  with ``symmetric_activations=True``: TensorRT accepts only zero points of 0);
- one optimisation profile over the dynamic batch axis (1 .. ``max_batch``);
- :func:`verify_parity`: the engine against ONNX Runtime on the *same* ONNX file, run by
  TensorRT's runtime with torch CUDA tensors as buffers (``execute_async_v3``).

Fact of this project: no machine here has TensorRT (its PyPI wheels download from NVIDIA's
index), so :func:`available` says why not (``tensorrt not installed`` / ``no NVIDIA GPU``),
the pipeline skips the target with that reason, and nothing ever writes a fake engine. The
ONNX checks (:func:`check_onnx`, :func:`to_fp16_onnx`) need only ``onnx`` and run everywhere.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edge_export.fsutil import atomic_write

if TYPE_CHECKING:
    from edge_export.latency import LatencyReport
    from edge_export.onnx import ParityReport

__all__ = [
    "Precision",
    "PARITY_THRESHOLDS",
    "TensorRTUnavailable",
    "available",
    "check_onnx",
    "to_fp16_onnx",
    "build_engine",
    "EnginePredictor",
    "verify_parity",
    "benchmark",
]

Precision = Literal["fp32", "fp16", "int8"]
#: (max |delta logit|, min top-1 agreement) of an engine against ONNX Runtime on the same ONNX.
#: FP32 engines may use TF32 tensor cores; FP16 rounds every activation; INT8 engines and
#: ONNX Runtime's QDQ kernels round the same scales with different accumulation orders.
PARITY_THRESHOLDS: dict[str, tuple[float, float]] = {
    "fp32": (1e-3, 1.0),
    "fp16": (2e-2, 0.995),
    "int8": (0.25, 0.99),
}


class TensorRTUnavailable(RuntimeError):
    """TensorRT or an NVIDIA GPU is missing; ``reason`` says which."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"TensorRT target skipped: {reason}")


def _nvidia_gpu() -> bool:
    """Whether the CUDA driver sees at least one device (libcuda via ctypes; no torch)."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return (
        cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    )


def available() -> tuple[bool, str]:
    """``(True, "")`` when engines can be built and run here, else ``(False, reason)``.

    ``reason`` is ``"tensorrt not installed"`` (also for NVIDIA's PyPI stub wheels that fail
    on import) or ``"no NVIDIA GPU"``.
    """
    try:
        import tensorrt  # noqa: F401
    except Exception:  # the stub wheels raise assorted errors on import
        return False, "tensorrt not installed"
    if not _nvidia_gpu():
        return False, "no NVIDIA GPU"
    return True, ""


def _require() -> Any:
    ok, reason = available()
    if not ok:
        raise TensorRTUnavailable(reason)
    import tensorrt as trt

    return trt


def check_onnx(onnx_path: str | os.PathLike, precision: Precision) -> dict[str, Any]:
    """Check that an ONNX file carries ``precision`` in its own types, as a strongly typed
    network needs; raise :class:`ValueError` naming the file and the problem.

    - ``fp32``: float32 weights, no Q/DQ nodes;
    - ``fp16``: float16 weights (:func:`to_fp16_onnx`);
    - ``int8``: QuantizeLinear/DequantizeLinear pairs with every zero point 0.

    Returns
    -------
    dict
        ``input`` name, ``input_shape`` (ints or dim names), ``float_weights`` dtype names,
        ``qdq_nodes`` count.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(onnx_path)
    if precision not in PARITY_THRESHOLDS:
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path}: no such file")
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    floats = {
        onnx.helper.tensor_dtype_to_np_dtype(i.data_type).name
        for i in inits.values()
        if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    problem = None
    if precision == "fp32" and (qdq or "float16" in floats):
        problem = "is quantised or float16; an fp32 engine needs the FP32 export"
    elif precision == "fp16" and "float16" not in floats:
        problem = "has no float16 weights; convert it with to_fp16_onnx() first"
    elif precision == "int8":
        if not qdq:
            problem = "has no QuantizeLinear/DequantizeLinear nodes; quantise it first"
        asym = [
            n.name
            for n in qdq
            if len(n.input) > 2
            and n.input[2] in inits
            and np.any(numpy_helper.to_array(inits[n.input[2]]) != 0)
        ]
        if asym:
            problem = (
                f"has {len(asym)} Q/DQ nodes with a non-zero zero point (first {asym[0]!r}); "
                "TensorRT needs symmetric quantisation "
                "(quantize_int8(..., symmetric_activations=True))"
            )
    if problem:
        raise ValueError(f"ONNX model {path} {problem} (precision={precision})")
    inp = model.graph.input[0]
    shape = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    return {
        "input": inp.name,
        "input_shape": shape,
        "float_weights": sorted(floats),
        "qdq_nodes": len(qdq),
    }


def to_fp16_onnx(fp32_onnx: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The FP32 model with float16 weights and activations; float32 input and output.

    Every float32 initializer becomes float16, ``Cast`` nodes convert the graph input to
    float16 and the output back to float32, and shape inference retypes the intermediate
    tensors. Enough for the ops :class:`training.model.LenslineNet` exports to (Conv, Clip,
    Add, ReduceMean/Max, Concat, Reshape, Gemm); written atomically.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(fp32_onnx))
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            arr = numpy_helper.to_array(init)
            if np.abs(arr).max(initial=0.0) > 65504:
                raise ValueError(f"initializer {init.name!r} overflows float16")
            init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), init.name))
    for node in graph.node:  # Cast/ConstantOfShape attributes that name float32
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16))
                )
    inp, outp = graph.input[0], graph.output[0]
    in16, out16 = f"{inp.name}_fp16", f"{outp.name}_fp16"
    for node in graph.node:
        node.input[:] = [in16 if name == inp.name else name for name in node.input]
        node.output[:] = [out16 if name == outp.name else name for name in node.output]
    graph.node.insert(0, helper.make_node("Cast", [inp.name], [in16], to=TensorProto.FLOAT16))
    graph.node.append(helper.make_node("Cast", [out16], [outp.name], to=TensorProto.FLOAT))
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return _write_atomic(Path(out), model.SerializeToString())


def _write_atomic(out: Path, data: bytes) -> Path:
    with atomic_write(out) as f:
        f.write(data)
    return out


def build_engine(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    precision: Precision,
    max_batch: int = 64,
    opt_batch: int = 1,
    workspace_bytes: int = 1 << 30,
) -> Path:
    """Build a serialized TensorRT engine (a ``.plan``) from an ONNX file of ``precision``.

    Parameters
    ----------
    onnx_path
        ``fp32``: the FP32 export; ``fp16``: :func:`to_fp16_onnx` of it, or the FP32 export
        (converted here, into a temp file); ``int8``: the symmetric QDQ model. Checked with
        :func:`check_onnx` first.
    out
        Destination engine file (written atomically). Engines are specific to the GPU model
        and TensorRT version they were built with.
    precision
        ``fp32``, ``fp16`` or ``int8``: the types the ONNX carries (no builder flags).
    max_batch, opt_batch
        The optimisation profile of the batch axis: 1 .. ``max_batch``, tuned for ``opt_batch``.
    workspace_bytes
        Builder scratch memory limit.

    Raises
    ------
    ValueError
        The ONNX does not carry ``precision`` (see :func:`check_onnx`) or will not parse.
    TensorRTUnavailable
        No TensorRT or no NVIDIA GPU here (``reason`` says which).
    """
    with tempfile.TemporaryDirectory(prefix="lensline-trt-") as tmp:
        if precision == "fp16" and "float16" not in check_onnx(onnx_path, "fp32")["float_weights"]:
            onnx_path = to_fp16_onnx(onnx_path, Path(tmp) / "model.fp16.onnx")
        return _build(Path(onnx_path), Path(out), precision, max_batch, opt_batch, workspace_bytes)


def _build(
    onnx_path: Path,
    out: Path,
    precision: Precision,
    max_batch: int,
    opt_batch: int,
    workspace_bytes: int,
) -> Path:
    info = check_onnx(onnx_path, precision)
    trt = _require()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    _, c, h, w = info["input_shape"]
    profile = builder.create_optimization_profile()
    profile.set_shape(
        info["input"], (1, c, h, w), (max(1, opt_batch), c, h, w), (max_batch, c, h, w)
    )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} ({precision})")
    return _write_atomic(out, bytes(serialized))


class EnginePredictor:
    """Runs a serialized engine: float32 (N, 3, S, S) numpy in, float32 (N, K) logits out.

    Buffers are torch CUDA tensors; the engine runs with ``execute_async_v3`` on torch's
    current stream.
    """

    def __init__(self, engine_path: str | os.PathLike):
        trt = _require()
        import torch

        self._torch = torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ValueError(f"TensorRT engine {engine_path}: cannot deserialize")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) != mode)

    def logits(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda()
        self.context.set_input_shape(self.input_name, tuple(xt.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        yt = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input_name, xt.data_ptr())
        self.context.set_tensor_address(self.output_name, yt.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return yt.cpu().numpy()


def verify_parity(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    x: np.ndarray,
    *,
    precision: Precision,
    max_abs_diff: float | None = None,
    min_top1_agreement: float | None = None,
) -> ParityReport:
    """The engine against ONNX Runtime (CPU) on the ONNX file it was built from.

    Thresholds default to :data:`PARITY_THRESHOLDS` of ``precision``.
    """
    from edge_export.onnx import compare_logits
    from edge_export.runtime import Predictor

    default_diff, default_agree = PARITY_THRESHOLDS[precision]
    x = np.asarray(x, dtype=np.float32)
    ref = Predictor(onnx_path, "int8" if precision == "int8" else "onnx").predict_batches(x)
    engine = EnginePredictor(engine_path)
    got = np.concatenate([engine.logits(x[i : i + 64]) for i in range(0, len(x), 64)])
    return compare_logits(
        ref,
        got,
        max_abs_diff=default_diff if max_abs_diff is None else max_abs_diff,
        min_top1_agreement=default_agree if min_top1_agreement is None else min_top1_agreement,
        what=f"TensorRT {precision} ({Path(engine_path).name}) vs ONNX Runtime",
    )


def benchmark(
    engine_path: str | os.PathLike,
    x1: np.ndarray,
    xb: np.ndarray,
    *,
    warmup: int = 10,
    iters: int = 100,
    name: str = "tensorrt",
) -> LatencyReport:
    """Batch-1 p50/p95 and batched throughput of an engine (host-to-host, copies included)."""
    from edge_export.latency import benchmark as run

    fn: Callable[[np.ndarray], np.ndarray] = EnginePredictor(engine_path).logits
    return run(fn, x1, xb, warmup=warmup, iters=iters, target=name)

"""Run an exported model without torch: one :class:`Predictor` for every edge target.

Targets (the ``--target`` of ``lensline-edge``):

- ``onnx``: the FP32 ONNX graph (:mod:`edge_export.onnx`) on ONNX Runtime;
- ``int8``: the QDQ INT8 ONNX graph (:mod:`edge_export.int8`) on ONNX Runtime;
- ``openvino``: an OpenVINO IR ``.xml`` (FP32 or NNCF INT8, :mod:`edge_export.openvino`) on
  the OpenVINO runtime, an optional package (a clear :class:`TargetUnavailable` without it).

Every predictor takes the model input exactly as :meth:`training.preprocess.PreprocessSpec.tensor`
makes it, float32 (N, 3, S, S), and returns float32 logits (N, K). ONNX Runtime runs on the
``CPUExecutionProvider`` unless CUDA is asked for and present.

This module imports only numpy at the top (onnxruntime / openvino when a predictor is built):
no torch, no Dagster, no polars, so the standalone runner can use it as is.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "TARGETS",
    "Device",
    "Predictor",
    "PredictorError",
    "TargetUnavailable",
    "available_targets",
    "softmax",
]

TARGETS = ("onnx", "int8", "openvino")
Device = Literal["cpu", "cuda", "auto"]


class PredictorError(ValueError):
    """A model file or an input array is unusable (names the file or the problem)."""


class TargetUnavailable(RuntimeError):
    """The runtime a target needs is not installed (or the asked device is absent)."""


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_targets() -> tuple[str, ...]:
    """The targets whose runtime is importable here, in :data:`TARGETS` order."""
    out: list[str] = []
    if _has("onnxruntime"):
        out += ["onnx", "int8"]
    if _has("openvino"):
        out.append("openvino")
    return tuple(out)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax: float (N, K) -> float32 (N, K), rows sum to 1 (max-shifted, stable)."""
    z = np.asarray(logits, dtype=np.float32)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Predictor:
    """An exported model, loaded once, scoring float32 NCHW batches.

    Parameters
    ----------
    path
        ``.onnx`` file for ``onnx`` / ``int8``; OpenVINO IR ``.xml`` (its ``.bin`` beside it)
        or an ``.onnx`` file for ``openvino``.
    target
        One of :data:`TARGETS`.
    threads
        Intra-op threads (ONNX Runtime ``intra_op_num_threads``, OpenVINO
        ``INFERENCE_NUM_THREADS``); ``None`` lets the runtime choose (all cores). ``1`` gives
        the lowest batch-1 latency on a busy machine.
    device
        ``cpu`` (default); ``cuda`` (ONNX Runtime's CUDA provider, :class:`TargetUnavailable`
        when absent); ``auto`` (CUDA when present, else CPU). OpenVINO always runs on CPU.

    Examples
    --------
    >>> p = Predictor("model.int8.onnx", "int8", threads=1)        # doctest: +SKIP
    >>> p.probs(spec.tensor(["frame.jpg"])).argmax(1)              # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        target: str = "onnx",
        *,
        threads: int | None = None,
        device: Device = "cpu",
    ):
        if target not in TARGETS:
            raise PredictorError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
        self.path = Path(path)
        if not self.path.is_file():
            raise PredictorError(f"{target} model {self.path}: no such file")
        if threads is not None and threads < 1:
            raise PredictorError(f"threads must be >= 1 or None, got {threads}")
        if device not in ("cpu", "cuda", "auto"):
            raise PredictorError(f"device must be cpu, cuda or auto, got {device!r}")
        self.target = target
        self.threads = threads
        self._session: Any = None
        self._compiled: Any = None
        if target == "openvino":
            self._init_openvino()
        else:
            self._init_ort(device)

    # -- construction ----------------------------------------------------------------------
    def _init_ort(self, device: Device) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise TargetUnavailable(
                f"target {self.target!r} needs onnxruntime (pip install onnxruntime)"
            ) from e
        have_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "cuda" and not have_cuda:
            raise TargetUnavailable(
                "device='cuda' asked but onnxruntime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu on a machine with an NVIDIA GPU)"
            )
        use_cuda = device == "cuda" or (device == "auto" and have_cuda)
        providers = ["CUDAExecutionProvider"] if use_cuda else []
        providers.append("CPUExecutionProvider")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
            # no spinning worker threads burning the cores other processes need between calls
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise PredictorError(f"{self.target} model {self.path}: cannot load ({e})") from e
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise PredictorError(
                f"{self.target} model {self.path}: expected 1 input and >= 1 output, "
                f"got {len(inputs)} and {len(outputs)}"
            )
        self.input_name: str = inputs[0].name
        self.output_name: str = outputs[0].name
        self.input_shape: tuple[int | str | None, ...] = tuple(inputs[0].shape)
        self.providers: list[str] = list(self._session.get_providers())

    def _init_openvino(self) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise TargetUnavailable(
                "target 'openvino' needs the openvino package (pip install openvino)"
            ) from e
        # f32: CPUs with bf16 units would otherwise run the float parts in bf16 (OpenVINO's
        # default there), off by ~1e-2 from ONNX Runtime; INT8 parts of an NNCF IR stay INT8.
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            core = ov.Core()
            self._compiled = core.compile_model(str(self.path), "CPU", config)
        except Exception as e:  # openvino raises RuntimeError subclasses for bad IR
            raise PredictorError(f"openvino model {self.path}: cannot load ({e})") from e
        port = self._compiled.input(0)
        self.input_name = port.get_any_name()
        self.output_name = self._compiled.output(0).get_any_name()
        self.input_shape = tuple(
            d.get_length() if d.is_static else None for d in port.get_partial_shape()
        )
        self.providers = ["OpenVINO:CPU"]
        self._request = self._compiled.create_infer_request()

    # -- scoring ---------------------------------------------------------------------------
    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[0] < 1:
            raise PredictorError(f"expected a float32 (N, C, S, S) batch, got shape {x.shape}")
        for axis, (got, want) in enumerate(zip(x.shape[1:], self.input_shape[1:], strict=False)):
            if isinstance(want, int) and want > 0 and got != want:
                raise PredictorError(
                    f"input axis {axis + 1} is {got}, model {self.path.name} expects {want} "
                    f"(input shape {self.input_shape})"
                )
        return np.ascontiguousarray(x, dtype=np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw scores.

        Parameters
        ----------
        x
            float32 (N, 3, S, S), normalised as :meth:`PreprocessSpec.normalize` does.

        Returns
        -------
        np.ndarray
            float32 (N, K).
        """
        x = self._check(x)
        if self._compiled is not None:
            out = self._request.infer({0: x})[self._compiled.output(0)]
        else:
            out = self._session.run([self.output_name], {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float32)

    def probs(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities: float32 (N, 3, S, S) -> float32 (N, K), rows sum to 1."""
        return softmax(self.logits(x))

    def predict_batches(self, x: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """:meth:`logits` over ``x`` in chunks of ``batch_size``: float32 (N, K)."""
        if len(x) == 0:
            raise PredictorError("no inputs to score")
        parts: Sequence[np.ndarray] = [
            self.logits(x[i : i + batch_size]) for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)

    def __repr__(self) -> str:
        return (
            f"Predictor({str(self.path)!r}, {self.target!r}, threads={self.threads}, "
            f"providers={self.providers})"
        )

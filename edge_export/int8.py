"""INT8 ONNX by ONNX Runtime static quantisation, and the ``int8_accuracy`` gate.

Follows ONNX Runtime's own guidance for CNNs on CPU:

1. ``quant_pre_process`` (symbolic shape inference + graph optimisation) on the FP32 model;
2. ``quantize_static`` in the **QDQ** format, **S8S8** (``QuantType.QInt8`` activations and
   weights), per-channel weights by default (depthwise convolutions have very different
   ranges per channel: one scale per tensor throws their precision away);
3. activation ranges calibrated by running the model over **curated train frames** passed
   through the checkpoint's :class:`training.preprocess.PreprocessSpec` -- the caller makes
   the float32 (N, 3, S, S) array; :func:`calibration_reader` feeds it in batches.

A wrong calibration set (blank frames, a different normalisation) gives wrong ranges and
silently wrong answers, the most reported failure of INT8 exports; :func:`verify_accuracy`
is the gate that catches it, comparing INT8 with FP32 frame by frame on the test split:

* INT8 must agree with FP32's top-1 on at least ``min_agreement`` (0.9) of the frames (a
  broken calibration scrambles predictions; this needs no labels and no luck);
* top-1 accuracy may not drop by more than ``max_drop_points`` (1.0), nor any class's recall
  by more than ``max_recall_drop_points`` (2.0), where a drop counts when it is also
  significant: the one-sided exact McNemar test on the frames only one of the two models gets
  right rejects "INT8 is no worse" at ``alpha`` (0.05). On a test split of ~100 frames one
  frame is a whole point; a single flipped frame is noise, a real loss is many.

The output is written to a temp file beside ``out`` and moved into place with ``os.replace``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from edge_export.latency import LatencyReport

__all__ = [
    "CalibrationMethodName",
    "AccuracyReport",
    "calibration_reader",
    "quantize_int8",
    "verify_accuracy",
    "evaluate_int8",
    "benchmark",
]

CalibrationMethodName = Literal["minmax", "percentile", "entropy"]
_EPS = 1e-9  # 100 * (1.0 - 0.99) is 1.0000000000000009: a drop exactly at the limit passes


@dataclass(frozen=True)
class AccuracyReport:
    """Result of the ``int8_accuracy`` gate.

    Attributes
    ----------
    passed
        No threshold broken.
    fp32_accuracy, accuracy
        Top-1 accuracy of the FP32 and the INT8 model on the same inputs, in [0, 1].
    drop_points
        ``100 * (fp32_accuracy - accuracy)`` (negative when INT8 does better).
    per_class_recall_drop
        ``class -> 100 * (fp32 recall - int8 recall)``; ``None`` for classes absent from
        ``labels``.
    reasons
        One sentence per broken threshold.
    top1_agreement
        Fraction of inputs where FP32 and INT8 predict the same class.
    n
        Number of inputs.
    p_worse
        One-sided exact McNemar p-value of "INT8 is less accurate" on all inputs.
    fp32_only, int8_only
        Inputs only FP32 (only INT8) classifies correctly.
    """

    passed: bool
    fp32_accuracy: float
    accuracy: float
    drop_points: float
    per_class_recall_drop: dict[str, float | None]
    reasons: list[str] = field(default_factory=list)
    top1_agreement: float = 1.0
    n: int = 0
    max_drop_points: float = 1.0
    max_recall_drop_points: float = 2.0
    p_worse: float = 1.0
    fp32_only: int = 0
    int8_only: int = 0

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready dict (asset metadata, model card)."""
        return asdict(self)


def _check_inputs(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or len(x) == 0 or x.shape[1] != 3:
        raise ValueError(f"{name} must be a non-empty float32 (N, 3, S, S) array, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32)


def calibration_reader(x: np.ndarray, *, input_name: str = "input", batch_size: int = 16) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over an array.

    Parameters
    ----------
    x
        float32 (N, 3, S, S): curated train frames through ``PreprocessSpec.tensor``.
    input_name
        The model's input name.
    batch_size
        Frames per calibration batch.
    """
    from onnxruntime.quantization import CalibrationDataReader

    x = _check_inputs(x, "calibration")

    class _ArrayReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._starts = iter(range(0, len(x), batch_size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._starts, None)
            return None if start is None else {input_name: x[start : start + batch_size]}

        def __len__(self) -> int:
            return -(-len(x) // batch_size)

        def rewind(self) -> None:
            self._starts = iter(range(0, len(x), batch_size))

    return _ArrayReader()


def quantize_int8(
    fp32_onnx: str | os.PathLike,
    out: str | os.PathLike,
    calibration: np.ndarray,
    *,
    per_channel: bool = True,
    method: CalibrationMethodName = "minmax",
    batch_size: int = 16,
    nodes_to_exclude: Sequence[str] = (),
    symmetric_activations: bool = False,
    activations: Literal["int8", "uint8"] = "int8",
) -> Path:
    """Quantise an FP32 ONNX model to QDQ S8S8 INT8 with static calibration.

    Parameters
    ----------
    fp32_onnx
        The FP32 model from :func:`edge_export.onnx.export_onnx`.
    out
        Destination ``.onnx`` (written atomically; parents created).
    calibration
        float32 (N, 3, S, S): curated *train* frames (a few hundred are plenty) through the
        checkpoint's ``PreprocessSpec.tensor`` -- exactly what the model sees at run time.
    per_channel
        One weight scale per output channel (default; best for depthwise convolutions).
    method
        Activation range calibration: ``minmax`` (default; exact observed ranges),
        ``percentile`` (99.999th percentile of |x|; clips outliers) or ``entropy`` (KL
        divergence; slower).
    batch_size
        Calibration frames per ONNX Runtime call.
    nodes_to_exclude
        Node names left in float (e.g. a sensitive final ``Gemm``).
    symmetric_activations
        Activation zero points of 0 (TensorRT accepts nothing else; see
        :mod:`edge_export.tensorrt`). Off by default: ReLU6 outputs are all >= 0, and an
        asymmetric range spends all 256 levels on them.
    activations
        ``int8`` (default: S8S8, the issue's and ONNX Runtime's accuracy-first setting) or
        ``uint8`` (U8S8). Measured on x86-64 with ONNX Runtime 1.32: with S8S8 the CPU
        provider leaves the depthwise convolutions and residual Adds as DequantizeLinear ->
        float op -> QuantizeLinear plus layout Transposes (about 3x slower than FP32 for
        :class:`~training.model.LenslineNet`); U8S8 fuses every one into QLinearConv /
        QLinearAdd and runs about 2.5x faster than S8S8. Pass ``uint8`` for CPU deployment
        when its accuracy gate passes; TensorRT needs ``int8`` with symmetric activations.

    Returns
    -------
    Path
        ``out``: same input/output names and shapes as ``fp32_onnx``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if activations not in ("int8", "uint8"):
        raise ValueError(f"activations must be int8 or uint8, got {activations!r}")
    if activations == "uint8" and symmetric_activations:
        raise ValueError("symmetric_activations needs int8 activations (zero point 0)")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"method must be one of {', '.join(methods)}, got {method!r}")
    calibration = _check_inputs(calibration, "calibration")
    src = Path(fp32_onnx)
    if not src.is_file():
        raise FileNotFoundError(f"FP32 ONNX model {src}: no such file")
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        pre, quant = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # ONNX shape inference + ORT graph optimisation. The symbolic shape pass (meant for
        # transformers' dynamic dims) cannot type opset-18 ReduceMax with axes as an input.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()):  # histogram calibrators print progress
            quantize_static(
                str(pre),
                str(quant),
                calibration_reader(calibration, input_name=input_name, batch_size=batch_size),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
                nodes_to_exclude=[*nodes_to_exclude, *_after_heads(onnx.load(str(pre)))] or None,
                extra_options={
                    "WeightSymmetric": True,
                    "ActivationSymmetric": symmetric_activations,
                },
            )
        onnx.checker.check_model(str(quant))
        with open(quant, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(quant, out)
    return out


def _after_heads(model: Any) -> list[str]:
    """Names of the nodes downstream of the classifier heads (``Gemm``): an ensemble's mean of
    its members' softmaxes and its log (:class:`~training.model.LenslineEnsemble`), kept in
    float. Quantised, that tail rounds probabilities near a decision into one another (on a
    3-member test ensemble top-1 agreement fell to 0.90); it is a few element-wise ops on K
    numbers. Empty for one network, whose output is its Gemm."""
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    todo = [o for n in model.graph.node if n.op_type == "Gemm" for o in n.output]
    seen: dict[str, None] = {}
    while todo:
        for node in consumers.get(todo.pop(), []):
            if node.name not in seen:
                seen[node.name] = None
                todo.extend(node.output)
    return list(seen)


def verify_accuracy(
    fp32_probs_or_logits: np.ndarray,
    int8_logits: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    max_drop_points: float = 1.0,
    max_recall_drop_points: float = 2.0,
    alpha: float = 0.05,
    min_agreement: float = 0.9,
) -> AccuracyReport:
    """The ``int8_accuracy`` gate: INT8 against FP32, frame by frame, on the labelled test split.

    Parameters
    ----------
    fp32_probs_or_logits
        float (N, K): FP32 model scores (probabilities or logits: only the arg-max is used).
    int8_logits
        float (N, K): INT8 model scores on the same inputs, same class order.
    labels
        int (N,): true class indices in [0, K).
    classes
        K class names, index order.
    max_drop_points
        Largest allowed top-1 accuracy drop, percentage points.
    max_recall_drop_points
        Largest allowed recall drop of any class with test examples, percentage points.
    alpha
        A drop beyond the allowance fails only when significant at this level (one-sided
        exact McNemar test).
    min_agreement
        Smallest allowed share of inputs where INT8 and FP32 predict the same class.
    """
    from edge_export.paired import mcnemar

    ref = np.asarray(fp32_probs_or_logits, dtype=np.float64)
    got = np.asarray(int8_logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    k = len(classes)
    if ref.shape != got.shape or ref.ndim != 2 or ref.shape[1] != k or len(y) != len(ref):
        raise ValueError(
            f"need two (N, {k}) score arrays and N labels; got {ref.shape}, {got.shape}, {y.shape}"
        )
    if len(y) == 0:
        raise ValueError("no test examples to compare on")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in [0, {k})")
    reasons = []
    if not np.isfinite(got).all():
        reasons.append("INT8 model produced non-finite scores")
    p_ref, p_got = ref.argmax(1), got.argmax(1)
    fp32_acc, acc = float((p_ref == y).mean()), float((p_got == y).mean())
    agreement = float((p_ref == p_got).mean())
    if agreement < min_agreement - _EPS:
        reasons.append(
            f"INT8 agrees with FP32's top-1 on only {agreement:.1%} of {len(y)} frames "
            f"(at least {min_agreement:.0%} required): calibration or quantisation broke the model"
        )
    drop = 100.0 * (fp32_acc - acc)
    fp32_only, int8_only, p_all = mcnemar(p_ref == y, p_got == y)
    if drop > max_drop_points + _EPS and p_all < alpha:
        reasons.append(
            f"top-1 accuracy dropped {drop:.2f} points ({fp32_acc:.2%} FP32 -> {acc:.2%} INT8), "
            f"allowed {max_drop_points:g}; significant: {fp32_only} frames only FP32 gets right, "
            f"{int8_only} only INT8 (McNemar p={p_all:.3g} < {alpha:g})"
        )
    recall_drop: dict[str, float | None] = {}
    for i, name in enumerate(classes):
        mask = y == i
        if not mask.any():
            recall_drop[name] = None
            continue
        d = 100.0 * float((p_ref[mask] == i).mean() - (p_got[mask] == i).mean())
        recall_drop[name] = d
        lost, won, p_class = mcnemar(p_ref[mask] == i, p_got[mask] == i)
        if d > max_recall_drop_points + _EPS and p_class < alpha:
            reasons.append(
                f"recall of {name!r} dropped {d:.2f} points ({int(mask.sum())} test examples), "
                f"allowed {max_recall_drop_points:g}; significant: {lost} lost, {won} gained "
                f"(McNemar p={p_class:.3g})"
            )
    return AccuracyReport(
        passed=not reasons,
        fp32_accuracy=fp32_acc,
        accuracy=acc,
        drop_points=drop,
        per_class_recall_drop=recall_drop,
        reasons=reasons,
        top1_agreement=agreement,
        n=len(y),
        max_drop_points=max_drop_points,
        max_recall_drop_points=max_recall_drop_points,
        p_worse=p_all,
        fp32_only=fp32_only,
        int8_only=int8_only,
    )


def evaluate_int8(
    fp32_onnx: str | os.PathLike,
    int8_onnx: str | os.PathLike,
    x: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    target: str = "int8",
    threads: int | None = None,
    batch_size: int = 64,
    max_drop_points: float = 1.0,
    max_recall_drop_points: float = 2.0,
) -> AccuracyReport:
    """Score the test split ``x`` (float32 (N, 3, S, S)) with both models, then :func:`verify_accuracy`.

    ``target`` is the :class:`edge_export.runtime.Predictor` target of ``int8_onnx``
    (``openvino`` for an NNCF IR).
    """
    from edge_export.runtime import Predictor

    x = _check_inputs(x, "x")
    ref = Predictor(fp32_onnx, "onnx", threads=threads).predict_batches(x, batch_size=batch_size)
    got = Predictor(int8_onnx, target, threads=threads).predict_batches(x, batch_size=batch_size)
    return verify_accuracy(
        ref,
        got,
        labels,
        classes,
        max_drop_points=max_drop_points,
        max_recall_drop_points=max_recall_drop_points,
    )


def benchmark(
    int8_onnx: str | os.PathLike,
    x1: np.ndarray,
    xb: np.ndarray,
    *,
    threads: int | None = 1,
    batch_threads: int | None = 1,
    warmup: int = 10,
    iters: int = 100,
) -> LatencyReport:
    """Batch-1 p50/p95 and batched throughput of the INT8 model on ONNX Runtime."""
    from edge_export.latency import benchmark_predictor

    return benchmark_predictor(
        int8_onnx,
        "int8",
        x1,
        xb,
        threads=threads,
        batch_threads=batch_threads,
        warmup=warmup,
        iters=iters,
    )

"""FP32 ONNX export of a :class:`training.model.LenslineNet`, its parity gate and benchmark.

- :func:`export_onnx`: ``torch.onnx.export`` (the dynamo exporter, torch >= 2.9), opset
  :data:`OPSET`, one input ``input`` float32 (batch, 3, S, S) with a dynamic batch axis, one
  output ``logits`` float32 (batch, K); BatchNorm is folded into the convolutions. The file is
  written to a temp file beside ``path``, checked with ``onnx.checker``, fsynced and moved into
  place with ``os.replace``: ``path`` is either the previous file or the complete new one.
- :func:`verify_parity`: the ``onnx_parity`` gate -- torch and ONNX Runtime on the same inputs
  (real curated test frames in the pipeline): max |delta logit| <= 1e-4 and 100 % top-1
  agreement.
- :func:`benchmark`: batch-1 p50/p95 and batched throughput on ONNX Runtime.

torch is imported inside the functions; ``import edge_export.onnx`` is cheap.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edge_export.latency import LatencyReport

__all__ = [
    "OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ParityReport",
    "compare_logits",
    "export_onnx",
    "verify_parity",
    "torch_logits",
    "benchmark",
]

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ParityReport:
    """Result of the ``onnx_parity`` gate (also used for TensorRT vs ONNX Runtime).

    Attributes
    ----------
    passed
        Both thresholds met and every output finite.
    max_abs_logit_diff
        max over inputs and classes of |reference - candidate| logits.
    top1_agreement
        Fraction of inputs whose arg-max class is the same, in [0, 1].
    n
        Number of inputs compared.
    reasons
        One sentence per failed threshold (empty when passed).
    """

    passed: bool
    max_abs_logit_diff: float
    top1_agreement: float
    n: int
    reasons: list[str] = field(default_factory=list)
    max_abs_diff_allowed: float = 1e-4
    min_top1_agreement: float = 1.0

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready dict (asset metadata, model card)."""
        return asdict(self)


def compare_logits(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    max_abs_diff: float = 1e-4,
    min_top1_agreement: float = 1.0,
    what: str = "ONNX Runtime vs torch",
) -> ParityReport:
    """Compare two runtimes' logits on the same inputs.

    Parameters
    ----------
    reference, candidate
        float (N, K) logits, same rows and class order.
    max_abs_diff
        Largest allowed |reference - candidate|.
    min_top1_agreement
        Smallest allowed fraction of rows with the same arg-max.
    what
        Names the comparison in the reasons.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 2 or len(ref) == 0:
        raise ValueError(
            f"logits must be two equal (N, K) arrays, got {ref.shape} and {cand.shape}"
        )
    reasons = []
    finite = bool(np.isfinite(cand).all() and np.isfinite(ref).all())
    diff = float(np.abs(ref - cand).max()) if finite else float("inf")
    agree = float((ref.argmax(1) == cand.argmax(1)).mean())
    if not finite:
        reasons.append(f"{what}: non-finite logits")
    if diff > max_abs_diff:
        reasons.append(f"{what}: max |delta logit| {diff:.3g} > {max_abs_diff:g}")
    if agree < min_top1_agreement:
        reasons.append(
            f"{what}: top-1 agreement {agree:.2%} < {min_top1_agreement:.2%} "
            f"({int(round((1 - agree) * len(ref)))} of {len(ref)} inputs differ)"
        )
    return ParityReport(
        passed=not reasons,
        max_abs_logit_diff=diff,
        top1_agreement=agree,
        n=len(ref),
        reasons=reasons,
        max_abs_diff_allowed=max_abs_diff,
        min_top1_agreement=min_top1_agreement,
    )


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    *,
    image_size: int,
    opset: int = OPSET,
) -> Path:
    """Export ``model`` to an FP32 ONNX file with a dynamic batch axis, atomically.

    Parameters
    ----------
    model
        A ``torch.nn.Module`` mapping float32 (N, 3, S, S) to logits (N, K), e.g.
        :class:`training.model.LenslineNet`. Exported in eval mode on CPU; the caller's module
        (its mode and device) is left as it was.
    path
        Destination ``.onnx``; parent directories are created.
    image_size
        S, the input side the model was trained on (``spec.image_size``).
    opset
        ONNX opset (default :data:`OPSET`).

    Returns
    -------
    Path
        ``path``: input ``input`` float32 (batch, 3, S, S), output ``logits`` float32 (batch, K).
    """
    import copy
    import logging
    import warnings

    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).to("cpu").eval()
    example = (torch.zeros(2, 3, image_size, image_size),)  # batch 2: no 0/1 specialisation
    batch = torch.export.Dim("batch", min=1, max=65536)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..." chatter
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter deprecation warnings
            torch.onnx.export(
                net,
                example,
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=({0: batch},),
                external_data=False,
                optimize=True,
                verbose=False,
            )
        onnx.checker.check_model(str(tmp), full_check=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        quiet.setLevel(level)
    return path


def torch_logits(model: Any, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """The torch model's logits on CPU in eval mode: float32 (N, 3, S, S) -> float32 (N, K)."""
    import copy

    import torch

    net = copy.deepcopy(model).to("cpu").eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], np.float32))
            out.append(net(chunk).float().numpy())
    return np.concatenate(out)


def verify_parity(
    model: Any,
    onnx_path: str | os.PathLike,
    x: np.ndarray,
    *,
    max_abs_diff: float = 1e-4,
    min_top1_agreement: float = 1.0,
    threads: int | None = None,
    batch_size: int = 64,
) -> ParityReport:
    """The ``onnx_parity`` gate: does the ONNX file compute what the torch model computes?

    Parameters
    ----------
    model
        The torch model that was exported.
    onnx_path
        The exported FP32 ONNX file.
    x
        float32 (N, 3, S, S): real frames through the checkpoint's ``PreprocessSpec.tensor``.
    max_abs_diff
        Largest allowed |delta logit| (default 1e-4).
    min_top1_agreement
        Smallest allowed top-1 agreement (default 1.0: every input).
    threads
        ONNX Runtime intra-op threads (``None``: all cores).
    batch_size
        Inputs per ONNX Runtime call.
    """
    from edge_export.runtime import Predictor

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"x must be a non-empty float32 (N, 3, S, S) batch, got {x.shape}")
    ref = torch_logits(model, x)
    got = Predictor(onnx_path, "onnx", threads=threads).predict_batches(x, batch_size=batch_size)
    return compare_logits(
        ref,
        got,
        max_abs_diff=max_abs_diff,
        min_top1_agreement=min_top1_agreement,
        what=f"ONNX Runtime ({Path(onnx_path).name}) vs torch",
    )


def benchmark(
    onnx_path: str | os.PathLike,
    x1: np.ndarray,
    xb: np.ndarray,
    *,
    target: str = "onnx",
    threads: int | None = 1,
    batch_threads: int | None = 1,
    warmup: int = 10,
    iters: int = 100,
) -> LatencyReport:
    """Batch-1 p50/p95 (``threads`` intra-op threads) and throughput on ``xb`` (``batch_threads``).

    See :func:`edge_export.latency.benchmark` for ``x1``, ``xb``, ``warmup`` and ``iters``.
    """
    from edge_export.latency import benchmark_predictor

    return benchmark_predictor(
        onnx_path,
        target,
        x1,
        xb,
        threads=threads,
        batch_threads=batch_threads,
        warmup=warmup,
        iters=iters,
    )

"""OpenVINO IR (FP32) and NNCF INT8 IR of the exported ONNX model, for Intel CPUs / iGPUs.

- :func:`export_ir`: ``ov.convert_model`` on the FP32 ONNX file, ``ov.save_model(...,
  compress_to_fp16=False)`` (FP32 weights: the IR computes what the ONNX model computes);
- :func:`quantize_ir`: INT8 with NNCF post-training quantisation (``nncf.quantize`` with an
  ``nncf.Dataset`` over the same calibration array as :func:`edge_export.int8.quantize_int8`:
  curated train frames through the checkpoint's ``PreprocessSpec``), symmetric ``performance``
  preset, CPU target; the result holds FakeQuantize nodes the CPU plugin runs in INT8;
- :func:`verify_parity`: the FP32 IR against ONNX Runtime (max |delta logit| <= 1e-4, 100 %
  top-1); the INT8 IR goes through :func:`edge_export.int8.evaluate_int8` with
  ``target="openvino"`` (the same ``int8_accuracy`` gate as ONNX Runtime INT8);
- :func:`benchmark`: batch-1 p50/p95 and batched throughput on the OpenVINO CPU plugin.

An IR is two files, ``model.xml`` and ``model.bin`` beside it. Both are written into a temp
directory beside ``out`` and moved into place, ``.bin`` first, ``.xml`` last; a crash between
the two moves can leave a new ``.bin`` under an old ``.xml``, which the bundle's sha256s and a
rerun of the export catch and repair.

``openvino`` (and ``nncf`` for INT8) are optional: :func:`available` says whether they are
installed; every function imports them lazily and raises :class:`ImportError` with the pip
command when they are not.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from edge_export.latency import LatencyReport
    from edge_export.onnx import ParityReport

__all__ = ["available", "export_ir", "quantize_ir", "verify_parity", "benchmark"]


def available(*, int8: bool = False) -> tuple[bool, str]:
    """``(True, "")`` when OpenVINO (and NNCF if ``int8``) can be imported, else the reason."""
    if importlib.util.find_spec("openvino") is None:
        return False, "openvino not installed (pip install openvino)"
    if int8 and importlib.util.find_spec("nncf") is None:
        return False, "nncf not installed (pip install nncf)"
    return True, ""


def _import_ov() -> Any:
    try:
        import openvino as ov
    except ImportError as e:
        raise ImportError(
            "OpenVINO export needs the openvino package (pip install openvino)"
        ) from e
    return ov


def _save_ir(ov: Any, model: Any, out: Path) -> Path:
    """Write ``model`` as ``out`` (.xml) + ``out.with_suffix('.bin')`` via a temp directory."""
    if out.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR path must end in .xml, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}.") as tmp:
        xml = Path(tmp) / out.name
        ov.save_model(model, str(xml), compress_to_fp16=False)
        ov.Core().read_model(str(xml))  # reads back: both files complete and consistent
        for f in (xml.with_suffix(".bin"), xml):
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(f, out.parent / f.name)
    return out


def export_ir(onnx_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert an FP32 ONNX model to an FP32 OpenVINO IR.

    Parameters
    ----------
    onnx_path
        From :func:`edge_export.onnx.export_onnx`: input ``input`` float32 (batch, 3, S, S).
    out
        Destination ``.xml``; the weights go to the ``.bin`` beside it.

    Returns
    -------
    Path
        ``out``; same input/output names and dynamic batch as the ONNX model.
    """
    ov = _import_ov()
    src = Path(onnx_path)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model {src}: no such file")
    return _save_ir(ov, ov.convert_model(str(src)), Path(out))


def quantize_ir(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike,
    calibration: np.ndarray,
    *,
    preset: Literal["performance", "mixed"] = "performance",
    subset_size: int = 300,
    fast_bias_correction: bool = True,
) -> Path:
    """INT8 OpenVINO IR by NNCF post-training quantisation.

    Parameters
    ----------
    onnx_path
        The FP32 ONNX model (converted with ``ov.convert_model`` first).
    out
        Destination ``.xml`` (``.bin`` beside it).
    calibration
        float32 (N, 3, S, S): curated train frames through the checkpoint's
        ``PreprocessSpec.tensor`` (the array given to :func:`edge_export.int8.quantize_int8`).
    preset
        ``performance`` (symmetric weights and activations; fastest on CPU) or ``mixed``
        (asymmetric activations: better for activations that are not centred on zero).
    subset_size
        Calibration frames NNCF uses (at most N).
    fast_bias_correction
        NNCF's fast bias correction (``False``: the slower, sometimes more accurate one).
    """
    ov = _import_ov()
    try:
        import nncf
    except ImportError as e:
        raise ImportError("OpenVINO INT8 needs NNCF (pip install nncf)") from e
    from edge_export.int8 import _check_inputs

    calibration = _check_inputs(calibration, "calibration")
    src = Path(onnx_path)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model {src}: no such file")
    presets = {
        "performance": nncf.QuantizationPreset.PERFORMANCE,
        "mixed": nncf.QuantizationPreset.MIXED,
    }
    if preset not in presets:
        raise ValueError(f"preset must be performance or mixed, got {preset!r}")
    model = ov.convert_model(str(src))
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    quantized = nncf.quantize(
        model,
        dataset,
        preset=presets[preset],
        target_device=nncf.TargetDevice.CPU,
        subset_size=min(subset_size, len(calibration)),
        fast_bias_correction=fast_bias_correction,
    )
    return _save_ir(ov, quantized, Path(out))


def verify_parity(
    onnx_path: str | os.PathLike,
    ir_path: str | os.PathLike,
    x: np.ndarray,
    *,
    max_abs_diff: float = 1e-4,
    min_top1_agreement: float = 1.0,
    threads: int | None = None,
    batch_size: int = 64,
) -> ParityReport:
    """The FP32 IR against ONNX Runtime on the same inputs (float32 (N, 3, S, S)).

    Same thresholds as the ``onnx_parity`` gate; not meant for the INT8 IR (use
    :func:`edge_export.int8.evaluate_int8` with ``target="openvino"``).
    """
    from edge_export.onnx import compare_logits
    from edge_export.runtime import Predictor

    x = np.asarray(x, dtype=np.float32)
    ref = Predictor(onnx_path, "onnx", threads=threads).predict_batches(x, batch_size=batch_size)
    got = Predictor(ir_path, "openvino", threads=threads).predict_batches(x, batch_size=batch_size)
    return compare_logits(
        ref,
        got,
        max_abs_diff=max_abs_diff,
        min_top1_agreement=min_top1_agreement,
        what=f"OpenVINO ({Path(ir_path).name}) vs ONNX Runtime",
    )


def benchmark(
    ir_path: str | os.PathLike,
    x1: np.ndarray,
    xb: np.ndarray,
    *,
    threads: int | None = 1,
    batch_threads: int | None = 1,
    warmup: int = 10,
    iters: int = 100,
    name: str = "openvino",
) -> LatencyReport:
    """Batch-1 p50/p95 and batched throughput of an IR on the OpenVINO CPU plugin."""
    from edge_export.latency import benchmark_predictor

    return benchmark_predictor(
        ir_path,
        "openvino",
        x1,
        xb,
        threads=threads,
        batch_threads=batch_threads,
        warmup=warmup,
        iters=iters,
        name=name,
    )

"""Export targets behind one small interface: export the champion, verify it, say which files to
keep and which gates it passed.

Each target (:class:`OnnxTarget`, :class:`Int8Target`, :class:`OpenVinoTarget`) carries its gate
thresholds as a frozen dataclass; :meth:`ExportTarget.version` folds them, with the target's
own revision, into one string that the export asset declares as its Dagster ``code_version``:
change a threshold and Dagster sees the asset's code change, re-runs that export and what
depends on it, and nothing upstream. ``assets/export.py`` makes one asset per target with one
factory; a new target is one class here and one line there.

No Dagster, no polars: torch is only touched through the model the caller hands in (ONNX).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

__all__ = [
    "ExportInputs",
    "ExportOutcome",
    "ExportTarget",
    "GateResult",
    "Int8Gate",
    "Int8Target",
    "OnnxTarget",
    "OpenVinoTarget",
    "ParityGate",
]


@dataclass(frozen=True)
class ParityGate:
    """Thresholds of a parity gate (an export against the model it came from)."""

    max_abs_diff: float = 1e-4
    min_top1_agreement: float = 1.0


@dataclass(frozen=True)
class Int8Gate:
    """Thresholds of an INT8 accuracy gate (see :func:`edge_export.int8.verify_accuracy`)."""

    max_drop_points: float = 1.0
    max_recall_drop_points: float = 2.0
    alpha: float = 0.05
    min_agreement: float = 0.9


@dataclass
class ExportInputs:
    """What a target gets: the champion's model and class map, its test split (``x`` float32
    (N, 3, S, S) normalised, ``y`` int (N,)), calibration frames (train split, same layout),
    the already verified FP32 ONNX file when the target builds on it, and a work folder."""

    model: Any
    classes: Sequence[str]
    image_size: int
    x: np.ndarray
    y: np.ndarray
    calib: np.ndarray | None
    fp32_onnx: Path | None
    workdir: Path
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GateResult:
    """One gate's verdict: ``severity`` ``"ERROR"`` blocks (declared blocking), ``"WARN"`` not."""

    name: str
    passed: bool
    metadata: dict[str, Any]
    severity: str = "ERROR"


@dataclass
class ExportOutcome:
    """Files to store (``name`` under ``exports/<version>/`` -> local path), gate verdicts,
    metadata for the asset and the files whose latency to measure (``target`` -> path)."""

    files: dict[str, Path]
    gates: list[GateResult]
    metadata: dict[str, Any]
    latency: dict[str, Path]


class ExportTarget(Protocol):
    """One export format. ``name`` is the asset's name; ``gates`` its check names (blocking
    unless listed in ``warn_gates``); ``needs`` which inputs it reads."""

    name: str
    revision: int
    gates: tuple[str, ...]
    warn_gates: tuple[str, ...]
    needs_onnx: bool
    needs_calibration: bool

    def settings(self) -> dict[str, Any]: ...

    def export(self, inputs: ExportInputs) -> ExportOutcome: ...


def version(target: ExportTarget) -> str:
    """The target's code version: its name, revision and every gate/export setting."""
    blob = json.dumps(target.settings(), sort_keys=True, default=str).encode()
    return f"{target.name}-r{target.revision}-{hashlib.sha256(blob).hexdigest()[:10]}"


def _reasons(reasons: Sequence[str], ok: str) -> str:
    return "\n".join(reasons) or ok


@dataclass(frozen=True)
class OnnxTarget:
    """The champion as ONNX (pinned opset, dynamic batch), verified against torch."""

    gate: ParityGate = ParityGate()
    name: str = "onnx_model"
    revision: int = 1
    gates: tuple[str, ...] = ("onnx_parity",)
    warn_gates: tuple[str, ...] = ()
    needs_onnx: bool = False
    needs_calibration: bool = False
    GATE_TEXT: ClassVar[str] = "ONNX Runtime matches torch on the test split"

    def settings(self) -> dict[str, Any]:
        from edge_export.onnx import OPSET

        return {"opset": OPSET, "gate": asdict(self.gate)}

    def export(self, inputs: ExportInputs) -> ExportOutcome:
        from edge_export.onnx import OPSET, export_onnx, verify_parity

        local = export_onnx(
            inputs.model, inputs.workdir / "model.onnx", image_size=inputs.image_size
        )
        parity = verify_parity(inputs.model, local, inputs.x, **asdict(self.gate))
        return ExportOutcome(
            files={"model.onnx": local},
            gates=[
                GateResult(
                    "onnx_parity",
                    parity.passed,
                    {
                        "max_abs_logit_diff": parity.max_abs_logit_diff,
                        "top1_agreement": parity.top1_agreement,
                        "reasons": _reasons(parity.reasons, self.GATE_TEXT),
                    },
                )
            ],
            metadata={
                "opset": OPSET,
                "test_frames": parity.n,
                "max_abs_logit_diff": parity.max_abs_logit_diff,
                "top1_agreement": parity.top1_agreement,
            },
            latency={"onnx": local},
        )


@dataclass(frozen=True)
class Int8Target:
    """Static INT8 quantisation (QDQ, per-channel) calibrated on curated train frames, gated
    frame by frame against FP32."""

    gate: Int8Gate = Int8Gate()
    name: str = "int8_onnx"
    revision: int = 2  # 2: INT8 compared with FP32 frame by frame (McNemar, agreement floor)
    gates: tuple[str, ...] = ("int8_accuracy",)
    warn_gates: tuple[str, ...] = ()
    needs_onnx: bool = True
    needs_calibration: bool = True

    def settings(self) -> dict[str, Any]:
        return {"gate": asdict(self.gate)}

    def export(self, inputs: ExportInputs) -> ExportOutcome:
        from edge_export.int8 import quantize_int8, verify_accuracy
        from edge_export.runtime import Predictor

        assert inputs.fp32_onnx is not None and inputs.calib is not None
        local = quantize_int8(
            inputs.fp32_onnx,
            inputs.workdir / "model.int8.onnx",
            inputs.calib,
            method=inputs.options.get("calibration_method", "minmax"),
            activations=inputs.options.get("int8_activations", "uint8"),
        )
        ref, q = Predictor(inputs.fp32_onnx, "onnx"), Predictor(local, "int8")
        report = verify_accuracy(
            ref.logits(inputs.x), q.logits(inputs.x), inputs.y, inputs.classes,
            **asdict(self.gate),
        )  # fmt: skip
        return ExportOutcome(
            files={"model.int8.onnx": local},
            gates=[
                GateResult(
                    "int8_accuracy",
                    report.passed,
                    {
                        "drop_points": report.drop_points,
                        "per_class_recall_drop": report.per_class_recall_drop,
                        "reasons": _reasons(report.reasons, "within the allowance of FP32"),
                    },
                )
            ],
            metadata={
                "calibration_frames": len(inputs.calib),
                "fp32_accuracy": report.fp32_accuracy,
                "int8_accuracy": report.accuracy,
                "drop_points": report.drop_points,
            },
            latency={"onnx": inputs.fp32_onnx, "int8": local},
        )


@dataclass(frozen=True)
class OpenVinoTarget:
    """The champion as OpenVINO IR (FP32, gated against ONNX Runtime) and NNCF INT8 (a WARN
    gate: a failing INT8 IR is left out of the bundle, with the reason)."""

    parity: ParityGate = ParityGate()
    int8: Int8Gate = Int8Gate()
    name: str = "openvino_model"
    revision: int = 2
    gates: tuple[str, ...] = ("openvino_parity", "openvino_int8_accuracy")
    warn_gates: tuple[str, ...] = ("openvino_int8_accuracy",)
    needs_onnx: bool = True
    needs_calibration: bool = True

    def settings(self) -> dict[str, Any]:
        return {"parity": asdict(self.parity), "int8": asdict(self.int8)}

    def export(self, inputs: ExportInputs) -> ExportOutcome:
        from edge_export.int8 import verify_accuracy
        from edge_export.openvino import export_ir, quantize_ir, verify_parity
        from edge_export.runtime import Predictor

        assert inputs.fp32_onnx is not None and inputs.calib is not None
        xml = export_ir(inputs.fp32_onnx, inputs.workdir / "openvino" / "model.xml")
        xml8 = quantize_ir(
            inputs.fp32_onnx, inputs.workdir / "openvino_int8" / "model.xml", inputs.calib
        )
        parity = verify_parity(inputs.fp32_onnx, xml, inputs.x, **asdict(self.parity))
        ref_logits = Predictor(inputs.fp32_onnx, "onnx").logits(inputs.x)
        int8 = verify_accuracy(
            ref_logits, Predictor(xml8, "openvino").logits(inputs.x), inputs.y, inputs.classes,
            **asdict(self.int8),
        )  # fmt: skip
        files = {
            f"{folder}/{f.name}": f
            for folder, path in (("openvino", xml), ("openvino_int8", xml8))
            for f in (path, path.with_suffix(".bin"))
        }
        return ExportOutcome(
            files=files,
            gates=[
                GateResult(
                    "openvino_parity",
                    parity.passed,
                    {"reasons": _reasons(parity.reasons, "FP32 IR matches ONNX Runtime")},
                ),
                GateResult(
                    "openvino_int8_accuracy",
                    int8.passed,
                    {
                        "drop_points": int8.drop_points,
                        "reasons": _reasons(int8.reasons, "within 1 point of FP32"),
                    },
                    severity="WARN",
                ),
            ],
            metadata={
                "max_abs_logit_diff_vs_onnx": parity.max_abs_logit_diff,
                "top1_agreement_vs_onnx": parity.top1_agreement,
                "int8_drop_points": int8.drop_points,
            },
            latency={"openvino": xml, "openvino_int8": xml8},
        )

"""Edge export: the champion as ONNX, INT8 ONNX, OpenVINO and TensorRT, behind parity and accuracy
gates, packaged with its lineage into a signed edge bundle.

Every export is written under ``artifacts/exports/<model_version>/`` and checked on the
champion's own curated test split, through the preprocessing contract recorded in its
checkpoint (the same one the edge runner follows). Blocking checks stop a bad export before
``edge_bundle``: ``onnx_parity``, ``int8_accuracy``, ``openvino_parity`` (the FP32 IR). NNCF's INT8
IR has its own WARN check, ``openvino_int8_accuracy``: when it fails, the bundle ships without
that target and its manifest says why (one optional target never holds back the champion).
"""

import hashlib
import json
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.champion import fetch_export, latency_md, load_champion, store_export
from assets.provenance import unchanged, with_verdicts
from edge_export.targets import (
    ExportInputs,
    ExportTarget,
    Int8Target,
    OnnxTarget,
    OpenVinoTarget,
    version,
)
from lake import pools
from lake.storage import LensStorage


class ExportConfig(dg.Config):
    """How the champion is exported and how long the latency benchmark runs."""

    calibration_frames: int = Field(
        default=256, description="Curated train frames used to calibrate INT8 quantisation."
    )
    calibration_method: str = Field(
        default="minmax", description="INT8 calibration: minmax, percentile or entropy."
    )
    int8_activations: str = Field(
        default="uint8",
        description="INT8 activation type: uint8 (U8S8, what ONNX Runtime's x86 kernels fuse "
        "into QLinearConv: ~2.5x faster here) or int8 (S8S8: ORT leaves depthwise convs as "
        "DQ->float->Q on x86; the choice for ARM and TensorRT-style back ends).",
    )
    latency_iters: int = Field(default=50, description="Timed batch-1 inferences per target.")
    max_parity_frames: int = Field(
        default=512, description="Test frames used for parity and accuracy gates (0 = all)."
    )


def export_asset(target: ExportTarget, *, deps: list[str], kinds: set[str], description: str):
    """One export asset for ``target``: champion -> inputs -> export -> gates -> latency ->
    store; its code version is the target's (gate thresholds and export settings included)."""

    @dg.asset(
        pool=pools.GRAPH,
        name=target.name,
        deps=deps,
        group_name="edge",
        kinds=kinds,
        code_version=version(target),
        description=description,
        check_specs=[
            dg.AssetCheckSpec(
                gate,
                asset=target.name,
                blocking=gate not in target.warn_gates,
                description=GATE_TEXT[gate],
            )
            for gate in target.gates
        ],  # fmt: skip
    )
    def _export(context: dg.AssetExecutionContext, config: ExportConfig, storage: LensStorage):
        if (again := unchanged(context)) is not None:
            return again  # this champion is already exported under these gates
        champion = load_champion(storage)
        x, y = champion.inputs(storage, "test", max_frames=config.max_parity_frames)
        calib = None
        if target.needs_calibration:
            calib, _ = champion.inputs(storage, "train", max_frames=config.calibration_frames)
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = None
            if target.needs_onnx:
                fp32 = fetch_export(storage, champion.version, "model.onnx", Path(tmp) / "in")
            outcome = target.export(
                ExportInputs(
                    champion.model, champion.classes, champion.spec.image_size,  # type: ignore[attr-defined]
                    x, y, calib, fp32, Path(tmp), config.model_dump(),
                )
            )  # fmt: skip
            latency = latency_md(champion, x, config.latency_iters, **outcome.latency)
            stored = {
                name: store_export(storage, champion.version, path, name)
                for name, path in outcome.files.items()
            }
        verdicts = {g.name: g.passed for g in outcome.gates}
        return with_verdicts(
            dg.MaterializeResult(
                data_version=dg.DataVersion(
                    digest([sha for _, sha in stored.values()], version(target), verdicts)
                ),
                metadata={
                    "model_version": champion.version,
                    "files": dg.MetadataValue.json({k: v[0] for k, v in stored.items()}),
                    "sha256": dg.MetadataValue.json({k: v[1] for k, v in stored.items()}),
                    **outcome.metadata,
                    "latency": dg.MetadataValue.md(latency),
                },
                check_results=[
                    dg.AssetCheckResult(
                        check_name=g.name,
                        passed=g.passed,
                        severity=dg.AssetCheckSeverity(g.severity),
                        metadata=g.metadata,
                    )
                    for g in outcome.gates
                ],
            )
        )

    return _export


GATE_TEXT = {
    "onnx_parity": "ONNX Runtime matches torch on the test split: max |Δlogit| ≤ 1e-4, 100% top-1.",
    "int8_accuracy": "INT8 agrees with FP32's top-1 on ≥ 90% of the test split and loses no "
    "more than 1.0 point top-1 (2 points of any class's recall), unless the loss is within "
    "the noise (exact McNemar, α 0.05).",
    "openvino_parity": "The OpenVINO FP32 IR matches ONNX Runtime: max |Δlogit| ≤ 1e-4, 100% top-1.",
    "openvino_int8_accuracy": "NNCF INT8 loses ≤ 1 point top-1 and ≤ 2 points recall per class "
    "against FP32 (WARN: a failing INT8 IR is left out of the bundle, with the reason).",
}


def digest(*parts) -> str:
    """A sha256 over JSON-serialisable ``parts`` (a content-derived data version)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def export_assets(
    onnx: OnnxTarget | None = None,
    int8: Int8Target | None = None,
    openvino: OpenVinoTarget | None = None,
) -> list[dg.AssetsDefinition]:
    """The three gated export assets (targets with their gates: a test or a plant may pass
    other thresholds, and the code versions follow)."""
    onnx, int8, openvino = onnx or OnnxTarget(), int8 or Int8Target(), openvino or OpenVinoTarget()
    return [
        export_asset(onnx, deps=["model_evaluation"], kinds={"onnx"},
                     description="The champion exported to ONNX (pinned opset, dynamic batch), verified against torch."),
        export_asset(int8, deps=["onnx_model"], kinds={"onnx"},
                     description="Static INT8 quantisation (QDQ, per-channel) calibrated on curated train frames."),
        export_asset(openvino, deps=["onnx_model"], kinds={"openvino"},
                     description="The champion as OpenVINO IR (FP32) and NNCF INT8, for Intel CPUs and iGPUs."),
    ]  # fmt: skip


onnx_model, int8_onnx, openvino_model = export_assets()


@dg.asset(
    pool=pools.GRAPH,
    deps=["int8_onnx"],
    group_name="edge",
    kinds={"tensorrt"},
    output_required=False,
    code_version="tensorrt-r1",
)
def tensorrt_engine(context: dg.AssetExecutionContext, storage: LensStorage):
    """TensorRT engines (FP16, and INT8 from the quantised ONNX's explicit Q/DQ); skipped, with the
    reason, where TensorRT or an NVIDIA GPU is missing (never a fake engine)."""
    from edge_export.int8 import quantize_int8
    from edge_export.tensorrt import available, build_engine, verify_parity

    ok, reason = available()
    if not ok:
        context.log.warning(f"tensorrt_engine skipped: {reason}")
        yield dg.AssetObservation(asset_key="tensorrt_engine", metadata={"skipped": reason})
        return
    champion = load_champion(storage)
    x, _ = champion.inputs(storage, "test", max_frames=256)
    calib, _ = champion.inputs(storage, "train", max_frames=256)
    files, parity = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = fetch_export(storage, champion.version, "model.onnx", Path(tmp))
        # TensorRT takes only zero-point-0 Q/DQ: a symmetric copy for the INT8 engine
        sym = quantize_int8(
            fp32, Path(tmp) / "model.int8.sym.onnx", calib, symmetric_activations=True
        )
        for precision, onnx_path in (("fp16", fp32), ("int8", sym)):
            engine = build_engine(
                onnx_path, Path(tmp) / f"model.{precision}.plan", precision=precision
            )
            parity[precision] = verify_parity(onnx_path, engine, x, precision=precision)
            files[precision] = store_export(storage, champion.version, engine, engine.name)[0]
    if not all(p.passed for p in parity.values()):
        raise dg.Failure(
            "TensorRT parity with ONNX Runtime failed: "
            + "; ".join(r for p in parity.values() for r in p.reasons)
        )
    yield dg.MaterializeResult(
        asset_key="tensorrt_engine",
        metadata={"model_version": champion.version, "engines": dg.MetadataValue.json(files)},
    )

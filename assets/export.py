"""Edge export: the champion as ONNX, INT8 ONNX, OpenVINO and TensorRT, behind parity and accuracy
gates, packaged with its lineage into a signed edge bundle.

Every export is written under ``artifacts/exports/<model_version>/`` and checked on the
champion's own curated test split, through the preprocessing contract recorded in its
checkpoint (the same one the edge runner follows). Blocking checks stop a bad export before
``edge_bundle``: ``onnx_parity``, ``int8_accuracy``, ``openvino_parity`` (the FP32 IR). NNCF's INT8
IR has its own WARN check, ``openvino_int8_accuracy``: when it fails, the bundle ships without
that target and its manifest says why (one optional target never holds back the champion).
"""

import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.champion import fetch_export, latency_md, load_champion, store_export
from assets.memo import fingerprint, reuse
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


@dg.asset(
    deps=["model_evaluation"],
    group_name="edge",
    kinds={"onnx"},
    check_specs=[
        dg.AssetCheckSpec(
            "onnx_parity",
            asset="onnx_model",
            blocking=True,
            description="ONNX Runtime matches torch on the test split: max |Δlogit| ≤ 1e-4, 100% top-1.",
        )
    ],
)
def onnx_model(context: dg.AssetExecutionContext, config: ExportConfig, storage: LensStorage):
    """The champion exported to ONNX (pinned opset, dynamic batch), verified against torch."""
    from edge_export.onnx import OPSET, export_onnx, verify_parity

    champion = load_champion(storage)
    digest = fingerprint(champion.version, config.model_dump(), "onnx-v1")
    if (again := reuse(context, digest, checks=("onnx_parity",))) is not None:
        return again  # this champion is already exported with these settings
    x, _ = champion.inputs(storage, "test", max_frames=config.max_parity_frames)
    with tempfile.TemporaryDirectory() as tmp:
        local = export_onnx(
            champion.model,
            Path(tmp) / "model.onnx",
            image_size=champion.spec.image_size,  # type: ignore[attr-defined]
        )
        parity = verify_parity(champion.model, local, x)
        latency = latency_md(champion, x, config.latency_iters, onnx=local)
        uri, sha = store_export(storage, champion.version, local, "model.onnx")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha),
        metadata={
            "model_version": champion.version,
            "inputs_fingerprint": digest,
            "uri": uri,
            "sha256": sha,
            "opset": OPSET,
            "test_frames": parity.n,
            "max_abs_logit_diff": parity.max_abs_logit_diff,
            "top1_agreement": parity.top1_agreement,
            "latency": dg.MetadataValue.md(latency),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="onnx_parity",
                passed=parity.passed,
                metadata={
                    "max_abs_logit_diff": parity.max_abs_logit_diff,
                    "top1_agreement": parity.top1_agreement,
                    "reasons": "\n".join(parity.reasons),
                },
            )
        ],
    )


@dg.asset(
    deps=["onnx_model"],
    group_name="edge",
    kinds={"onnx"},
    check_specs=[
        dg.AssetCheckSpec(
            "int8_accuracy",
            asset="int8_onnx",
            blocking=True,
            description="INT8 agrees with FP32's top-1 on ≥ 90% of the test split and loses "
            "no more than 1.0 point top-1 (2 points of any class's recall), unless the loss is "
            "within the noise (exact McNemar, α 0.05).",
        )
    ],
)
def int8_onnx(context: dg.AssetExecutionContext, config: ExportConfig, storage: LensStorage):
    """Static INT8 quantisation (QDQ, S8S8, per-channel) calibrated on curated train frames."""
    from edge_export.int8 import quantize_int8, verify_accuracy
    from edge_export.runtime import Predictor

    champion = load_champion(storage)
    digest = fingerprint(champion.version, config.model_dump(), "int8-v2")
    if (again := reuse(context, digest, checks=("int8_accuracy",))) is not None:
        return again  # this champion is already exported with these settings
    x, y = champion.inputs(storage, "test", max_frames=config.max_parity_frames)
    calib, _ = champion.inputs(storage, "train", max_frames=config.calibration_frames)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = fetch_export(storage, champion.version, "model.onnx", Path(tmp))
        local = quantize_int8(
            fp32,
            Path(tmp) / "model.int8.onnx",
            calib,
            method=config.calibration_method,  # type: ignore[arg-type]
            activations=config.int8_activations,  # type: ignore[arg-type]
        )
        ref, q = Predictor(fp32, "onnx"), Predictor(local, "int8")
        report = verify_accuracy(ref.logits(x), q.logits(x), y, champion.classes)
        latency = latency_md(champion, x, config.latency_iters, onnx=fp32, int8=local)
        uri, sha = store_export(storage, champion.version, local, "model.int8.onnx")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha),
        metadata={
            "model_version": champion.version,
            "inputs_fingerprint": digest,
            "uri": uri,
            "sha256": sha,
            "calibration_frames": len(calib),
            "fp32_accuracy": report.fp32_accuracy,
            "int8_accuracy": report.accuracy,
            "drop_points": report.drop_points,
            "latency": dg.MetadataValue.md(latency),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="int8_accuracy",
                passed=report.passed,
                metadata={
                    "drop_points": report.drop_points,
                    "per_class_recall_drop": dg.MetadataValue.json(report.per_class_recall_drop),
                    "reasons": "\n".join(report.reasons),
                },
            )
        ],
    )


@dg.asset(
    deps=["onnx_model"],
    group_name="edge",
    kinds={"openvino"},
    check_specs=[
        dg.AssetCheckSpec(
            "openvino_parity",
            asset="openvino_model",
            blocking=True,
            description="The OpenVINO FP32 IR matches ONNX Runtime: max |Δlogit| ≤ 1e-4, 100% top-1.",
        ),
        dg.AssetCheckSpec(
            "openvino_int8_accuracy",
            asset="openvino_model",
            description="NNCF INT8 loses ≤ 1 point top-1 and ≤ 2 points recall per class against "
            "FP32 (WARN: a failing INT8 IR is left out of the bundle, with the reason).",
        ),
    ],
)
def openvino_model(context: dg.AssetExecutionContext, config: ExportConfig, storage: LensStorage):
    """The champion as OpenVINO IR (FP32) and NNCF INT8, for Intel CPUs and iGPUs."""
    from edge_export.int8 import verify_accuracy
    from edge_export.openvino import export_ir, quantize_ir, verify_parity
    from edge_export.runtime import Predictor

    champion = load_champion(storage)
    digest = fingerprint(champion.version, config.model_dump(), "openvino-v2")
    if (
        again := reuse(context, digest, checks=("openvino_parity", "openvino_int8_accuracy"))
    ) is not None:
        return again  # this champion is already exported with these settings
    x, y = champion.inputs(storage, "test", max_frames=config.max_parity_frames)
    calib, _ = champion.inputs(storage, "train", max_frames=config.calibration_frames)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = fetch_export(storage, champion.version, "model.onnx", Path(tmp))
        xml = export_ir(fp32, Path(tmp) / "openvino" / "model.xml")
        xml8 = quantize_ir(fp32, Path(tmp) / "openvino_int8" / "model.xml", calib)
        parity = verify_parity(fp32, xml, x)
        ref_logits = Predictor(fp32, "onnx").logits(x)
        int8 = verify_accuracy(
            ref_logits, Predictor(xml8, "openvino").logits(x), y, champion.classes
        )
        latency = latency_md(champion, x, config.latency_iters, openvino=xml, openvino_int8=xml8)
        stored = {}
        for folder, path in (("openvino", xml), ("openvino_int8", xml8)):
            for f in (path, path.with_suffix(".bin")):
                stored[f"{folder}/{f.name}"] = store_export(
                    storage, champion.version, f, f"{folder}/{f.name}"
                )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(
            stored["openvino_int8/model.xml"][1] + stored["openvino/model.xml"][1][:16]
        ),
        metadata={
            "model_version": champion.version,
            "inputs_fingerprint": digest,
            "files": dg.MetadataValue.json({k: v[0] for k, v in stored.items()}),
            "max_abs_logit_diff_vs_onnx": parity.max_abs_logit_diff,
            "top1_agreement_vs_onnx": parity.top1_agreement,
            "int8_drop_points": int8.drop_points,
            "latency": dg.MetadataValue.md(latency),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="openvino_parity",
                passed=parity.passed,
                metadata={"reasons": "\n".join(parity.reasons) or "FP32 IR matches ONNX Runtime"},
            ),
            dg.AssetCheckResult(
                check_name="openvino_int8_accuracy",
                passed=int8.passed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "drop_points": int8.drop_points,
                    "reasons": "\n".join(int8.reasons) or "within 1 point of FP32",
                },
            ),
        ],
    )


@dg.asset(deps=["int8_onnx"], group_name="edge", kinds={"tensorrt"}, output_required=False)
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

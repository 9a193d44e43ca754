"""Edge export: the champion as ONNX, INT8 ONNX, OpenVINO and TensorRT, behind parity and accuracy
gates, packaged with its lineage into a signed edge bundle.

Every export is written under ``artifacts/exports/<model_version>/`` and checked on the
champion's own curated test split, through the preprocessing contract recorded in its
checkpoint (the same one the edge runner follows). Blocking checks stop a bad export before
``edge_bundle``: ``onnx_parity``, ``int8_accuracy``, ``openvino_parity`` (the FP32 IR). NNCF's INT8
IR has its own WARN check, ``openvino_int8_accuracy``: when it fails, the bundle ships without
that target and its manifest says why (one optional target never holds back the champion).
"""

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from assets.memo import fingerprint, latest_check_evaluation, reuse
from assets.models import split_images
from assets.tables import md_table
from orchestration.storage import LensStorage

EXPORTS = "exports"


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


@dataclass
class Champion:
    """The registry's champion with its verified checkpoint and preprocessing contract."""

    record: object
    model: object
    classes: list[str]
    spec: object

    @property
    def version(self) -> str:
        return self.record.model_version  # type: ignore[attr-defined]

    def inputs(
        self, storage: LensStorage, split: str, *, max_frames: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """float32 (N, 3, S, S) model inputs and int (N,) labels of one split of the champion's
        own dataset version, made with its own preprocessing contract; an even subsample of
        ``max_frames`` when larger (0: all)."""
        images, labels, _ = split_images(
            storage,
            split,
            self.classes,
            self.spec,
            version=self.record.dataset_version,  # type: ignore[attr-defined]
        )
        if max_frames and len(images) > max_frames:
            keep = np.linspace(0, len(images) - 1, max_frames).round().astype(int)
            images, labels = images[keep], labels[keep]
        return self.spec.normalize(images), labels  # type: ignore[attr-defined]


def load_champion(storage: LensStorage) -> Champion:
    """The registry's champion and its checkpoint (sha256-verified)."""
    from training.checkpoint import checkpoint_spec, load_checkpoint
    from training.registry import ModelRegistry

    registry = ModelRegistry(storage.table_uri("models"), storage_options=storage.storage_options())
    record = registry.champion()
    if record is None:
        raise dg.Failure(
            "no champion in the model registry yet: materialise model_evaluation first"
        )
    model, meta = load_checkpoint(
        storage.fetch_local([record.checkpoint_uri])[0], expected_sha256=record.checkpoint_sha256
    )
    return Champion(record, model, json.loads(meta["classes"]), checkpoint_spec(meta))


def _export_uri(storage: LensStorage, version: str, name: str) -> str:
    return storage.uri("artifacts", EXPORTS, version, name)


def _store(storage: LensStorage, version: str, local: Path, name: str) -> tuple[str, str]:
    """Copy one export file into the artifacts store; (uri, sha256)."""
    from training.checkpoint import file_sha256

    uri = _export_uri(storage, version, name)
    storage.write_bytes(uri, local.read_bytes())
    return uri, file_sha256(local)


def _fetch_export(storage: LensStorage, version: str, name: str, into: Path) -> Path:
    """A stored export file copied to ``into`` (a local temp dir)."""
    uri = _export_uri(storage, version, name)
    try:
        data = storage.read_bytes(uri)
    except (FileNotFoundError, OSError) as e:
        raise dg.Failure(f"{uri} is missing: materialise the export that writes it first") from e
    local = into / name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return local


def _latency(champion: Champion, x: np.ndarray, iters: int, **exports: Path) -> str:
    """Markdown latency table: torch eager beside each exported file (``target=path``), batch 1
    and batch 32 on the same real test inputs, plus the physical reference."""
    from edge_export.latency import (
        benchmark_predictor,
        latency_table,
        physical_reference,
        torch_benchmark,
    )

    x1, xb = x[:1], x[:32]
    reports = [torch_benchmark(champion.model, x1, xb, warmup=5, iters=iters)]
    reports += [
        benchmark_predictor(
            path,
            "openvino" if name.startswith("openvino") else name,
            x1,
            xb,
            warmup=5,
            iters=iters,
            name=name,
        )
        for name, path in exports.items()
    ]
    ref = physical_reference(champion.model, champion.spec.image_size)  # type: ignore[attr-defined]
    return latency_table(reports, reference=ref)


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
        latency = _latency(champion, x, config.latency_iters, onnx=local)
        uri, sha = _store(storage, champion.version, local, "model.onnx")
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
            description="INT8 loses ≤ 1.0 point top-1 against FP32 on the test split, "
            "and no class loses > 2 points recall.",
        )
    ],
)
def int8_onnx(context: dg.AssetExecutionContext, config: ExportConfig, storage: LensStorage):
    """Static INT8 quantisation (QDQ, S8S8, per-channel) calibrated on curated train frames."""
    from edge_export.int8 import quantize_int8, verify_accuracy
    from edge_export.runtime import Predictor

    champion = load_champion(storage)
    digest = fingerprint(champion.version, config.model_dump(), "int8-v1")
    if (again := reuse(context, digest, checks=("int8_accuracy",))) is not None:
        return again  # this champion is already exported with these settings
    x, y = champion.inputs(storage, "test", max_frames=config.max_parity_frames)
    calib, _ = champion.inputs(storage, "train", max_frames=config.calibration_frames)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = _fetch_export(storage, champion.version, "model.onnx", Path(tmp))
        local = quantize_int8(
            fp32,
            Path(tmp) / "model.int8.onnx",
            calib,
            method=config.calibration_method,  # type: ignore[arg-type]
            activations=config.int8_activations,  # type: ignore[arg-type]
        )
        ref, q = Predictor(fp32, "onnx"), Predictor(local, "int8")
        report = verify_accuracy(ref.logits(x), q.logits(x), y, champion.classes)
        latency = _latency(champion, x, config.latency_iters, onnx=fp32, int8=local)
        uri, sha = _store(storage, champion.version, local, "model.int8.onnx")
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
    digest = fingerprint(champion.version, config.model_dump(), "openvino-v1")
    if (
        again := reuse(context, digest, checks=("openvino_parity", "openvino_int8_accuracy"))
    ) is not None:
        return again  # this champion is already exported with these settings
    x, y = champion.inputs(storage, "test", max_frames=config.max_parity_frames)
    calib, _ = champion.inputs(storage, "train", max_frames=config.calibration_frames)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = _fetch_export(storage, champion.version, "model.onnx", Path(tmp))
        xml = export_ir(fp32, Path(tmp) / "openvino" / "model.xml")
        xml8 = quantize_ir(fp32, Path(tmp) / "openvino_int8" / "model.xml", calib)
        parity = verify_parity(fp32, xml, x)
        ref_logits = Predictor(fp32, "onnx").logits(x)
        int8 = verify_accuracy(
            ref_logits, Predictor(xml8, "openvino").logits(x), y, champion.classes
        )
        latency = _latency(champion, x, config.latency_iters, openvino=xml, openvino_int8=xml8)
        stored = {}
        for folder, path in (("openvino", xml), ("openvino_int8", xml8)):
            for f in (path, path.with_suffix(".bin")):
                stored[f"{folder}/{f.name}"] = _store(
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
        fp32 = _fetch_export(storage, champion.version, "model.onnx", Path(tmp))
        # TensorRT takes only zero-point-0 Q/DQ: a symmetric copy for the INT8 engine
        sym = quantize_int8(
            fp32, Path(tmp) / "model.int8.sym.onnx", calib, symmetric_activations=True
        )
        for precision, onnx_path in (("fp16", fp32), ("int8", sym)):
            engine = build_engine(
                onnx_path, Path(tmp) / f"model.{precision}.plan", precision=precision
            )
            parity[precision] = verify_parity(onnx_path, engine, x, precision=precision)
            files[precision] = _store(storage, champion.version, engine, engine.name)[0]
    if not all(p.passed for p in parity.values()):
        raise dg.Failure(
            "TensorRT parity with ONNX Runtime failed: "
            + "; ".join(r for p in parity.values() for r in p.reasons)
        )
    yield dg.MaterializeResult(
        asset_key="tensorrt_engine",
        metadata={"model_version": champion.version, "engines": dg.MetadataValue.json(files)},
    )


BUNDLE_FILES = {  # archive name -> export file name
    "model.onnx": "model.onnx",
    "model.int8.onnx": "model.int8.onnx",
    "openvino/model.xml": "openvino/model.xml",
    "openvino/model.bin": "openvino/model.bin",
    "openvino/model.int8.xml": "openvino_int8/model.xml",
    "openvino/model.int8.bin": "openvino_int8/model.bin",
}


class BundleConfig(dg.Config):
    """The alarm rules shipped in the bundle (versioned with it)."""

    min_confidence: float = Field(default=0.6, description="A defect frame counts above this.")
    raise_after: int = Field(
        default=3, description="Consecutive defect frames that raise an alarm."
    )
    clear_after: int = Field(default=5, description="Consecutive good frames that clear it.")


@dg.asset(
    deps=["onnx_model", "int8_onnx", "openvino_model"],
    group_name="edge",
    kinds={"delta", "tar"},
)
def edge_bundle(context: dg.AssetExecutionContext, config: BundleConfig, storage: LensStorage):
    """The champion's exports, preprocessing contract, alarm rules, model card and lineage in one
    signed ``bundle.tar.gz`` (sha256 of every file and every source video in its manifest)."""
    from edge_export.bundle import build_bundle, load_signing_key
    from edge_export.postprocess import AlarmRules
    from edge_export.tensorrt import available

    champion = load_champion(storage)
    record = champion.record
    trt_ok, trt_reason = available()
    targets = {"onnx": "ok", "int8": "ok", "openvino": "ok", "openvino_int8": "ok"}
    ov8 = latest_check_evaluation(
        context.instance, dg.AssetCheckKey(dg.AssetKey("openvino_model"), "openvino_int8_accuracy")
    )
    if ov8 is not None and not ov8.passed:
        reasons = ov8.metadata.get("reasons")
        targets["openvino_int8"] = "skipped: failed openvino_int8_accuracy: " + str(
            reasons.value if reasons is not None else "accuracy gate"
        ).replace("\n", "; ")
    targets["tensorrt"] = "ok" if trt_ok else f"skipped: {trt_reason}"
    rules = AlarmRules(
        min_confidence=config.min_confidence,
        raise_after=config.raise_after,
        clear_after=config.clear_after,
    ).resolved(champion.classes)
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            name: _fetch_export(storage, champion.version, src, Path(tmp) / "in")
            for name, src in BUNDLE_FILES.items()
            if targets["openvino_int8"] == "ok" or not src.startswith("openvino_int8/")
        }
        info = build_bundle(
            Path(tmp) / "bundle.tar.gz",
            files=files,
            model_version=champion.version,
            classes=champion.classes,
            preprocess=champion.spec,
            postprocess=rules,
            model_card=_model_card(context, record),
            lineage=_lineage(storage, record),
            targets=targets,
            signing_key=load_signing_key(),
            created_at=record.created_at,  # rebuilding the same model gives the same sha256
        )
        uri = storage.uri("artifacts", "bundles", champion.version, "bundle.tar.gz")
        storage.write_bytes(uri, info.path.read_bytes())
    signed = info.manifest["signature"]["algorithm"] != "none"
    row = pl.DataFrame(
        {
            "model_version": [champion.version],
            "uri": [uri],
            "sha256": [info.sha256],
            "targets": [json.dumps(targets, sort_keys=True)],
            "signed": [signed],
            "created_at": [datetime.now(UTC)],
        }
    )
    version = storage.write_table(
        row, "edge_bundles", replace_where=storage.eq_predicate("model_version", champion.version)
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(info.sha256),
        metadata={
            "model_version": champion.version,
            "uri": uri,
            "sha256": info.sha256,
            "signed": signed if signed else "no: set LENSLINE_SIGNING_KEY(_FILE) to sign",
            "targets": dg.MetadataValue.json(targets),
            "files": dg.MetadataValue.json(info.manifest["files"]),
            "edge_bundles_version": version,
            "try_it": dg.MetadataValue.md(
                f"```\nlensline-edge run {uri} <video or folder> --out predictions.jsonl\n```"
            ),
        },
    )


def _gates(context: dg.AssetExecutionContext) -> dict[str, bool]:
    """The latest result of every export gate, as the bundle's model card records it."""
    out = {}
    for asset, check in (
        ("model_evaluation", "promotion_gate"),
        ("onnx_model", "onnx_parity"),
        ("int8_onnx", "int8_accuracy"),
        ("openvino_model", "openvino_parity"),
        ("openvino_model", "openvino_int8_accuracy"),
    ):
        evaluation = latest_check_evaluation(
            context.instance, dg.AssetCheckKey(dg.AssetKey(asset), check)
        )
        out[f"{asset}/{check}"] = bool(evaluation is not None and evaluation.passed)
    return out


def _model_card(context: dg.AssetExecutionContext, record) -> dict:
    metrics = record.metrics or {}
    return {
        "model_version": record.model_version,
        "metrics": {
            k: metrics.get(k) for k in ("accuracy", "false_reject_rate", "escape_rate", "ece", "n")
        },
        "per_class": metrics.get("per_class", {}),
        "gates_passed": _gates(context),
        "known_limits": [
            "trained on the curated frames of the dataset version in the lineage; drift in lighting, "
            "viewpoint or product look outside them is not covered (see the drift checks)",
            "frame-level classifier: alarms rely on the bundle's alarm rules over consecutive frames",
        ],
    }


def _lineage(storage: LensStorage, record) -> dict:
    """Model, dataset, label and code versions and the sha256 of every source video."""
    dataset = storage.read_table("dataset", version=record.dataset_version)
    videos = storage.read_table("videos").filter(
        pl.col("video_id").is_in(dataset["video_id"].unique().implode())
    )
    return {
        "model_version": record.model_version,
        "dataset_version": record.dataset_version,
        "label_version": record.label_version,
        "code_version": record.code_version,
        "parent_version": record.parent_version,
        "source_videos": dict(zip(videos["video_id"], videos["sha256"], strict=True)),
    }


SHADOW_COLUMNS = [
    "video",
    "frame_index",
    "model_version",
    "label",
    "confidence",
    "shadow_model_version",
    "shadow_label",
    "shadow_confidence",
]


@dg.asset(group_name="edge", kinds={"delta"})
def shadow_comparison(context: dg.AssetExecutionContext, storage: LensStorage):
    """Champion vs shadow predictions from the edge runners' JSONL in landing/shadow: agreement,
    per-class disagreement and the frames where they differ (promotion evidence)."""
    from edge_export.shadow import compare_shadow, read_jsonl

    files = storage.list_files("landing", "shadow", suffixes=(".jsonl",))
    rows: list[dict] = []
    for f in files:
        with storage.local_path(f.uri) as local:
            rows += [{**r, "source": f.key} for r in read_jsonl(local) if r.get("shadow_label")]
    if not rows:  # nothing to compare yet: say how to get evidence, write nothing
        return dg.MaterializeResult(
            metadata={
                "frames": 0,
                "how": f"run `lensline-edge run CHAMPION_BUNDLE INPUT --shadow CHALLENGER_BUNDLE "
                f"--out X.jsonl` on the line and drop X.jsonl in {storage.uri('landing', 'shadow')}",
            },
            data_version=dg.DataVersion("empty"),
        )
    result = compare_shadow(rows)
    table = pl.DataFrame([{c: r.get(c) for c in [*SHADOW_COLUMNS, "source"]} for r in rows])
    version = storage.write_table(table, "shadow_results", skip_unchanged=True)
    pairs = pl.DataFrame(result["pairs"]) if result["pairs"] else pl.DataFrame()
    return dg.MaterializeResult(
        metadata={
            "frames": result["frames"],
            "agreement_rate": result["agreement_rate"],
            "disagreements": result["disagreement_count"],
            "files": len(files),
            "by_model_pair": dg.MetadataValue.md(md_table(pairs)),
            "per_class": dg.MetadataValue.json(result["per_class"]),
            "shadow_results_version": version,
        },
        data_version=dg.DataVersion(str(version)),
    )

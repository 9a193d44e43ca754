"""edge_bundle and shadow_comparison: the champion's exports packaged with their lineage into a
signed bundle (``artifacts/bundles/<version>/bundle.tar.gz`` + the ``edge_bundles`` table, one
row per model version, replaced in one commit), and the edge runners' shadow A/B logs compared
(``shadow_results``, rewritten from the files present)."""

import tempfile
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from assets.champion import fetch_export, load_champion
from assets.line_config import KEYS as LINE_KEYS
from assets.line_config import bundle_rules
from assets.provenance import code_version, latest_check
from assets.tables import md_table
from lake import pools
from lake.storage import LensStorage


class BundleConfig(dg.Config):
    """The alarm rules shipped in the bundle (versioned with it). Class roles: leave
    ``ok_classes`` and ``defect_classes`` unset to take the known ok names (good, ok, pass,
    normal, no defect, ...) as ok and the rest as defects; a class map with none ships with
    alarms off and a WARN ``alarm_rules`` check that says so."""

    ok_classes: list[str] | None = Field(
        default=None, description="Classes that clear an alarm (unset: the known ok names)."
    )
    defect_classes: list[str] | None = Field(
        default=None, description="Classes that raise an alarm (unset: every other class)."
    )
    ignore_classes: list[str] = Field(
        default=[], description="Classes that carry no vote (e.g. empty belt, hand)."
    )

    min_confidence: float = Field(default=0.6, description="A defect frame counts above this.")
    raise_after: int = Field(
        default=3, description="Consecutive defect frames that raise an alarm."
    )
    clear_after: int = Field(default=5, description="Consecutive good frames that clear it.")


@dg.asset(
    pool=pools.GRAPH,
    deps=["onnx_model", "int8_onnx", "openvino_model", LINE_KEYS["classes"]],
    group_name="edge",
    kinds={"delta", "tar"},
    check_specs=[
        dg.AssetCheckSpec(
            "alarm_rules",
            asset="edge_bundle",
            description="The bundle's alarm rules can raise and clear alarms (WARN: alarms off, "
            "with the reason and how to turn them on).",
        )
    ],
    code_version=code_version("edge_bundle", 1, BundleConfig().model_dump()),
)
def edge_bundle(context: dg.AssetExecutionContext, config: BundleConfig, storage: LensStorage):
    """The champion's exports, preprocessing contract, alarm rules, model card and lineage in one
    signed ``bundle.tar.gz`` (sha256 of every file and every source video in its manifest)."""
    from edge_export.bundle import load_signing_key
    from edge_export.bundle.package import bundle_files, bundle_targets, package_bundle
    from edge_export.tensorrt import available

    champion = load_champion(storage)
    failure = _gate_failure(context, "openvino_model", "openvino_int8_accuracy")
    targets = bundle_targets(tensorrt=available(), openvino_int8_failure=failure)
    rules, line = _alarm_rules(storage, config, champion.classes)
    if not rules.enabled:
        context.log.warning(f"edge bundle ships with alarms off: {rules.disabled_reason}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: fetch_export(storage, champion.version, src, Path(tmp) / "in")
                 for name, src in bundle_files(targets).items()}  # fmt: skip
        bundle = package_bundle(
            Path(tmp) / "bundle.tar.gz", files=files, record=champion.record,
            classes=champion.classes, preprocess=champion.spec, rules=rules, targets=targets,
            gates=_gates(context), source_videos=_source_videos(storage, champion.record),
            signing_key=load_signing_key(),
        )  # fmt: skip
        uri = storage.uri("artifacts", "bundles", champion.version, "bundle.tar.gz")
        storage.write_bytes(uri, bundle.info.path.read_bytes())
    row = pl.DataFrame({k: [v] for k, v in bundle.row(uri).items()})
    where = storage.eq_predicate("model_version", champion.version)
    version = storage.write_table(row, "edge_bundles", replace_where=where)
    try_it = f"```\nlensline-edge run {uri} <video or folder> --out predictions.jsonl\n```"
    return dg.MaterializeResult(
        data_version=dg.DataVersion(bundle.sha256),
        metadata={
            **{
                k: dg.MetadataValue.json(v) if isinstance(v, dict) else v
                for k, v in bundle.summary(uri).items()
            },
            "edge_bundles_version": version,
            "try_it": dg.MetadataValue.md(try_it),
            "alarm_roles": dg.MetadataValue.json(bundle.roles()),
            "line_config": line or "none (edge_bundle config)",
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="alarm_rules",
                passed=rules.enabled,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={**bundle.roles(), "reasons": rules.disabled_reason or "alarms on"},
            )
        ],
    )


def _alarm_rules(storage: LensStorage, config: BundleConfig, classes) -> tuple:
    """The bundle's alarm rules resolved against the champion's ``classes``, and the line
    version they come from (None: the asset's config). A line configuration in force takes
    precedence; one naming classes the champion lacks ships the bundle with alarms off."""
    from edge_export.postprocess import AlarmRules, RulesError

    line = bundle_rules(storage)
    if line is None:
        settings = {**config.model_dump(), "ignore_classes": tuple(config.ignore_classes)}
        return AlarmRules(**settings).resolved(classes), None
    kwargs, version = line
    rules = AlarmRules(**kwargs, version=version)
    try:
        return rules.resolved(classes), version
    except RulesError as e:
        return rules.disabled(
            f"line configuration {version} does not fit the champion: {e}"
        ), version


def _gate_failure(context: dg.AssetExecutionContext, asset: str, check: str) -> str | None:
    """Why the latest evaluation of ``check`` failed; None when it passed or never ran."""
    evaluation = latest_check(context.instance, asset, check)
    if evaluation is None or evaluation.passed:
        return None
    reasons = evaluation.metadata.get("reasons")
    return str(reasons.value if reasons is not None else "accuracy gate")


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
        evaluation = latest_check(context.instance, asset, check)
        out[f"{asset}/{check}"] = bool(evaluation is not None and evaluation.passed)
    return out


def _source_videos(storage: LensStorage, record) -> dict[str, str]:
    """``video_id -> sha256`` of every video behind the record's dataset version."""
    dataset = storage.read_table("dataset", version=record.dataset_version)
    videos = storage.read_table("videos").filter(
        pl.col("video_id").is_in(dataset["video_id"].unique().implode())
    )
    return dict(zip(videos["video_id"], videos["sha256"], strict=True))


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


@dg.asset(
    pool=pools.GRAPH,
    group_name="edge",
    kinds={"delta"},
    code_version=code_version("shadow_comparison", 1),
)
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

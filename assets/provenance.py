"""Skip expensive work whose inputs and code did not change, with Dagster's own data provenance.

Dagster records, with every materialisation, the asset's code version and the data version of
every input it was made from (:class:`dagster.DataProvenance`). When a step is asked to run
again (an explicit ``lensline run --select``, a run resumed after a kill) and both are still
the same, :func:`unchanged` re-emits that materialisation — its metadata, its data version and
its own checks' verdicts, which each asset records under ``check_verdicts`` — instead of
training or exporting again. Nothing is fingerprinted by hand: a new code version (a changed
gate threshold folded into it) or a new input data version always computes.
"""

import dagster as dg

VERDICTS = "check_verdicts"
_DATA_VERSION_TAG = "dagster/data_version"
_NEVER_OBSERVED = "INITIAL"  # the data version Dagster's provenance gives an input with no event


def _current_input_versions(context: dg.AssetExecutionContext) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key in context.assets_def.asset_deps[context.asset_key]:
        record = context.instance.get_latest_data_version_record(key)
        event = record.asset_materialization or record.asset_observation if record else None
        # no event: Dagster records such an input (a source never observed) as "INITIAL"
        out[key.to_user_string()] = (
            (event.tags or {}).get(_DATA_VERSION_TAG) if event else _NEVER_OBSERVED
        )
    return out


def unchanged(context: dg.AssetExecutionContext) -> dg.MaterializeResult | None:
    """The latest materialisation of this asset again when its code version and every input's
    data version are the ones it was made from; else None (compute)."""
    key = context.asset_key
    provenance = context.get_asset_provenance(key)
    code_version = context.assets_def.code_versions_by_key.get(key)
    if provenance is None or code_version is None or provenance.code_version != code_version:
        return None
    before = {k.to_user_string(): v.value for k, v in provenance.input_data_versions.items()}
    if not before or before != _current_input_versions(context):
        return None
    event = context.instance.get_latest_materialization_event(key)
    mat = event.asset_materialization if event is not None else None
    if (
        mat is None
        or VERDICTS not in mat.metadata
        and context.assets_def.check_specs_by_output_name
    ):
        return None  # made before verdicts were recorded: compute again
    verdicts = mat.metadata[VERDICTS].value if VERDICTS in mat.metadata else []
    version = (mat.tags or {}).get(_DATA_VERSION_TAG)
    context.log.info(f"code and inputs unchanged since run {event.run_id}: reusing its result")  # type: ignore[union-attr]
    return dg.MaterializeResult(
        metadata={**mat.metadata, "reused_from_run": event.run_id},  # type: ignore[union-attr]
        data_version=dg.DataVersion(version) if version else None,
        check_results=[
            dg.AssetCheckResult(
                check_name=v["check_name"],
                passed=v["passed"],
                severity=dg.AssetCheckSeverity(v["severity"]),
                metadata={**v["metadata"], "reused_from_run": event.run_id},  # type: ignore[union-attr]
            )
            for v in verdicts
        ],
    )


def last_metadata(context: dg.AssetExecutionContext) -> dict:
    """This asset's latest materialisation metadata as plain values (empty: none yet); e.g. the
    refresh state it recorded for the next run (training.incremental)."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    mat = event.asset_materialization if event is not None else None
    return {k: getattr(v, "value", v) for k, v in (mat.metadata if mat else {}).items()}


def with_verdicts(result: dg.MaterializeResult) -> dg.MaterializeResult:
    """``result`` with its check results recorded in its metadata (for :func:`unchanged`).
    Check metadata must be JSON-serialisable plain values."""
    verdicts = [
        {
            "check_name": c.check_name,
            "passed": c.passed,
            "severity": c.severity.value,
            "metadata": {k: getattr(v, "value", v) for k, v in (c.metadata or {}).items()},
        }
        for c in result.check_results or []
    ]
    metadata = {**(result.metadata or {}), VERDICTS: dg.MetadataValue.json(verdicts)}
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=result.data_version,
        check_results=result.check_results,
        tags=result.tags,
    )


def latest_check(instance: dg.DagsterInstance, asset: str, check: str):
    """The latest finished evaluation of an upstream asset's check (``passed``, ``metadata``),
    or None when it never finished (never ran, or planned in a run that is still going)."""
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey(asset), check)
    )
    evaluation = record.evaluation if record is not None else None
    return evaluation if hasattr(evaluation, "passed") else None


def code_version(name: str, revision: int, *settings) -> str:
    """An asset's Dagster code version: its name, a revision bumped when its logic changes, and
    a digest of the settings its result depends on (config defaults, gate thresholds), so that
    changing a threshold changes the code version and Dagster re-runs the asset."""
    import hashlib
    import json

    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return f"{name}-r{revision}-{hashlib.sha256(blob).hexdigest()[:10]}"

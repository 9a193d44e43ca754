"""Declarative automation: which assets rematerialise on their own, and when.

One policy, ``on_new_data``: an asset runs when an upstream asset's *data version* changed
(not merely when it was rematerialised: every Lensline asset reports a content-derived data
version, so a rerun on unchanged inputs changes nothing downstream) or when its own *code
version* changed (an upgrade of its logic, or of a gate threshold folded into it), when none of its
upstreams is missing or running, and only after every upstream blocking check passed (a
failed ``promotion_gate``, ``onnx_parity`` or ``int8_accuracy`` stops the chain). The
``line_config_*`` sources (group line_config) may never have been observed: no line applied
holds nothing back. The
conditions are Dagster's own (``AutomationCondition.eager``'s terms, with ``newly_updated``
replaced by ``data_version_changed`` and ``code_version_changed`` added to the trigger), evaluated by the automation sensor below, which runs by default.

The chain this drives: labels (new_labels_sensor, FiftyOne reviews) -> frame_embeddings ->
label_consensus -> label_issues -> curated_dataset -> trained_model -> model_evaluation ->
onnx_model -> int8_onnx / openvino_model -> edge_bundle -> deployments (republished), and model_evaluation ->
drift_reference (a new champion moves every camera's reference).
"""

import dagster as dg

from assets.line_config import KEYS as LINE_CONFIG_KEYS

AUTOMATED = (
    "frame_embeddings",
    "label_consensus",
    "label_issues",
    "curated_dataset",
    "fiftyone_dataset",
    "trained_model",
    "model_evaluation",
    "fiftyone_predictions",
    "onnx_model",
    "int8_onnx",
    "openvino_model",
    "tensorrt_engine",
    "edge_bundle",
    "deployments",
    "drift_reference",
    "fiftyone_queues",
    "capture_requests",  # a drift (landed video or heartbeats) asks the boxes for data by itself
)


def on_new_data() -> dg.AutomationCondition:
    """Eager on upstream data-version changes or a change of the asset's own code version,
    gated on upstream blocking checks."""
    cond = dg.AutomationCondition
    trigger = (
        cond.newly_missing()
        | cond.any_deps_updated().replace("newly_updated", cond.data_version_changed())
        | cond.code_version_changed()
    ).since_last_handled()
    return (
        cond.in_latest_time_window()
        & trigger
        & ~cond.any_deps_missing().ignore(dg.AssetSelection.assets(*LINE_CONFIG_KEYS.values()))
        & ~cond.any_deps_in_progress()
        & ~cond.in_progress()
        & cond.all_deps_blocking_checks_passed()
    ).with_label("on_new_data")


def automate(assets: list) -> list:
    """``assets`` with :func:`on_new_data` set on the :data:`AUTOMATED` keys."""
    keys = {dg.AssetKey(k) for k in AUTOMATED}
    return [
        a.map_asset_specs(
            lambda spec: (
                spec.replace_attributes(automation_condition=on_new_data())
                if spec.key in keys
                else spec
            )
        )
        if isinstance(a, dg.AssetsDefinition)
        else a
        for a in assets
    ]


automation_sensor = dg.AutomationConditionSensorDefinition(
    "lensline_automation",
    target=dg.AssetSelection.assets(*AUTOMATED),
    default_status=dg.DefaultSensorStatus.RUNNING,
    run_tags={"lensline/trigger": "automation", "lensline/reason": "upstream data changed"},
    minimum_interval_seconds=30,
    description="Rematerialises the lineage graph when upstream data versions change.",
)


CURSOR_KEY = "lensline/automation_cursor"


def _load_cursor(instance: dg.DagsterInstance):
    raw = instance.run_storage.get_cursor_values({CURSOR_KEY}).get(CURSOR_KEY)
    return dg.deserialize_value(raw) if raw else None


def has_cursor(instance: dg.DagsterInstance) -> bool:
    """Whether ``lensline run`` has evaluated the conditions in this instance before."""
    return bool(instance.run_storage.get_cursor_values({CURSOR_KEY}))


def _save_cursor(instance: dg.DagsterInstance, cursor) -> None:
    instance.run_storage.set_cursor_values({CURSOR_KEY: dg.serialize_value(cursor)})


def tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[dg.AssetKey]
) -> list[dg.AssetKey]:
    """One evaluation of the declared conditions of ``keys`` (what the automation sensor does
    on a tick), from the cursor ``lensline run`` keeps in the instance; returns the requested
    keys in ``keys`` order and stores the new cursor."""
    result = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=dg.AssetSelection.assets(*keys),
        cursor=_load_cursor(instance),
    )
    _save_cursor(instance, result.cursor)
    return [k for k in keys if result.get_num_requested(k)]

"""The declared automation (orchestration.automation), evaluated by Dagster itself against a real
instance: downstream runs only when an upstream *data version* changed, never when a rerun
changed nothing, and never past a failed blocking check."""

from __future__ import annotations

import dagster as dg

from orchestration.automation import AUTOMATED, automation_sensor, on_new_data

VERSION = {"value": "v1", "check_ok": True}


@dg.asset(
    check_specs=[dg.AssetCheckSpec("gate", asset="upstream", blocking=True)],
)
def upstream():
    return dg.MaterializeResult(
        data_version=dg.DataVersion(VERSION["value"]),
        check_results=[dg.AssetCheckResult(check_name="gate", passed=VERSION["check_ok"])],
    )


@dg.asset(deps=[upstream], automation_condition=on_new_data())
def downstream():
    return dg.MaterializeResult(data_version=dg.DataVersion("d"))


def _tick(instance, cursor=None):
    return dg.evaluate_automation_conditions(
        defs=[upstream, downstream], instance=instance, cursor=cursor
    )


def _materialize_upstream(instance, value: str, *, check_ok: bool = True):
    VERSION.update(value=value, check_ok=check_ok)
    dg.materialize([upstream], instance=instance, raise_on_error=False)


def test_reruns_with_unchanged_data_request_nothing_new_data_does():
    with dg.DagsterInstance.ephemeral() as instance:
        _materialize_upstream(instance, "v1")
        first = _tick(instance)  # eager() builds what *becomes* missing, not what never was
        assert first.get_num_requested(dg.AssetKey("downstream")) == 0
        dg.materialize([upstream, downstream], instance=instance, selection=[downstream])
        cursor = _tick(instance, first.cursor).cursor

        _materialize_upstream(instance, "v1")  # rematerialised, same content
        same = _tick(instance, cursor)
        assert same.get_num_requested(dg.AssetKey("downstream")) == 0

        _materialize_upstream(instance, "v2")  # the data really changed
        changed = _tick(instance, same.cursor)
        assert changed.get_num_requested(dg.AssetKey("downstream")) == 1


def test_a_failed_blocking_check_stops_the_chain():
    with dg.DagsterInstance.ephemeral() as instance:
        _materialize_upstream(instance, "v1")
        dg.materialize([upstream, downstream], instance=instance, selection=[downstream])
        cursor = _tick(instance).cursor
        _materialize_upstream(instance, "v3", check_ok=False)  # new data, failing gate
        blocked = _tick(instance, cursor)
        assert blocked.get_num_requested(dg.AssetKey("downstream")) == 0


def test_lensline_declares_the_policy_on_the_lineage_and_runs_the_sensor():
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in AUTOMATED:
        condition = graph.get(dg.AssetKey(key)).automation_condition
        assert condition is not None and condition.get_label() == "on_new_data", key
    for key in ("labels", "raw_video", "frames", "shadow_comparison"):  # sensor-driven
        assert graph.get(dg.AssetKey(key)).automation_condition is None
    assert automation_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def("lensline_automation").default_status == (
        dg.DefaultSensorStatus.RUNNING
    )


def test_a_drift_from_the_line_asks_the_boxes_for_data_by_itself(home):
    """``capture_requests`` is automated: a new ``line_drift`` (heartbeats) or ``drift_report``
    (landed video) data version requests it, so a detected drift becomes a capture request with
    no one asking (its own idempotence then decides whether a request is made)."""
    from orchestration.definitions import build_defs

    defs = build_defs()
    key = dg.AssetKey("capture_requests")
    tag = "dagster/data_version"
    select = dg.AssetSelection.assets(key)

    def evaluate(instance, cursor):
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=select, cursor=cursor
        )
        return result.get_num_requested(key), result.cursor

    def materialized(instance, asset, version, partition=None):
        event = dg.AssetMaterialization(asset, partition=partition, tags={tag: version})
        instance.report_runless_asset_event(event)

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", ["cam1__a"])
        materialized(instance, "drift_report", "d1", "cam1__a")
        materialized(instance, "line_drift", "l1")
        materialized(instance, key, "c1")
        requested, cursor = evaluate(instance, None)  # the first evaluation: the baseline
        assert requested == 0
        materialized(instance, "line_drift", "l2")  # the boxes' heartbeats drifted
        requested, cursor = evaluate(instance, cursor)
        assert requested == 1
        materialized(instance, key, "c2")
        requested, cursor = evaluate(instance, cursor)
        assert requested == 0
        materialized(instance, "drift_report", "d2", "cam1__a")  # a landed video drifted
        requested, cursor = evaluate(instance, cursor)
        assert requested == 1

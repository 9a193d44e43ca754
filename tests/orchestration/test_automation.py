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

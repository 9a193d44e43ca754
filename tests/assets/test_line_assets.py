"""The lines' configurations in the graph: one observable source asset per section, whose data
version changes only with its section, so Lensline's automation (on_new_data) requests exactly
the readers of the changed section; with no line applied nothing is held back."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.line_config import (
    KEYS,
    bundle_rules,
    for_camera,
    line_config_assets,
    line_config_sensor,
    with_line_crops,
)
from lake.line_config import apply
from lake.resources import PreprocessResource
from lake.storage import LensStorage
from orchestration.automation import on_new_data

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "line.yaml"


@dg.asset(deps=[KEYS["crop"]], automation_condition=on_new_data())
def crop_reader() -> dg.MaterializeResult:
    return dg.MaterializeResult(data_version=dg.DataVersion("c"))


@dg.asset(deps=[KEYS["classes"]], automation_condition=on_new_data())
def classes_reader() -> dg.MaterializeResult:
    return dg.MaterializeResult(data_version=dg.DataVersion("k"))


@dg.asset(deps=[KEYS["drift_policy"]], automation_condition=on_new_data())
def drift_reader() -> dg.MaterializeResult:
    return dg.MaterializeResult(data_version=dg.DataVersion("d"))


READERS = [crop_reader, classes_reader, drift_reader]


def _defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[*line_config_assets, *READERS], resources={"storage": LensStorage()}
    )


def _observe(instance: dg.DagsterInstance) -> dict[str, str]:
    """Run the observable source assets (what a Dagster observation run does)."""
    job = dg.define_asset_job("observe_lines", selection=dg.AssetSelection.assets(*KEYS.values()))
    defs = dg.Definitions(
        assets=line_config_assets, jobs=[job], resources={"storage": LensStorage()}
    )
    assert defs.resolve_job_def("observe_lines").execute_in_process(instance=instance).success
    out = {}
    for name, key in KEYS.items():
        record = instance.get_latest_data_version_record(key)
        assert record is not None and record.asset_observation is not None
        out[name] = record.asset_observation.tags["dagster/data_version"]
    return out


def _requested(defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None):
    result = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=dg.AssetSelection.assets(*READERS),
        cursor=cursor,
    )
    keys = {k.to_user_string() for k in (a.key for a in READERS) if result.get_num_requested(k)}
    return keys, result.cursor


@pytest.fixture
def line_file(home, tmp_path) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(EXAMPLE.read_text())
    return path


def test_a_changed_section_requests_only_its_readers(home, line_file):
    storage = LensStorage()
    defs = _defs()
    with dg.DagsterInstance.get() as instance:
        apply(storage, line_file, by="test")
        first = _observe(instance)
        assert dg.materialize(READERS, instance=instance).success
        _, cursor = _requested(defs, instance)
        again = _observe(instance)  # observed again, nothing changed: nothing requested
        assert again == first
        requested, cursor = _requested(defs, instance, cursor)
        assert requested == set()
        line_file.write_text(line_file.read_text().replace("clear_after: 5", "clear_after: 8"))
        assert apply(storage, line_file, by="test").version == 2
        second = _observe(instance)
        assert second["classes"] != first["classes"]
        assert {k: v for k, v in second.items() if k != "classes"} == {
            k: v for k, v in first.items() if k != "classes"
        }
        requested, _ = _requested(defs, instance, cursor)
        assert requested == {"classes_reader"}


def test_the_ui_shows_the_active_configuration(home, line_file):
    with dg.DagsterInstance.get() as instance:
        apply(LensStorage(), line_file, by="eng")
        _observe(instance)
        record = instance.get_latest_data_version_record(KEYS["classes"])
        metadata = record.asset_observation.metadata  # type: ignore[union-attr]
    assert metadata["lines"].value == {"line1": metadata["lines"].value["line1"]}
    assert metadata["lines"].value["line1"].startswith("v1 (")
    table = metadata["configuration"].value
    assert "| cam1 | b1 | rtsp://10.0.0.5:554/stream1 | item:112 |" in table
    assert "| scratch | defect | Scratch |" in table


UPSTREAM = {"version": "1"}


@dg.asset
def upstream() -> dg.MaterializeResult:
    return dg.MaterializeResult(data_version=dg.DataVersion(UPSTREAM["version"]))


@dg.asset(deps=[upstream, KEYS["crop"]], automation_condition=on_new_data())
def frames_reader() -> dg.MaterializeResult:
    return dg.MaterializeResult(data_version=dg.DataVersion("f"))


def test_no_line_applied_holds_nothing_back(home):
    """line_config never observed (no line applied): an upstream change still requests its
    reader, as it did before line configurations existed."""
    defs = dg.Definitions(
        assets=[*line_config_assets, upstream, frames_reader],
        resources={"storage": LensStorage()},
    )
    selection = dg.AssetSelection.assets(frames_reader)
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([upstream, frames_reader], instance=instance).success
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection
        )
        UPSTREAM["version"] = "2"
        assert dg.materialize([upstream], instance=instance).success
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor
        )
    assert result.get_num_requested(frames_reader.key) == 1


def test_the_sensor_reports_a_new_version_once(home, line_file):
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"storage": storage})
        assert isinstance(line_config_sensor(context), dg.SkipReason)  # nothing applied
        apply(storage, line_file, by="test")
        result = line_config_sensor(context)
        assert isinstance(result, dg.SensorResult)
        assert {e.asset_key for e in result.asset_events} == set(KEYS.values())
        context = dg.build_sensor_context(
            instance=instance, resources={"storage": storage}, cursor=result.cursor
        )
        assert isinstance(line_config_sensor(context), dg.SkipReason)


def test_readers_take_the_line_over_their_defaults(home, line_file):
    storage = LensStorage()
    spec = PreprocessResource().spec()
    assert with_line_crops(spec, storage) is spec and bundle_rules(storage) is None
    assert for_camera(storage, "cam1") is None
    apply(storage, line_file, by="test")
    crops = with_line_crops(spec, storage).cameras
    assert crops["cam2"].box == (40, 20, 160, 160) and crops["cam3"].policy == "full"
    rules = bundle_rules(storage)
    assert rules is not None and rules[1] == "line1-v1"
    assert rules[0]["defect_classes"] == ("scratch", "dent") and rules[0]["clear_after"] == 5
    line = for_camera(storage, "cam3")
    assert line is not None and line.drift.severity == "ERROR"


def _edge_tests():
    """tests/assets/test_edge.py, for its champion lake fixture (tests are not a package)."""
    import importlib.util

    path = Path(__file__).with_name("test_edge.py")
    spec = importlib.util.spec_from_file_location("_line_edge_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_EDGE = _edge_tests()
classes = _EDGE.classes
champion_lake = _EDGE.champion_lake

ROLES_YAML = """\
line: press2
cameras:
  - {id: cam1, box: b1, source: rtsp://127.0.0.1:8554/cam1}
classes:
  - {name: good, role: ok, display: Good}
  - {name: dent, role: defect, display: Dent}
alarm_rules: {raise_after: 2, clear_after: 7, min_confidence: 0.7}
"""


@pytest.mark.slow
def test_the_bundle_bakes_the_lines_alarm_rules(champion_lake, tmp_path):
    """edge_bundle through a real run: the line's roles and state-machine parameters are in the
    bundle, its rules version names the line version; a line naming a class the champion lacks
    ships with alarms off and a WARN check saying why, it does not fail the graph."""
    from edge_export.bundle import open_bundle

    storage, version, _ = champion_lake
    path = tmp_path / "line.yaml"
    path.write_text(ROLES_YAML)
    apply(storage, path, by="test")
    with dg.DagsterInstance.ephemeral() as instance:
        result = _EDGE._materialize(instance)
        assert result.success, [e.message for e in result.get_step_failure_events()]
        mat = result.asset_materializations_for_node("edge_bundle")[0]
        assert mat.metadata["line_config"].value == "press2-v1"
    row = storage.read_table("edge_bundles").row(0, named=True)  # type: ignore[union-attr]
    with open_bundle(row["uri"]) as bundle:
        rules = bundle.postprocess
    assert bundle.model_version == version and rules.version == "press2-v1"
    assert (rules.ok_classes, rules.defect_classes) == (("good",), ("dent",))
    assert (rules.raise_after, rules.clear_after, rules.min_confidence) == (2, 7, 0.7)
    path.write_text(ROLES_YAML.replace("name: dent", "name: scratch"))
    apply(storage, path, by="test")
    with dg.DagsterInstance.ephemeral() as instance:
        result = _EDGE._materialize(instance)
        assert result.success
        check = next(
            e for e in result.get_asset_check_evaluations() if e.check_name == "alarm_rules"
        )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "line configuration press2-v2 does not fit" in check.metadata["reasons"].value

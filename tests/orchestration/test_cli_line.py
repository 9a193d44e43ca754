"""``lensline line validate|apply|show``: exit codes (0, 2, 3), every problem on its own line with
file:line and field, a rejected apply writes nothing, apply twice is a no-op."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from lake.storage import LensStorage
from orchestration.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "line.yaml"

BAD = """\
line: line1
cameras:
  - id: cam1
    box: b1
    source: gopher://10.0.0.5/cam1
    shutter: 5
classes:
  - {name: good, role: fine}
mqtt:
  url: mqtt://broker:1883
  password: hunter2
label_budget: [
"""


def test_validate_the_example(capsys):
    assert main(["line", "validate", str(EXAMPLE)]) == 0
    assert "valid (line line1: 3 camera(s) on b1, b2" in capsys.readouterr().out


def test_validate_lists_every_problem_and_exits_3(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD.replace("label_budget: [\n", "label_budget: -2\n"))
    assert main(["line", "validate", str(bad)]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("rejected:") and "(5 problem(s))" in lines[0]
    assert [line.split(": ", 2)[:2] for line in lines[1:]] == [
        [f"{bad}:5", "cameras[0].source"],
        [f"{bad}:6", "cameras[0].shutter"],
        [f"{bad}:8", "classes[0].role"],
        [f"{bad}:11", "mqtt.password"],
        [f"{bad}:12", "label_budget"],
    ]


def test_validate_a_yaml_syntax_error_and_a_missing_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert main(["line", "validate", str(bad)]) == 3
    assert f"{bad}:13: not valid YAML" in capsys.readouterr().out
    assert main(["line", "validate", str(tmp_path / "none.yaml")]) == 3
    assert "cannot be read" in capsys.readouterr().out


def test_apply_show_and_a_rejected_apply(home, tmp_path, capsys):
    assert main(["line", "show"]) == 0
    assert "no line configuration applied yet" in capsys.readouterr().out
    assert main(["line", "apply", str(EXAMPLE), "--by", "eng"]) == 0
    out = capsys.readouterr().out
    assert "line line1: version 1 applied" in out and "b1.json (UNSIGNED" in out
    with dg.DagsterInstance.get() as instance:  # reported for `lensline run`'s automation
        record = instance.get_latest_data_version_record(dg.AssetKey("line_config_classes"))
        assert record is not None and record.asset_observation is not None
        classes_v1 = record.asset_observation.tags["dagster/data_version"]
    assert main(["line", "apply", str(EXAMPLE)]) == 0
    assert "unchanged, version 1 is already this configuration" in capsys.readouterr().out
    storage = LensStorage()
    table_version = storage.table_version("line_configs")
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("rtsp://", "smb://"))
    assert main(["line", "apply", str(bad)]) == 3
    assert "cameras[0].source: unsupported scheme" in capsys.readouterr().out
    assert storage.table_version("line_configs") == table_version
    changed = tmp_path / "line.yaml"
    changed.write_text(EXAMPLE.read_text().replace("severity: ERROR", "severity: WARN"))
    assert main(["line", "apply", str(changed)]) == 0
    assert "version 2 applied" in capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:  # a drift-only change: classes' version kept
        record = instance.get_latest_data_version_record(dg.AssetKey("line_config_classes"))
        assert record.asset_observation.tags["dagster/data_version"] == classes_v1  # type: ignore[union-attr]
    assert main(["line", "show"]) == 0
    out = capsys.readouterr().out
    assert "line line1 version 2" in out and "| cam3 | b2 |" in out and "severity **WARN**" in out
    assert main(["line", "show", "line1", "--version", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and shown["config"]["drift"]["severity"] == "ERROR"
    assert shown["applied_by"] == "eng"
    assert main(["line", "show", "line9"]) == 2
    assert main(["line", "show", "--version", "1"]) == 2

"""A line's configuration as data: the schema's errors (file, line, field), the line_configs
table (versions, idempotent apply, a rejected file writes nothing) and the signed box documents
the edge reads with edge_export.service.line_doc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_export.bundle import generate_signing_key, load_trusted_key
from edge_export.service.deploy import DocumentError
from edge_export.service.line_doc import read_line_document
from lake.line_config import (
    LineConfigError,
    active,
    active_all,
    apply,
    history,
    load,
    parse,
    section_sha,
)
from lake.storage import LensStorage

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "line.yaml"

GOOD = """\
line: line1
cameras:
  - id: cam1
    box: b1
    source: rtsp://127.0.0.1:8554/cam1
    crop: item:96
  - id: cam2
    box: b2
    source: demo/cam2.mp4
classes:
  - {name: good, role: ok}
  - {name: scratch, role: defect, display: Scratch}
drift: {severity: ERROR}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(LineConfigError) as info:
        parse(text, path="line.yaml")
    return [str(p) for p in info.value.problems]


def test_the_example_validates():
    config, _ = load(EXAMPLE)
    assert config.line == "line1" and config.boxes() == ["b1", "b2"]
    sources = [c.source for c in config.cameras]
    assert sources[0].startswith("rtsp://") and sources[2].endswith(".mp4")
    assert config.roles()["defect_classes"] == ["scratch", "dent"]
    assert config.drift.severity == "ERROR" and config.mqtt and config.opcua


def test_every_problem_names_file_line_and_field():
    text = GOOD.replace("rtsp://127.0.0.1:8554/cam1", "ftp://127.0.0.1/cam1")
    text = text.replace("crop: item:96", "crop: diagonal\n    zoom: 2")
    text = text.replace("role: defect,", "role: broken,")
    text = text.replace("id: cam2", "id: cam1")
    text += "label_budget: -1\nmqtt:\n  url: mqtt://broker:1883\n  password: hunter2\n"
    text += "alarm_rules: {raise_after: 0}\n"
    found = problems(text)
    assert found == [
        "line.yaml:5: cameras[0].source: unsupported scheme in 'ftp://127.0.0.1/cam1' "
        "(rtsp(s)://, tcp://, udp://, http(s)://, file://, /dev/videoN or a file path)",
        "line.yaml:6: cameras[0].crop: bad crop 'diagonal': use item[:side], fixed:x,y,w,h or full",
        "line.yaml:7: cameras[0].zoom: unknown field",
        "line.yaml:8: cameras[1].id: 'cam1' is used twice (cameras[0])",
        "line.yaml:13: classes[1].role: Input should be 'ok', 'defect' or 'ignore', got 'broken'",
        "line.yaml:15: label_budget: Input should be greater than or equal to 0, got -1",
        "line.yaml:18: mqtt.password: secrets are never accepted in a line config: set "
        "LENSLINE_MQTT_USERNAME / LENSLINE_MQTT_PASSWORD (and the key files) in the box's "
        "environment",
        "line.yaml:19: alarm_rules.raise_after: Input should be greater than or equal to 1, got 0",
    ]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("line: line1", "line: line one"), "line.yaml:1: line: String should match pattern"),
        (("    box: b1\n", ""), "line.yaml:3: cameras[0].box: missing (required)"),
        (("crop: item:96", "crop: item:96\n    fps: 0"), "line.yaml:7: cameras[0].fps: Input"),
        (("{severity: ERROR}", "{severity: FATAL}"), "line.yaml:13: drift.severity: Input"),
        (("role: ok}", "role: defect}"), "line.yaml:10: classes: the bundle would refuse"),
        (("- {name: good, role: ok}", "- {name: scratch, role: ok}"), "classes[1].name: 'scratch'"),
        (("drift:", "cameras: []\ndrift:"), "line.yaml:13: cameras: appears twice"),
        (
            ("drift:", "mqtt: {url: 'mqtt://b:1883', qos: 7}\ndrift:"),
            "line.yaml:13: mqtt.qos: must",
        ),
        (("drift:", "mqtt: {url: 'mqtt://u:pw@b:1883'}\ndrift:"), "mqtt.url: must not hold"),
        (("drift:", "opcua: {endpoint: 'http://x'}\ndrift:"), "line.yaml:13: opcua.endpoint:"),
        (("drift:", "capture: {max_per_hour: -3}\ndrift:"), "capture.max_per_hour: Input"),
        (("drift:", "api_token: abc\ndrift:"), "line.yaml:13: api_token: secrets are never"),
    ],
)
def test_error_catalogue(edit, expected):
    text = GOOD.replace(*edit)
    assert text != GOOD
    found = problems(text)
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_yaml_syntax_error_names_the_line():
    found = problems("line: a\ncameras: [\n  - id: x\n")
    assert len(found) == 1 and found[0].startswith("line.yaml:3: not valid YAML:"), found


def test_apply_versions_idempotence_and_rejection(home, tmp_path):
    storage = LensStorage()
    path = tmp_path / "line.yaml"
    path.write_text(GOOD)
    first = apply(storage, path, by="test")
    assert (first.version, first.changed) == (1, True)
    assert [Path(u).name for u in first.published] == ["b1.json", "b2.json"]
    again = apply(storage, path, by="test")  # identical file: nothing written
    assert (again.version, again.changed, again.published) == (1, False, [])
    table_version = storage.table_version("line_configs")
    path.write_text(GOOD.replace("source: demo", "bogus: 1\n    source: demo"))
    with pytest.raises(LineConfigError):
        apply(storage, path, by="test")
    assert storage.table_version("line_configs") == table_version  # rejected: nothing written
    path.write_text(GOOD.replace("crop: item:96", "crop: full"))
    second = apply(storage, path, by="test")
    assert (second.version, second.changed) == (2, True)
    assert active(storage, "line1").version == 2  # type: ignore[union-attr]
    assert [v.version for v in history(storage, "line1")] == [2, 1]
    assert [v.line for v in active_all(storage)] == ["line1"]
    before = section_sha([history(storage, "line1")[1].config], "classes")
    after = section_sha([active(storage, "line1").config], "classes")  # type: ignore[union-attr]
    assert before == after  # only the crop section changed
    crops = [section_sha([v.config], "crop") for v in history(storage, "line1")]
    assert crops[0] != crops[1]


def test_box_document_verifies_and_a_tampered_one_is_refused(home, tmp_path):
    storage = LensStorage()
    private, public = generate_signing_key()
    path = tmp_path / "line.yaml"
    path.write_text(GOOD)
    result = apply(storage, path, by="test", signing_key=private)
    assert result.signed
    data = (home / "lines" / "b1.json").read_bytes()
    doc = read_line_document(data, trusted=load_trusted_key(public))
    assert (doc.line, doc.version, doc.box) == ("line1", 1, "b1")
    assert [c.id for c in doc.cameras] == ["cam1"] and doc.camera("cam1").crop == "item:96"  # type: ignore[union-attr]
    assert doc.display_names() == {"good": "good", "scratch": "Scratch"}
    tampered = json.loads(data)
    tampered["payload"]["cameras"][0]["source"] = "rtsp://evil/stream"
    with pytest.raises(DocumentError, match="bad signature"):
        read_line_document(json.dumps(tampered).encode(), trusted=load_trusted_key(public))
    _, other = generate_signing_key()
    with pytest.raises(DocumentError, match="not by the trusted key"):
        read_line_document(data, trusted=load_trusted_key(other))
    deployments_doc = data.replace(b"lensline.line/1", b"lensline.deployments/1")
    with pytest.raises(DocumentError, match="unknown format"):
        read_line_document(deployments_doc, trusted=None)


def test_a_box_that_leaves_the_line_gets_an_empty_document(home, tmp_path):
    storage = LensStorage()
    path = tmp_path / "line.yaml"
    path.write_text(GOOD)
    apply(storage, path, by="test")
    path.write_text(GOOD.replace("box: b2", "box: b1"))
    result = apply(storage, path, by="test")
    assert sorted(Path(u).name for u in result.published) == ["b1.json", "b2.json"]
    b2 = read_line_document((home / "lines" / "b2.json").read_bytes(), trusted=None)
    assert b2.cameras == () and b2.version == 2

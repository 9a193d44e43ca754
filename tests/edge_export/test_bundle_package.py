"""edge_export.bundle.package: targets, files, model card and lineage of a champion's bundle,
and one packaged bundle read back (tiny ONNX model)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from edge_export.bundle import open_bundle
from edge_export.bundle.package import (
    BUNDLE_FILES,
    KNOWN_LIMITS,
    bundle_files,
    bundle_lineage,
    bundle_targets,
    model_card,
    package_bundle,
)
from edge_export.postprocess import AlarmRules
from training.preprocess import PreprocessSpec

RECORD = SimpleNamespace(
    model_version="m-abc",
    metrics={"accuracy": 0.9, "ece": 0.05, "n": 40, "macro_f1": 0.8,
             "per_class": {"good": {"recall": 0.95}}},
    dataset_version=4, label_version=7, code_version="c1", parent_version="m-old",
    created_at="2026-01-02T03:04:05+00:00",
)  # fmt: skip


def test_targets_say_why_a_target_is_skipped():
    assert bundle_targets(tensorrt=(True, "")) == {
        "onnx": "ok", "int8": "ok", "openvino": "ok", "openvino_int8": "ok", "tensorrt": "ok",
    }  # fmt: skip
    t = bundle_targets(tensorrt=(False, "no GPU"), openvino_int8_failure="drop 0.1\nclass dent")
    assert t["tensorrt"] == "skipped: no GPU"
    assert t["openvino_int8"] == "skipped: failed openvino_int8_accuracy: drop 0.1; class dent"
    assert list(t) == ["onnx", "int8", "openvino", "openvino_int8", "tensorrt"]


def test_files_leave_out_int8_openvino_unless_it_ships():
    assert bundle_files({"openvino_int8": "ok"}) == BUNDLE_FILES
    files = bundle_files({"openvino_int8": "skipped: failed"})
    assert set(files) == {"model.onnx", "model.int8.onnx", "openvino/model.xml",
                          "openvino/model.bin"}  # fmt: skip


def test_model_card_and_lineage_from_the_record():
    card = model_card(RECORD, gates={"onnx_model/onnx_parity": True})
    assert card["metrics"] == {"accuracy": 0.9, "false_reject_rate": None, "escape_rate": None,
                               "ece": 0.05, "n": 40}  # fmt: skip
    assert card["per_class"] == {"good": {"recall": 0.95}}
    assert card["gates_passed"] == {"onnx_model/onnx_parity": True}
    assert card["known_limits"] == KNOWN_LIMITS and card["model_version"] == "m-abc"
    lineage = bundle_lineage(RECORD, source_videos={"v1": "0" * 64})
    assert lineage == {"model_version": "m-abc", "dataset_version": 4, "label_version": 7,
                       "code_version": "c1", "parent_version": "m-old",
                       "source_videos": {"v1": "0" * 64}}  # fmt: skip


def test_package_bundle_round_trip_and_row(brightness_onnx, tmp_path):
    rules = AlarmRules(raise_after=2, clear_after=2).resolved(["good", "scratch"])
    targets = {"onnx": "ok", "tensorrt": "skipped: no GPU"}

    def build(name):
        return package_bundle(
            tmp_path / name, files={"model.onnx": brightness_onnx.path}, record=RECORD,
            classes=["good", "scratch"], preprocess=PreprocessSpec(image_size=32), rules=rules,
            targets=targets, gates={"a/b": False}, source_videos={"v1": "1" * 64},
            signing_key=None,
        )  # fmt: skip

    one, two = build("a.tar.gz"), build("b.tar.gz")
    assert one.sha256 == two.sha256  # created at the record's time: reproducible
    assert not one.signed and one.model_version == "m-abc"
    bundle = open_bundle(one.info.path, extract_to=tmp_path / "open")
    assert bundle.manifest["lineage"]["source_videos"] == {"v1": "1" * 64}
    assert bundle.manifest["targets"] == targets
    row = one.row("s3://b/bundle.tar.gz")
    assert list(row) == ["model_version", "uri", "sha256", "targets", "signed", "created_at"]
    assert json.loads(row["targets"]) == targets and row["sha256"] == one.sha256
    assert row["created_at"].tzinfo is UTC and row["created_at"] <= datetime.now(UTC)
    summary = one.summary("s3://b/bundle.tar.gz")
    assert summary["signed"].startswith("no: set LENSLINE_SIGNING_KEY")
    assert "model.onnx" in summary["files"]
    assert one.roles() == {"enabled": rules.enabled, "ok_classes": list(rules.ok_classes or ()),
                           "defect_classes": list(rules.defect_classes or ()),
                           "ignore_classes": []}  # fmt: skip

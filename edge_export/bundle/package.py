"""What goes into a champion's bundle besides its models: which targets ship (and why one is
skipped), the model card, the lineage, and the ``edge_bundles`` row that records it.

No I/O but the bundle file itself (:func:`edge_export.bundle.build.build_bundle`): the
``edge_bundle`` asset fetches the export files, the registry record, the gate verdicts and the
source videos' digests, and hands them in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_export.bundle.build import BundleInfo, build_bundle
from edge_export.postprocess import AlarmRules

__all__ = [
    "BUNDLE_FILES",
    "KNOWN_LIMITS",
    "EdgeBundle",
    "bundle_files",
    "bundle_lineage",
    "bundle_targets",
    "model_card",
    "package_bundle",
]

BUNDLE_FILES = {  # archive name -> export file name
    "model.onnx": "model.onnx",
    "model.int8.onnx": "model.int8.onnx",
    "openvino/model.xml": "openvino/model.xml",
    "openvino/model.bin": "openvino/model.bin",
    "openvino/model.int8.xml": "openvino_int8/model.xml",
    "openvino/model.int8.bin": "openvino_int8/model.bin",
}
CARD_METRICS = ("accuracy", "false_reject_rate", "escape_rate", "ece", "n")
KNOWN_LIMITS = [
    "trained on the curated frames of the dataset version in the lineage; drift in lighting, "
    "viewpoint or product look outside them is not covered (see the drift checks)",
    "frame-level classifier: alarms rely on the bundle's alarm rules over consecutive frames",
]


def bundle_targets(
    *, tensorrt: tuple[bool, str], openvino_int8_failure: str | None = None
) -> dict[str, str]:
    """Each target of the bundle: ``"ok"`` or ``"skipped: <why>"``.

    Parameters
    ----------
    tensorrt : (bool, str)
        :func:`edge_export.tensorrt.available`: whether engines can be built, and why not.
    openvino_int8_failure : str, optional
        Why the ``openvino_int8_accuracy`` gate failed (lines joined with ``"; "``); None when
        it passed or never ran.
    """
    targets = {"onnx": "ok", "int8": "ok", "openvino": "ok", "openvino_int8": "ok"}
    if openvino_int8_failure is not None:
        reason = openvino_int8_failure.replace("\n", "; ")
        targets["openvino_int8"] = f"skipped: failed openvino_int8_accuracy: {reason}"
    ok, why = tensorrt
    targets["tensorrt"] = "ok" if ok else f"skipped: {why}"
    return targets


def bundle_files(targets: Mapping[str, str]) -> dict[str, str]:
    """Archive name -> export file name of the files that ship (INT8 OpenVINO only when its
    target is ``"ok"``)."""
    return {
        name: src
        for name, src in BUNDLE_FILES.items()
        if targets.get("openvino_int8") == "ok" or not src.startswith("openvino_int8/")
    }


def model_card(record: Any, *, gates: Mapping[str, bool]) -> dict[str, Any]:
    """The bundle's ``model_card.json``: the registry record's headline metrics, per-class
    metrics, the gates passed (``"<asset>/<check>": bool``) and the known limits."""
    metrics = record.metrics or {}
    return {
        "model_version": record.model_version,
        "metrics": {k: metrics.get(k) for k in CARD_METRICS},
        "per_class": metrics.get("per_class", {}),
        "gates_passed": dict(gates),
        "known_limits": list(KNOWN_LIMITS),
    }


def bundle_lineage(record: Any, *, source_videos: Mapping[str, str]) -> dict[str, Any]:
    """Model, dataset, label, code and parent versions of a registry record, and the sha256 of
    every source video (``video_id -> sha256``)."""
    return {
        "model_version": record.model_version,
        "dataset_version": record.dataset_version,
        "label_version": record.label_version,
        "code_version": record.code_version,
        "parent_version": record.parent_version,
        "source_videos": dict(source_videos),
    }


@dataclass(frozen=True)
class EdgeBundle:
    """A packaged bundle, its targets and its alarm rules."""

    info: BundleInfo
    model_version: str
    targets: dict[str, str]
    rules: AlarmRules

    @property
    def sha256(self) -> str:
        return self.info.sha256

    @property
    def signed(self) -> bool:
        return self.info.manifest["signature"]["algorithm"] != "none"

    def roles(self) -> dict[str, Any]:
        """Whether alarms are on, and the classes in each role."""
        return {
            "enabled": self.rules.enabled,
            "ok_classes": list(self.rules.ok_classes or ()),
            "defect_classes": list(self.rules.defect_classes or ()),
            "ignore_classes": list(self.rules.ignore_classes),
        }

    def row(self, uri: str) -> dict[str, Any]:
        """The ``edge_bundles`` row: ``model_version, uri, sha256, targets`` (JSON), ``signed,
        created_at`` (UTC now)."""
        return {
            "model_version": self.model_version,
            "uri": uri,
            "sha256": self.sha256,
            "targets": json.dumps(self.targets, sort_keys=True),
            "signed": self.signed,
            "created_at": datetime.now(UTC),
        }

    def summary(self, uri: str) -> dict[str, Any]:
        """What the bundle holds, for people: version, where, digest, signature, targets, files."""
        return {
            "model_version": self.model_version,
            "uri": uri,
            "sha256": self.sha256,
            "signed": self.signed if self.signed else "no: set LENSLINE_SIGNING_KEY(_FILE) to sign",
            "targets": self.targets,
            "files": self.info.manifest["files"],
        }


def package_bundle(
    out_path: str | os.PathLike,
    *,
    files: Mapping[str, str | os.PathLike],
    record: Any,
    classes: list[str],
    preprocess: Any,
    rules: AlarmRules,
    targets: dict[str, str],
    gates: Mapping[str, bool],
    source_videos: Mapping[str, str],
    signing_key: bytes | None,
) -> EdgeBundle:
    """Build the signed bundle of a registry record at ``out_path`` with its model card and
    lineage; created at the record's ``created_at``, so rebuilding the same model gives the
    same sha256.

    Parameters
    ----------
    files : mapping
        Archive name -> local export file (:func:`bundle_files` names them).
    record : training.registry.ModelRecord
        The champion.
    classes : list of str
        Class map, index order = model output order.
    preprocess : training.preprocess.PreprocessSpec
    rules : AlarmRules
        Resolved against ``classes``.
    targets : dict
        :func:`bundle_targets`.
    gates : mapping
        ``"<asset>/<check>" -> passed`` for the model card.
    source_videos : mapping
        ``video_id -> sha256`` of the videos behind the record's dataset version.
    signing_key : bytes, optional
        Ed25519 private key (PEM); None ships unsigned.
    """
    info = build_bundle(
        out_path,
        files=files,
        model_version=record.model_version,
        classes=classes,
        preprocess=preprocess,
        postprocess=rules,
        model_card=model_card(record, gates=gates),
        lineage=bundle_lineage(record, source_videos=source_videos),
        targets=targets,
        signing_key=signing_key,
        created_at=record.created_at,
    )
    return EdgeBundle(info=info, model_version=record.model_version, targets=targets, rules=rules)

"""The bundle's layout: format name, member names, name rule, JSON encoding and its error.

Shared by :mod:`.build`, :mod:`.verify` and :mod:`.signing`; standard library only.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

__all__ = [
    "ENVELOPE",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "ENV_TRUSTED",
    "FIXED_MTIME",
    "FORMAT",
    "GENERATED",
    "MANIFEST",
    "SIGNATURE",
    "SIGNER",
    "TARGET_FILES",
    "BundleError",
    "check_name",
    "json_bytes",
]

FORMAT = "lensline.bundle/1"
TARGET_FILES = {
    "onnx": "model.onnx",
    "int8": "model.int8.onnx",
    "openvino": "openvino/model.xml",
    "openvino_int8": "openvino/model.int8.xml",
    "tensorrt": "model.engine",
}
"""Default archive name of each target's model (``build_bundle(models=...)`` overrides)."""

MANIFEST, SIGNATURE, SIGNER = "manifest.json", "manifest.sig", "signer.pub"
GENERATED = (
    "classes.json",
    "preprocess.json",
    "postprocess.json",
    "model_card.json",
    "MODEL_CARD.md",
)
ENVELOPE = (MANIFEST, SIGNATURE, SIGNER)
NAME_RULE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
FIXED_MTIME = 0
ENV_KEY, ENV_KEY_FILE, ENV_TRUSTED = (
    "LENSLINE_SIGNING_KEY",
    "LENSLINE_SIGNING_KEY_FILE",
    "LENSLINE_TRUSTED_KEY",
)


class BundleError(ValueError):
    """A bundle that cannot be built or must not be used: ``str()`` names the file and problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"bundle {self.path}: {problem}")


def json_bytes(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, indent 2, UTF-8, trailing newline)."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def check_name(name: str, where: str | os.PathLike) -> None:
    """:class:`BundleError` unless ``name`` is a relative path of ``[A-Za-z0-9_.-]`` parts."""
    if not NAME_RULE.match(name) or any(p in (".", "..") for p in name.split("/")):
        raise BundleError(
            where, f"archive name {name!r} must be a relative path of [A-Za-z0-9_.-] parts"
        )

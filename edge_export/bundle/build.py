"""Build the edge bundle: ``bundle.tar.gz`` with its manifest, signature and model card.

Writing is atomic (:func:`edge_export.fsutil.atomic_write`) and deterministic: members sorted,
mtime, uid/gid and modes fixed, gzip header mtime 0, JSON with sorted keys, Ed25519
deterministic by design -- the same inputs (including ``created_at``) give the same sha256. A
crash leaves either the previous bundle or the new one at ``out_path`` (and at worst a hidden
``.*.tmp`` beside it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_export.bundle.layout import (
    ENVELOPE,
    FIXED_MTIME,
    FORMAT,
    GENERATED,
    MANIFEST,
    SIGNATURE,
    SIGNER,
    TARGET_FILES,
    BundleError,
    check_name,
    json_bytes,
)
from edge_export.bundle.signing import private_key, public_key_fingerprint
from edge_export.fsutil import atomic_write, fsync_dir, sha256_file
from edge_export.postprocess import AlarmRules, RulesError
from edge_export.preprocess import PreprocessSpec

__all__ = ["BundleInfo", "build_bundle", "render_model_card"]


@dataclass(frozen=True)
class BundleInfo:
    """A written bundle: its path, the sha256 of the tarball and the manifest it holds."""

    path: Path
    sha256: str
    manifest: dict[str, Any]


def render_model_card(
    model_version: str,
    classes: list[str],
    card: Mapping[str, Any],
    *,
    targets: Mapping[str, str],
    lineage: Mapping[str, Any],
    rules: AlarmRules,
) -> str:
    """MODEL_CARD.md: the model card as Markdown (headings per top-level key)."""

    def block(value: Any, indent: str = "") -> list[str]:
        if isinstance(value, Mapping):
            out: list[str] = []
            for k, v in value.items():
                if isinstance(v, Mapping | list) and v:
                    out += [f"{indent}- **{k}**:", *block(v, indent + "  ")]
                else:
                    out.append(f"{indent}- **{k}**: {_fmt(v)}")
            return out
        if isinstance(value, list):
            return [
                line
                for v in value
                for line in (
                    block(v, indent) if isinstance(v, Mapping) else [f"{indent}- {_fmt(v)}"]
                )
            ]
        return [f"{indent}{_fmt(value)}"]

    lines = [
        f"# Model card: {model_version}",
        "",
        f"Classes (model output order): {', '.join(classes)}",
        "",
    ]
    for key, value in card.items():
        lines += [f"## {str(key).replace('_', ' ').capitalize()}", "", *block(value), ""]
    lines += ["## Targets", "", *block(dict(targets)), ""]
    lines += ["## Alarm rules", "", *block(rules.to_dict()), ""]
    lines += ["## Lineage", "", *block(dict(lineage)), ""]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None or v == [] or v == {}:
        return "-"
    return str(v)


def build_bundle(
    out_path: str | os.PathLike,
    *,
    files: Mapping[str, str | os.PathLike],
    model_version: str,
    classes: list[str],
    preprocess: PreprocessSpec,
    postprocess: AlarmRules,
    model_card: Mapping[str, Any],
    lineage: Mapping[str, Any],
    targets: Mapping[str, str],
    signing_key: bytes | None,
    models: Mapping[str, str] | None = None,
    created_at: str | datetime | None = None,
) -> BundleInfo:
    """Write the signed edge bundle ``out_path`` (``bundle.tar.gz``) atomically.

    Parameters
    ----------
    files
        Archive name -> local file: the exported models (``model.onnx``, ``model.int8.onnx``,
        ``openvino/model.xml`` and ``.bin``, ...). Names are relative ``[A-Za-z0-9_.-]`` paths
        and must not clash with the generated members.
    classes
        Class map in model output order.
    postprocess
        Alarm rules; validated against ``classes`` and stored with defect classes resolved.
    model_card
        JSON-able: metrics, gates passed, known limits (also rendered as MODEL_CARD.md).
    lineage
        JSON-able: model, dataset, label and code versions, ``videos: {video_id: sha256}``.
    targets
        ``target -> "ok" | "skipped: <reason>"``; every ``ok`` target needs its model file
        (:data:`TARGET_FILES`, or ``models``).
    signing_key
        Ed25519 private key, PEM (from :func:`load_signing_key`), or ``None`` for unsigned.
    models
        Target -> archive name, overriding :data:`TARGET_FILES`.
    created_at
        Recorded build time; default ``SOURCE_DATE_EPOCH`` when set, else now (UTC, seconds).
        Pass the model's own timestamp to make rebuilds byte-identical.

    Returns
    -------
    BundleInfo
        ``path``, ``sha256`` of the tarball, the ``manifest`` dict.
    """
    out = Path(out_path)
    for name in files:
        check_name(name, out)
        if name in GENERATED or name in ENVELOPE:
            raise BundleError(out, f"{name!r} is written by build_bundle; do not pass it in files")
    for name, src in files.items():
        if not Path(src).is_file():
            raise BundleError(out, f"file {name!r}: {src} does not exist")
    try:
        rules = postprocess.resolved(classes)
    except RulesError as e:
        raise BundleError(out, f"post-processing rules do not fit the class map: {e}") from e
    for target, status in targets.items():
        if status != "ok" and not str(status).startswith("skipped: "):
            raise BundleError(
                out, f"target {target}: status must be 'ok' or 'skipped: <reason>', got {status!r}"
            )
    model_files = {
        t: n for t, n in {**TARGET_FILES, **(models or {})}.items() if targets.get(t) == "ok"
    }
    for target, status in targets.items():
        if status == "ok" and model_files.get(target) not in files:
            raise BundleError(
                out,
                f"target {target} is 'ok' but its model file "
                f"{model_files.get(target, '(no default name; pass models=)')!r} is not in files",
            )
    if created_at is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        created = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
        created_at = created.replace(microsecond=0).isoformat()
    elif isinstance(created_at, datetime):
        created_at = created_at.isoformat()

    generated = {
        "classes.json": json_bytes(list(classes)),
        "preprocess.json": json_bytes(preprocess.to_dict()),
        "postprocess.json": json_bytes(rules.to_dict()),
        "model_card.json": json_bytes(dict(model_card)),
        "MODEL_CARD.md": render_model_card(
            model_version, list(classes), model_card, targets=targets, lineage=lineage, rules=rules
        ).encode(),
    }
    digests = {name: sha256_file(src) for name, src in files.items()}
    digests.update({name: hashlib.sha256(data).hexdigest() for name, data in generated.items()})
    signature: dict[str, Any] = {"algorithm": "none"}
    key = private_key(signing_key) if signing_key is not None else None
    if key is not None:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        signature = {
            "algorithm": "ed25519",
            "public_key_sha256": public_key_fingerprint(key.public_key()),
            "public_key_file": SIGNER,
            "signature_file": SIGNATURE,
            "signed": MANIFEST,
        }
    manifest = {
        "format": FORMAT,
        "model_version": model_version,
        "created_at": created_at,
        "files": dict(sorted(digests.items())),
        "models": dict(sorted(model_files.items())),
        "targets": dict(sorted(targets.items())),
        "lineage": dict(lineage),
        "signature": signature,
    }
    manifest_bytes = json_bytes(manifest)
    envelope = {MANIFEST: manifest_bytes}
    if key is not None:
        envelope[SIGNATURE] = key.sign(manifest_bytes)
        envelope[SIGNER] = public_pem

    members: dict[str, bytes | Path] = {**generated, **envelope}
    members.update({n: Path(s) for n, s in files.items()})
    with (
        atomic_write(out) as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(members):
            _add_member(tar, name, members[name])
    fsync_dir(out.parent)
    return BundleInfo(out, sha256_file(out), manifest)


def _add_member(tar: tarfile.TarFile, name: str, content: bytes | Path) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.uid, info.gid = FIXED_MTIME, 0o644, 0, 0
    info.uname = info.gname = ""
    if isinstance(content, bytes):
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    else:
        info.size = content.stat().st_size
        with open(content, "rb") as fh:
            tar.addfile(info, fh)

"""The edge bundle: one signed, reproducible ``bundle.tar.gz`` per model version.

Layout (flat archive names; ``openvino/`` is the only folder)::

    manifest.json      {"format": "lensline.bundle/1", model_version, created_at,
                        files: {name: sha256} for every member below except the signature
                        envelope, models: {target: name}, targets: {target: "ok" | "skipped: why"},
                        lineage: {model, dataset, labels, code versions, videos: {id: sha256}},
                        signature: {algorithm: "ed25519" | "none", public_key_sha256, ...}}
    manifest.sig       Ed25519 signature of the exact bytes of manifest.json  (signed only)
    signer.pub         the signer's public key, PEM                           (signed only)
    model.onnx, model.int8.onnx, openvino/model.xml + .bin, ...   the exported models
    classes.json       the class map, index order = model output order
    preprocess.json    :class:`training.preprocess.PreprocessSpec`
    postprocess.json   :class:`edge_export.postprocess.AlarmRules` (defect classes resolved)
    model_card.json    metrics, gates passed, known limits; rendered as MODEL_CARD.md

Writing is atomic (temp file, fsync, ``os.replace``) and deterministic: members sorted, mtime,
uid/gid and modes fixed, gzip header mtime 0, JSON with sorted keys, Ed25519 deterministic by
design -- the same inputs (including ``created_at``) give the same sha256. A crash leaves either
the previous bundle or the new one at ``out_path`` (and at worst a hidden ``.*.tmp`` beside it).

The private signing key comes only from ``LENSLINE_SIGNING_KEY`` (PEM text) or
``LENSLINE_SIGNING_KEY_FILE`` (a path) via :func:`load_signing_key`; it is never logged, never
put in an error message, never written into the bundle. Readers pin a trusted public key with
``trusted_public_key`` (PEM, raw 32 bytes or the sha256 fingerprint in hex); without one, a
valid self-signature is reported as ``signed by <fingerprint>, not pinned``.

Only numpy, OpenCV and ``cryptography`` (no torch, no Dagster): the edge runner imports it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from edge_export.postprocess import AlarmRules, RulesError
from training.preprocess import PreprocessError, PreprocessSpec

__all__ = [
    "FORMAT",
    "TARGET_FILES",
    "Bundle",
    "BundleError",
    "BundleInfo",
    "SignatureStatus",
    "SigningKeyError",
    "build_bundle",
    "generate_signing_key",
    "load_signing_key",
    "load_trusted_key",
    "open_bundle",
    "public_key_fingerprint",
    "sha256_file",
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
_GENERATED = (
    "classes.json",
    "preprocess.json",
    "postprocess.json",
    "model_card.json",
    "MODEL_CARD.md",
)
_ENVELOPE = (MANIFEST, SIGNATURE, SIGNER)
_NAME_RULE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_FIXED_MTIME = 0
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


class SigningKeyError(ValueError):
    """The configured signing or trusted key is unusable (the message never holds key material)."""


# ------------------------------------------------------------------------------- keys


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(
            "signing key is not an unencrypted PEM private key (contents not shown)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"signing key must be Ed25519, got {type(key).__name__}")
    return key


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_fingerprint(public_key: Any) -> str:
    """sha256 (hex) of an Ed25519 public key's 32 raw bytes: how keys are named and pinned."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()


def generate_signing_key() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as ``(private PEM, public PEM)`` (keep the first secret)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return private, key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def load_signing_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The Ed25519 private key (PEM bytes) from the environment, or ``None`` when none is set.

    Reads ``LENSLINE_SIGNING_KEY`` (the PEM text) or ``LENSLINE_SIGNING_KEY_FILE`` (a path to
    it), nothing else; both set is an error. The key is checked to be Ed25519; errors never
    contain its contents.
    """
    env = os.environ if environ is None else environ
    text, path = env.get(ENV_KEY) or None, env.get(ENV_KEY_FILE) or None
    if text and path:
        raise SigningKeyError(f"set only one of {ENV_KEY} and {ENV_KEY_FILE}, not both")
    if path:
        try:
            pem = Path(path).read_bytes()
        except OSError as e:
            raise SigningKeyError(f"{ENV_KEY_FILE}={path}: cannot read ({e.strerror})") from None
    elif text:
        pem = text.encode()
    else:
        return None
    _private_key(pem)
    return pem


@dataclass(frozen=True)
class TrustedKey:
    """A pinned signer: its fingerprint (and where the pin came from, for messages)."""

    fingerprint: str
    source: str


def load_trusted_key(
    value: str | bytes | os.PathLike | None, *, source: str = ""
) -> TrustedKey | None:
    """Parse a trusted public key: PEM bytes/text, raw 32 bytes, 64-hex fingerprint or a path.

    ``None`` (or empty) returns ``None``. A string that is neither PEM nor a fingerprint is read
    as a path to a PEM file.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if value is None or value == "" or value == b"":
        return None
    where = source or "trusted key"
    if isinstance(value, bytes) and len(value) == 32:
        return TrustedKey(hashlib.sha256(value).hexdigest(), where)
    if isinstance(value, bytes):
        pem = value
    else:
        text = os.fspath(value).strip()
        if re.fullmatch(r"[0-9a-fA-F]{64}", text):
            return TrustedKey(text.lower(), where)
        if "-----BEGIN" in text:
            pem = text.encode()
        else:
            try:
                pem = Path(text).read_bytes()
            except OSError as e:
                raise SigningKeyError(f"{where} {text}: cannot read ({e.strerror})") from None
            where = source or text
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{where}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{where}: must be an Ed25519 public key, got {type(key).__name__}")
    return TrustedKey(public_key_fingerprint(key), where)


# ------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class BundleInfo:
    """A written bundle: its path, the sha256 of the tarball and the manifest it holds."""

    path: Path
    sha256: str
    manifest: dict[str, Any]


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _check_name(name: str, where: str | os.PathLike) -> None:
    if not _NAME_RULE.match(name) or any(p in (".", "..") for p in name.split("/")):
        raise BundleError(
            where, f"archive name {name!r} must be a relative path of [A-Za-z0-9_.-] parts"
        )


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
        _check_name(name, out)
        if name in _GENERATED or name in _ENVELOPE:
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
        "classes.json": _json_bytes(list(classes)),
        "preprocess.json": _json_bytes(preprocess.to_dict()),
        "postprocess.json": _json_bytes(rules.to_dict()),
        "model_card.json": _json_bytes(dict(model_card)),
        "MODEL_CARD.md": render_model_card(
            model_version, list(classes), model_card, targets=targets, lineage=lineage, rules=rules
        ).encode(),
    }
    digests = {name: sha256_file(src) for name, src in files.items()}
    digests.update({name: hashlib.sha256(data).hexdigest() for name, data in generated.items()})
    signature: dict[str, Any] = {"algorithm": "none"}
    key = _private_key(signing_key) if signing_key is not None else None
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
    manifest_bytes = _json_bytes(manifest)
    envelope = {MANIFEST: manifest_bytes}
    if key is not None:
        envelope[SIGNATURE] = key.sign(manifest_bytes)
        envelope[SIGNER] = public_pem

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            members: dict[str, bytes | Path] = {**generated, **envelope}
            members.update({n: Path(s) for n, s in files.items()})
            with (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name in sorted(members):
                    _add_member(tar, name, members[name])
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(out.parent)
    return BundleInfo(out, sha256_file(out), manifest)


def _add_member(tar: tarfile.TarFile, name: str, content: bytes | Path) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.uid, info.gid = _FIXED_MTIME, 0o644, 0, 0
    info.uname = info.gname = ""
    if isinstance(content, bytes):
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    else:
        info.size = content.stat().st_size
        with open(content, "rb") as fh:
            tar.addfile(info, fh)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------- open


@dataclass(frozen=True)
class SignatureStatus:
    """How a bundle's manifest is signed: ``unsigned``, ``self-signed`` or ``trusted``."""

    kind: Literal["unsigned", "self-signed", "trusted"]
    fingerprint: str | None
    message: str


@dataclass
class Bundle:
    """A verified, extracted bundle (use as a context manager to remove the extraction)."""

    path: Path
    root: Path
    sha256: str
    manifest: dict[str, Any]
    classes: list[str]
    preprocess: PreprocessSpec
    postprocess: AlarmRules
    model_card: dict[str, Any]
    signature: SignatureStatus
    _owns_root: bool = field(default=False, repr=False)

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def targets(self) -> dict[str, str]:
        return dict(self.manifest.get("targets", {}))

    @property
    def lineage(self) -> dict[str, Any]:
        return dict(self.manifest.get("lineage", {}))

    def model_path(self, target: str) -> Path:
        """The extracted model file of ``target``; :class:`BundleError` when it was not exported."""
        status = self.targets.get(target)
        if status is None:
            raise BundleError(
                self.path,
                f"has no target {target!r} (targets: {', '.join(self.targets) or 'none'})",
            )
        if status != "ok":
            raise BundleError(self.path, f"target {target!r} was not exported ({status})")
        name = self.manifest.get("models", {}).get(target)
        if not name or name not in self.manifest["files"]:
            raise BundleError(self.path, f"target {target!r} is 'ok' but names no model file")
        return self.root / name

    def close(self) -> None:
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_bundle(
    path: str | os.PathLike,
    *,
    trusted_public_key: str | bytes | os.PathLike | TrustedKey | None = None,
    extract_to: str | os.PathLike | None = None,
) -> Bundle:
    """Extract and verify a bundle; :class:`BundleError` naming the problem when it is unusable.

    Checks, in order: a readable tar.gz of regular files with safe relative names (no absolute
    paths, ``..``, links or devices, no duplicates); a known manifest format; the signature
    (valid, by the pinned key when ``trusted_public_key`` is given; unsigned is refused when a
    key is pinned); every file's sha256 against the manifest, with no missing and no extra
    files; class map, preprocessing spec and alarm rules readable and consistent.

    Parameters
    ----------
    trusted_public_key
        The expected signer: PEM, raw 32 bytes, hex fingerprint, a PEM file path or a
        :class:`TrustedKey`. ``None``: any valid signature is accepted but reported as not
        pinned, and unsigned bundles are accepted (``signature.kind == "unsigned"``).
    extract_to
        An empty folder to extract into (kept); default a temp folder removed by ``close()``.
    """
    src = Path(path)
    trusted = (
        trusted_public_key
        if isinstance(trusted_public_key, TrustedKey) or trusted_public_key is None
        else load_trusted_key(trusted_public_key)
    )
    if not src.is_file():
        raise BundleError(src, "no such file")
    owns = extract_to is None
    root = Path(tempfile.mkdtemp(prefix="lensline-bundle-")) if owns else Path(extract_to)  # type: ignore[arg-type]
    root.mkdir(parents=True, exist_ok=True)
    try:
        digests = _extract(src, root)
        return _verify(src, root, digests, trusted, owns)
    except BaseException:
        if owns:
            shutil.rmtree(root, ignore_errors=True)
        raise


def _extract(src: Path, root: Path) -> dict[str, str]:
    """Extract regular files safely; return ``{name: sha256}`` as read from the archive."""
    digests: dict[str, str] = {}
    try:
        with tarfile.open(src, mode="r:gz") as tar:
            for member in tar:
                name = member.name
                if (
                    name.startswith("/")
                    or "\\" in name
                    or any(p == ".." for p in PurePosixPath(name).parts)
                ):
                    raise BundleError(src, f"unsafe member path {name!r} refused")
                if member.isdir():
                    continue
                if not member.isfile():
                    kind = "link" if member.issym() or member.islnk() else "special file"
                    raise BundleError(
                        src, f"member {name!r} is a {kind}; only regular files allowed"
                    )
                name = str(PurePosixPath(name))
                _check_name(name, src)
                if name in digests:
                    raise BundleError(src, f"member {name!r} appears twice")
                dest = root / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                fh = tar.extractfile(member)
                assert fh is not None
                h = hashlib.sha256()
                with open(dest, "xb") as out:
                    while block := fh.read(1 << 20):
                        h.update(block)
                        out.write(block)
                digests[name] = h.hexdigest()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise BundleError(src, f"not a readable bundle.tar.gz ({e})") from e
    except FileExistsError as e:
        raise BundleError(src, f"member clashes with another member ({e.filename})") from e
    return digests


def _verify(
    src: Path, root: Path, digests: dict[str, str], trusted: TrustedKey | None, owns: bool
) -> Bundle:
    if MANIFEST not in digests:
        raise BundleError(src, "no manifest.json: not a Lensline bundle")
    manifest_bytes = (root / MANIFEST).read_bytes()
    try:
        manifest = json.loads(manifest_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(src, f"manifest.json is not JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise BundleError(src, "manifest.json is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(
            src, f"unknown bundle format {manifest.get('format')!r} (this runner reads {FORMAT})"
        )
    for key in ("model_version", "files", "targets", "signature"):
        if key not in manifest:
            raise BundleError(src, f"manifest.json has no {key!r}")
    signature = _check_signature(src, root, manifest, manifest_bytes, digests, trusted)

    listed: dict[str, str] = manifest["files"]
    envelope = {MANIFEST} | ({SIGNATURE, SIGNER} if signature.kind != "unsigned" else set())
    present = set(digests) - envelope
    missing = sorted(set(listed) - present)
    if missing:
        raise BundleError(src, f"file(s) listed in the manifest are missing: {', '.join(missing)}")
    extra = sorted(present - set(listed))
    if extra:
        raise BundleError(src, f"file(s) not listed in the manifest: {', '.join(extra)}")
    for name in sorted(listed):
        if digests[name] != listed[name]:
            raise BundleError(
                src,
                f"{name}: sha256 {digests[name][:12]}... does not match the manifest's "
                f"{str(listed[name])[:12]}... (the file was changed)",
            )
    try:
        classes = json.loads((root / "classes.json").read_text())
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise BundleError(src, "classes.json must be a list of class names")
        preprocess = PreprocessSpec.from_json((root / "preprocess.json").read_text())
        rules = AlarmRules.from_json((root / "postprocess.json").read_text())
        rules.validate(classes)
        model_card = json.loads((root / "model_card.json").read_text())
    except FileNotFoundError as e:
        raise BundleError(src, f"required member {Path(e.filename).name} is missing") from e
    except json.JSONDecodeError as e:
        raise BundleError(src, f"a JSON member is not JSON ({e})") from e
    except PreprocessError as e:
        raise BundleError(src, f"preprocess.json: {e}") from e
    except RulesError as e:
        raise BundleError(src, f"postprocess.json does not fit classes.json: {e}") from e
    return Bundle(
        path=src,
        root=root,
        sha256=sha256_file(src),
        manifest=manifest,
        classes=classes,
        preprocess=preprocess,
        postprocess=rules,
        model_card=model_card,
        signature=signature,
        _owns_root=owns,
    )


def _check_signature(
    src: Path,
    root: Path,
    manifest: dict[str, Any],
    manifest_bytes: bytes,
    digests: dict[str, str],
    trusted: TrustedKey | None,
) -> SignatureStatus:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    info = manifest["signature"]
    algorithm = info.get("algorithm") if isinstance(info, dict) else None
    if algorithm == "none":
        if trusted is not None:
            raise BundleError(
                src, f"is unsigned, but a trusted key is configured ({trusted.source}): refused"
            )
        return SignatureStatus("unsigned", None, "UNSIGNED (no trusted key configured)")
    if algorithm != "ed25519":
        raise BundleError(src, f"unknown signature algorithm {algorithm!r}")
    for name in (SIGNATURE, SIGNER):
        if name not in digests:
            raise BundleError(src, f"manifest says signed, but {name} is missing")
    try:
        public = load_pem_public_key((root / SIGNER).read_bytes())
    except ValueError as e:
        raise BundleError(src, f"{SIGNER} is not a PEM public key") from e
    if not isinstance(public, Ed25519PublicKey):
        raise BundleError(src, f"{SIGNER} is not an Ed25519 key")
    fingerprint = public_key_fingerprint(public)
    if fingerprint != info.get("public_key_sha256"):
        raise BundleError(src, f"{SIGNER} does not match the key fingerprint in the manifest")
    try:
        public.verify((root / SIGNATURE).read_bytes(), manifest_bytes)
    except InvalidSignature:
        raise BundleError(
            src, "bad signature: manifest.json was changed or signed by another key"
        ) from None
    if trusted is None:
        return SignatureStatus("self-signed", fingerprint, f"signed by {fingerprint}, not pinned")
    if trusted.fingerprint != fingerprint:
        raise BundleError(
            src,
            f"signed by {fingerprint}, not by the trusted key {trusted.fingerprint} "
            f"({trusted.source}): refused",
        )
    return SignatureStatus("trusted", fingerprint, f"signed by trusted key {fingerprint}")

"""Open a bundle: extract it safely, check its signature, digests and members.

Readers pin a trusted public key with ``trusted_public_key`` (PEM, raw 32 bytes or the sha256
fingerprint in hex); without one, a valid self-signature is reported as ``signed by
<fingerprint>, not pinned``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from edge_export.bundle.layout import (
    FORMAT,
    MANIFEST,
    SIGNATURE,
    SIGNER,
    BundleError,
    check_name,
)
from edge_export.bundle.signing import TrustedKey, load_trusted_key, public_key_fingerprint
from edge_export.fsutil import sha256_file
from edge_export.postprocess import AlarmRules, RulesError
from edge_export.preprocess import PreprocessError, PreprocessSpec

__all__ = ["Bundle", "SignatureStatus", "open_bundle"]


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
                check_name(name, src)
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

"""Signing keys of the bundle: Ed25519 key pairs, the signing key from the environment, pins.

The private signing key comes only from ``LENSLINE_SIGNING_KEY`` (PEM text) or
``LENSLINE_SIGNING_KEY_FILE`` (a path) via :func:`load_signing_key`; it is never logged, never
put in an error message, never written into the bundle. Readers pin a trusted public key with
:func:`load_trusted_key` (PEM, raw 32 bytes or the sha256 fingerprint in hex).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_export.bundle.layout import ENV_KEY, ENV_KEY_FILE

__all__ = [
    "SigningKeyError",
    "TrustedKey",
    "generate_signing_key",
    "load_signing_key",
    "load_trusted_key",
    "private_key",
    "public_key_fingerprint",
]


class SigningKeyError(ValueError):
    """The configured signing or trusted key is unusable (the message never holds key material)."""


def private_key(pem: bytes) -> Any:
    """The Ed25519 private key object of ``pem``; :class:`SigningKeyError` otherwise."""
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
    private_key(pem)
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

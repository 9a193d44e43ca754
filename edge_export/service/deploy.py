"""The box side of deployments: read the signed desired state, fetch and verify its bundles.

``lensline deploy`` (:mod:`lake.deployments`) publishes ``deployments/<box>.json`` under the
storage root (a local folder or an ``s3://`` prefix). The document::

    {"format": "lensline.deployments/1",
     "payload": {"box": "b1", "seq": 7,
                 "cameras": {"*":    {"champion": ENTRY, "shadow": ENTRY},   # every camera
                             "cam2": {"champion": ENTRY}}},                  # overrides "*"
     "signature": {"algorithm": "ed25519", "public_key_sha256": HEX, "public_key": PEM,
                   "value": BASE64}      # over json_bytes(payload); or {"algorithm": "none"}
    }
    ENTRY = {model_version, bundle_uri, bundle_key (relative to the root, or null),
             bundle_sha256, seq, created_at, by, reason}

The payload is signed with the bundles' Ed25519 key (``LENSLINE_SIGNING_KEY``); the signature
covers :func:`edge_export.bundle.layout.json_bytes` of the payload (sorted keys), so a reader
re-encodes and checks. A camera's role resolves to its own entry, else the ``"*"`` entry.

:class:`DesiredStateWatcher` polls it for one box. A refusal (tampered, unsigned while a key is
pinned, older than the state in force, a bundle whose sha256 or verification fails) is returned
as ``Change.problems`` with no cameras, never raised: the service keeps what runs. A refused
document is not reported again until its bytes change; a refused or unreachable bundle is tried
again on the next poll (the source may be repaired). Bundles are
cached by sha256 under ``cache_dir``: the ones in force and the ``keep_bundles`` most recently in
force stay, so a rollback needs no download; older ones are pruned when a change is applied.

Standard library, :mod:`edge_export.bundle` and ``cryptography``; boto3 only for ``s3://``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_export.bundle import Bundle, BundleError, TrustedKey, load_trusted_key, open_bundle
from edge_export.bundle.layout import json_bytes
from edge_export.bundle.signing import private_key, public_key_fingerprint
from edge_export.fsutil import atomic_write, sha256_file

__all__ = [
    "ALL_CAMERAS",
    "FORMAT",
    "Change",
    "DesiredStateWatcher",
    "DocumentError",
    "read_document",
    "sign_document",
    "verified_payload",
]

FORMAT = "lensline.deployments/1"
ALL_CAMERAS = "*"
ROLES = ("champion", "shadow")


class DocumentError(ValueError):
    """A desired-state document that must not be used (the message says why)."""


# ---- the document -----------------------------------------------------------------------------
def sign_document(
    payload: Mapping[str, Any], signing_key: bytes | None, *, format: str = FORMAT
) -> bytes:
    """The published document of ``payload``: signed with ``signing_key`` (Ed25519 PEM) or, when
    ``None``, marked unsigned. Deterministic: the same payload and key give the same bytes.
    ``format`` names the document kind (other signed documents, e.g. a line's configuration per
    box, use the same signature with their own format)."""
    if signing_key is None:
        signature: dict[str, Any] = {
            "algorithm": "none",
            "note": "UNSIGNED: published without LENSLINE_SIGNING_KEY; a box that pins a "
            "trusted key refuses it",
        }
    else:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        key = private_key(signing_key)
        public = key.public_key()
        signature = {
            "algorithm": "ed25519",
            "public_key_sha256": public_key_fingerprint(public),
            "public_key": public.public_bytes(
                Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
            ).decode(),
            "value": base64.b64encode(key.sign(json_bytes(payload))).decode(),
        }
    return json_bytes({"format": format, "payload": dict(payload), "signature": signature})


def read_document(data: bytes, *, trusted: TrustedKey | None, where: str = "document") -> dict:
    """The verified payload of a published document; :class:`DocumentError` naming the problem.

    With ``trusted`` the document must be signed by that key (unsigned is refused); without,
    an unsigned document is accepted and a signed one must still carry a valid signature.
    """
    payload = verified_payload(data, trusted=trusted, where=where)
    cameras = payload.get("cameras")
    if not isinstance(cameras, dict) or not isinstance(payload.get("seq"), int):
        raise DocumentError(f"{where}: payload needs 'seq' (int) and 'cameras' (object)")
    for camera, roles in cameras.items():
        if not isinstance(roles, dict) or not set(roles) <= set(ROLES):
            raise DocumentError(f"{where}: cameras.{camera} must map champion/shadow to entries")
        for role, entry in roles.items():
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("model_version", "bundle_sha256")
            ):
                raise DocumentError(f"{where}: cameras.{camera}.{role} lacks a model or sha256")
    return payload


def verified_payload(
    data: bytes, *, trusted: TrustedKey | None, where: str = "document", format: str = FORMAT
) -> dict:
    """The payload of a signed document of kind ``format`` once its signature checks out (the
    rules of :func:`read_document`); :class:`DocumentError` naming the problem."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DocumentError(f"{where} is not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != format:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise DocumentError(f"{where}: unknown format {found!r} (this box reads {format})")
    payload, info = doc.get("payload"), doc.get("signature")
    if not isinstance(payload, dict) or not isinstance(info, dict):
        raise DocumentError(f"{where}: no payload or signature object")
    algorithm = info.get("algorithm")
    if algorithm == "none":
        if trusted is not None:
            raise DocumentError(
                f"{where} is unsigned, but a trusted key is configured ({trusted.source}): refused"
            )
    elif algorithm == "ed25519":
        try:
            public = load_pem_public_key(str(info.get("public_key", "")).encode())
            value = base64.b64decode(str(info.get("value", "")), validate=True)
        except ValueError:
            raise DocumentError(f"{where}: unreadable public key or signature") from None
        if not isinstance(public, Ed25519PublicKey):
            raise DocumentError(f"{where}: the signer's key is not Ed25519")
        fingerprint = public_key_fingerprint(public)
        try:
            public.verify(value, json_bytes(payload))
        except InvalidSignature:
            raise DocumentError(
                f"{where}: bad signature: the payload was changed or signed by another key"
            ) from None
        if trusted is not None and fingerprint != trusted.fingerprint:
            raise DocumentError(
                f"{where}: signed by {fingerprint}, not by the trusted key "
                f"{trusted.fingerprint} ({trusted.source}): refused"
            )
    else:
        raise DocumentError(f"{where}: unknown signature algorithm {algorithm!r}")
    return payload


# ---- the watcher ------------------------------------------------------------------------------
@dataclass
class Change:
    """What :meth:`DesiredStateWatcher.poll` found.

    ``cameras``: camera id (``"*"``: every camera without its own entry) -> role
    (``champion``/``shadow``) -> the verified, extracted :class:`Bundle` (``.path`` is the
    cached ``bundle.tar.gz``). The whole desired state, not only what changed; empty when the
    document was refused. ``problems``: why it was refused (empty when accepted).
    """

    seq: int | None
    cameras: dict[str, dict[str, Bundle]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def for_camera(self, camera: str) -> dict[str, Bundle]:
        """The roles ``camera`` runs: its own entries, else those of every camera (``"*"``)."""
        own, every = self.cameras.get(camera, {}), self.cameras.get(ALL_CAMERAS, {})
        return {
            role: own.get(role) or every[role] for role in ROLES if role in own or role in every
        }


class DesiredStateWatcher:
    """Poll ``<source>/deployments/<box>.json`` and fetch what it asks for.

    Parameters
    ----------
    source
        The storage root the lake publishes to: a local folder or ``s3://bucket/prefix``
        (credentials and endpoint from the standard AWS environment variables).
    box
        This box's id.
    trusted_key
        The pinned signer (PEM, hex fingerprint, a PEM file path or a :class:`TrustedKey`);
        ``None`` accepts unsigned documents and bundles (and says so in their status).
    cache_dir
        Where bundles are kept, ``<cache_dir>/<sha256>.tar.gz``, extracted beside it.
    poll_s
        How often the service should call :meth:`poll` (the watcher itself never sleeps).
    """

    def __init__(
        self,
        source: str | os.PathLike,
        box: str,
        *,
        trusted_key: str | bytes | os.PathLike | TrustedKey | None,
        cache_dir: str | os.PathLike,
        poll_s: float = 10.0,
        keep_bundles: int = 4,
    ):
        self.source = str(source).rstrip("/") if str(source).startswith("s3://") else str(source)
        self.box, self.poll_s = box, poll_s
        self.trusted = (
            trusted_key
            if trusted_key is None or isinstance(trusted_key, TrustedKey)
            else load_trusted_key(trusted_key, source="the trusted key")
        )
        self.cache_dir = Path(cache_dir)
        self.current: Change | None = None
        self.last_problem: str | None = None
        self._seen: bytes | None = None  # sha256 of the last document handled (applied or refused)
        self._bundles: dict[str, Bundle] = {}  # sha256 -> verified bundle, kept for rollbacks
        # the bundles in force plus the ``keep_bundles`` most recently in force stay cached (an
        # instant rollback); older ones are removed from the disk when a change is applied
        self.keep_bundles = keep_bundles
        self._recent: list[str] = []  # sha256s in the order they were last in force
        self._client: Any = None

    @property
    def document_uri(self) -> str:
        return _join(self.source, "deployments", f"{self.box}.json")

    def read(self, *parts: str) -> bytes:
        """The bytes of ``<source>/<parts...>`` (local or S3; FileNotFoundError when absent):
        other documents published beside the desired state, e.g. ``capture_requests.json``."""
        return self._read(_join(self.source, *parts))

    def poll(self) -> Change | None:
        """A :class:`Change` when the published desired state differs from the one in force (or
        was refused: ``problems``), ``None`` when there is nothing new. Never raises on bad
        input: a problem reading the source is returned (and retried on the next poll)."""
        try:
            data = self._read(self.document_uri)
        except FileNotFoundError:
            self.last_problem = f"nothing published yet at {self.document_uri}"
            return None
        except Exception as e:  # noqa: BLE001 - a source outage is reported, never raised
            return self._refuse(None, f"cannot read {self.document_uri}: {e}", remember=None)
        digest = hashlib.sha256(data).digest()
        if digest == self._seen:
            return None
        try:
            payload = read_document(data, trusted=self.trusted, where=self.document_uri)
        except DocumentError as e:
            return self._refuse(None, str(e), remember=digest)
        seq = payload["seq"]
        if payload.get("box") != self.box:
            return self._refuse(
                seq, f"{self.document_uri} is for box {payload.get('box')!r}", digest
            )
        if self.current is not None and self.current.seq is not None and seq < self.current.seq:
            problem = (
                f"{self.document_uri}: seq {seq} is older than the state in force "
                f"({self.current.seq}): refused (replayed or stale document)"
            )
            return self._refuse(seq, problem, digest)
        cameras: dict[str, dict[str, Bundle]] = {}
        for camera, roles in sorted(payload["cameras"].items()):
            for role, entry in sorted(roles.items()):
                try:
                    cameras.setdefault(camera, {})[role] = self._bundle(entry)
                except BundleError as e:  # retried next poll: the source may be repaired
                    return self._refuse(seq, f"{camera}/{role} {entry['model_version']}: {e}", None)
                except Exception as e:  # noqa: BLE001 - a failed download is reported, then retried
                    problem = f"{camera}/{role} {entry['model_version']}: cannot fetch ({e})"
                    return self._refuse(seq, problem, remember=None)
        self._seen, self.last_problem = digest, None
        change = Change(seq, cameras)
        if self.current is not None and _digests(self.current) == _digests(change):
            self.current = change
            return None
        self.current = change
        self._prune(change)
        return change

    def _prune(self, change: Change) -> list[str]:
        """Remove cached bundles neither in force nor among the ``keep_bundles`` most recently
        in force (a box runs for months: its cache must not grow with every deployment).
        The sha256s removed."""
        in_force = list(dict.fromkeys(s for r in _digests(change).values() for s in r.values()))
        self._recent = [s for s in self._recent if s not in in_force] + in_force
        keep = set(in_force) | set(self._recent[-(len(in_force) + self.keep_bundles) :])
        removed = []
        for tar in sorted(self.cache_dir.glob("*.tar.gz")):
            sha = tar.name.removesuffix(".tar.gz")
            if sha in keep:
                continue
            tar.unlink(missing_ok=True)
            shutil.rmtree(self.cache_dir / sha, ignore_errors=True)
            self._bundles.pop(sha, None)
            removed.append(sha)
        return removed

    # -- helpers -------------------------------------------------------------------------------
    def _refuse(self, seq: int | None, problem: str, remember: bytes | None) -> Change:
        if remember is not None:
            self._seen = remember  # the same bytes are not refused (and reported) again
        self.last_problem = problem
        return Change(seq, problems=[problem])

    def _bundle(self, entry: Mapping[str, Any]) -> Bundle:
        """The verified bundle of ``entry``: from the cache when its sha256 is there."""
        sha = str(entry["bundle_sha256"]).lower()
        if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
            raise BundleError(str(entry.get("bundle_uri")), f"bad sha256 {sha!r} in the document")
        cached = self.cache_dir / f"{sha}.tar.gz"
        known = self._bundles.get(sha)
        if known is not None and cached.is_file() and sha256_file(cached) == sha:
            return known
        if not (cached.is_file() and sha256_file(cached) == sha):
            key = entry.get("bundle_key")
            where = _join(self.source, key) if key else str(entry.get("bundle_uri"))
            self._download(where, cached, sha)
        extracted = self.cache_dir / sha
        shutil.rmtree(extracted, ignore_errors=True)
        try:
            bundle = open_bundle(cached, trusted_public_key=self.trusted, extract_to=extracted)
            if bundle.model_version != entry["model_version"]:
                raise BundleError(
                    cached,
                    f"holds {bundle.model_version}, but the deployment names "
                    f"{entry['model_version']}",
                )
        except BundleError:  # a refused bundle does not stay in the cache
            shutil.rmtree(extracted, ignore_errors=True)
            cached.unlink(missing_ok=True)
            raise
        self._bundles[sha] = bundle
        return bundle

    def _download(self, uri: str, dest: Path, sha: str) -> None:
        """Copy ``uri`` to ``dest`` atomically, refusing bytes whose sha256 is not ``sha``."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        with atomic_write(dest) as out:
            if uri.startswith("s3://"):
                bucket, _, key = uri[len("s3://") :].partition("/")
                body = self._s3().get_object(Bucket=bucket, Key=key)["Body"]
                while block := body.read(1 << 20):
                    h.update(block)
                    out.write(block)
            else:
                with open(uri, "rb") as src:
                    while block := src.read(1 << 20):
                        h.update(block)
                        out.write(block)
            if h.hexdigest() != sha:
                raise BundleError(
                    uri,
                    f"sha256 {h.hexdigest()[:12]}... does not match the deployment's "
                    f"{sha[:12]}... (the file was changed): refused",
                )

    def _read(self, uri: str) -> bytes:
        if not uri.startswith("s3://"):
            return Path(uri).read_bytes()
        bucket, _, key = uri[len("s3://") :].partition("/")
        client = self._s3()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(uri) from None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            config = Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=60)
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint, config=config
            )
        return self._client


def _join(root: str, *parts: str) -> str:
    if root.startswith("s3://"):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root).joinpath(*parts))


def _digests(change: Change) -> dict[str, dict[str, str]]:
    return {c: {r: b.sha256 for r, b in roles.items()} for c, roles in change.cameras.items()}

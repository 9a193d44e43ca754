"""Deployments as desired state: which model version runs where is data in the lake.

``deployments`` (Delta, append-only, one row per change; the source of truth):
    seq, box, camera (null: every camera of the box), role (champion | shadow),
    action (deploy | rollback), model_version, bundle_uri, bundle_sha256 (of the version
    in force after the row; null on a rollback that left the role empty), created_at, by, reason

Each box/camera/role is a stack: ``deploy`` pushes, ``rollback`` pops (so successive rollbacks
walk back through earlier deployments). A camera's own deployment overrides the box-wide one;
popping a camera's last champion falls back to the box's. A shadow equal to the champion of the
same scope is left out of the desired state (deploying the shadow as champion promotes it).

:func:`publish` writes ``<storage root>/deployments/<box>.json`` (the home, or the S3 prefix)
atomically: :func:`desired_state` signed with the bundles' Ed25519 key
(:func:`edge_export.service.deploy.sign_document`; marked unsigned when no key is set). The same
table gives the same bytes, and identical bytes are not rewritten.

Each :func:`deploy` or :func:`rollback` is one Delta commit; a deploy of what is already in force
commits nothing. A crash between the commit and :func:`publish` leaves the table ahead of the
published file: boxes keep running the previous desired state (they never read half a file)
until the next publish for that box (rerunning the same ``lensline deploy``, which commits
nothing the second time, or any later deploy or rollback) rewrites it from the table. Safe for
one writer at a time (two concurrent appends could reuse a ``seq``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from edge_export.service.deploy import ALL_CAMERAS, sign_document

if TYPE_CHECKING:
    from lake.storage import LensStorage

__all__ = [
    "Deployment",
    "DeploymentError",
    "Published",
    "deploy",
    "desired_state",
    "history",
    "publish",
    "rollback",
]

TABLE = "deployments"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Role = Literal["champion", "shadow"]


class DeploymentError(ValueError):
    """A deployment the lake refuses (the message names what is missing or wrong)."""


@dataclass(frozen=True)
class Deployment:
    """One ``deployments`` row."""

    seq: int
    box: str
    camera: str | None
    role: str
    action: str
    model_version: str | None
    bundle_uri: str | None
    bundle_sha256: str | None
    created_at: datetime
    by: str
    reason: str

    @property
    def where(self) -> str:
        return f"camera {self.camera} of box {self.box}" if self.camera else f"box {self.box}"


@dataclass(frozen=True)
class Published:
    """What :func:`publish` did: the document's URI, whether it was rewritten, signed or not."""

    uri: str
    changed: bool
    signed: bool
    seq: int


def deploy(
    storage: LensStorage,
    model_version: str,
    *,
    box: str,
    camera: str | None = None,
    role: Role = "champion",
    by: str,
    reason: str = "",
) -> Deployment:
    """Run ``model_version``'s edge bundle as ``role`` on ``box`` (or one ``camera`` of it).

    One commit; none when it is already in force there (the row in force is returned).
    :class:`DeploymentError` when a name is malformed, the role unknown, the version has no
    ``edge_bundles`` row, or a shadow would equal its champion.
    """
    _check(box=box, camera=camera, role=role)
    bundle = _bundle(storage, model_version)
    rows = _rows(storage)
    stacks = _stacks(r for r in rows if r.box == box)
    scope = camera or ALL_CAMERAS
    top = _top(stacks, scope, role)
    if top is not None and (top.model_version, top.bundle_sha256) == (
        model_version,
        bundle["sha256"],
    ):
        return top
    if role == "shadow":
        champion = _top(stacks, scope, "champion") or _top(stacks, ALL_CAMERAS, "champion")
        if champion is not None and champion.model_version == model_version:
            where = f"camera {camera} of box {box}" if camera else f"box {box}"
            raise DeploymentError(
                f"{model_version} is the champion on {where}: a shadow must be another version"
            )
    row = Deployment(
        seq=_next_seq(rows), box=box, camera=camera, role=role, action="deploy",
        model_version=model_version, bundle_uri=bundle["uri"], bundle_sha256=bundle["sha256"],
        created_at=_now(), by=by, reason=reason,
    )  # fmt: skip
    _append(storage, row)
    return row


def rollback(
    storage: LensStorage,
    *,
    box: str,
    camera: str | None = None,
    role: Role = "champion",
    by: str,
    reason: str = "",
) -> Deployment:
    """Go back to the previous ``role`` deployment of ``box`` (or ``camera``); one commit.

    A shadow may be rolled back to none (the shadow ends). A champion must leave one in force:
    the previous deployment of the scope, or for a camera the box-wide champion.
    :class:`DeploymentError` when there is nothing to go back to.
    """
    _check(box=box, camera=camera, role=role)
    rows = _rows(storage)
    stacks = _stacks(r for r in rows if r.box == box)
    scope = camera or ALL_CAMERAS
    stack = stacks.get((scope, role), [])
    where = f"camera {camera} of box {box}" if camera else f"box {box}"
    if not stack:
        raise DeploymentError(f"no {role} deployed on {where}: nothing to roll back")
    restored = stack[-2] if len(stack) > 1 else None
    if (
        role == "champion"
        and restored is None
        and (camera is None or _top(stacks, ALL_CAMERAS, "champion") is None)
    ):
        raise DeploymentError(
            f"no previous champion deployment on {where} to roll back to "
            f"({stack[-1].model_version} is the only one)"
        )
    row = Deployment(
        seq=_next_seq(rows), box=box, camera=camera, role=role, action="rollback",
        model_version=restored.model_version if restored else None,
        bundle_uri=restored.bundle_uri if restored else None,
        bundle_sha256=restored.bundle_sha256 if restored else None,
        created_at=_now(), by=by, reason=reason,
    )  # fmt: skip
    _append(storage, row)
    return row


def desired_state(storage: LensStorage, box: str) -> dict[str, Any]:
    """What ``box`` should run: ``{"box", "seq", "cameras": {camera | "*": {role: entry}}}``.

    ``entry``: ``model_version, bundle_uri, bundle_key`` (the URI relative to the storage
    root, or None when the bundle lives elsewhere), ``bundle_sha256, seq, created_at, by,
    reason`` of the deployment in force. ``seq`` is the box's latest change (0: none yet).
    """
    _check(box=box)
    mine = [r for r in _rows(storage) if r.box == box]
    root = storage.resolved_root().rstrip("/") + "/"
    cameras: dict[str, dict[str, Any]] = {}
    stacks = _stacks(mine)
    for (scope, role), stack in sorted(stacks.items()):
        if not stack:
            continue
        top = stack[-1]
        uri = top.bundle_uri or ""
        cameras.setdefault(scope, {})[role] = {
            "model_version": top.model_version,
            "bundle_uri": uri,
            "bundle_key": uri[len(root) :] if uri.startswith(root) else None,
            "bundle_sha256": top.bundle_sha256,
            "seq": top.seq,
            "created_at": top.created_at.isoformat(),
            "by": top.by,
            "reason": top.reason,
        }
    for roles in cameras.values():
        shadow, champion = roles.get("shadow"), roles.get("champion")
        if shadow and champion and shadow["model_version"] == champion["model_version"]:
            del roles["shadow"]
    return {"box": box, "seq": max((r.seq for r in mine), default=0), "cameras": cameras}


def publish(storage: LensStorage, box: str, *, signing_key: bytes | None) -> Published:
    """Write ``deployments/<box>.json`` (atomic; signed when ``signing_key``, Ed25519 PEM, is
    given, else marked unsigned). Unchanged bytes are not rewritten."""
    state = desired_state(storage, box)
    data = sign_document(state, signing_key)
    uri = storage.uri("deployments", f"{box}.json")
    changed = _read_or_none(storage, uri) != data
    if changed:
        storage.write_bytes(uri, data)
    return Published(uri, changed, signing_key is not None, state["seq"])


def history(storage: LensStorage, box: str | None = None) -> list[tuple[Deployment, bool]]:
    """Every deployment (of ``box``), newest first, with whether it is in force now."""
    rows = [r for r in _rows(storage) if box is None or r.box == box]
    live = set()
    for b in {r.box for r in rows}:
        for stack in _stacks(r for r in rows if r.box == b).values():
            if stack:
                live.add(stack[-1].seq)
    return [(r, r.seq in live) for r in sorted(rows, key=lambda r: -r.seq)]


# ---- helpers -----------------------------------------------------------------------------------
def _check(*, box: str, camera: str | None = None, role: str = "champion") -> None:
    for what, value in (("box", box), ("camera", camera)):
        if value is not None and not _ID.match(value):
            raise DeploymentError(
                f"{what} {value!r}: use 1-64 letters, digits, '_', '.' or '-' (it names a file)"
            )
    if role not in ("champion", "shadow"):
        raise DeploymentError(f"role {role!r}: must be champion or shadow")


def _bundle(storage: LensStorage, model_version: str) -> dict[str, Any]:
    """The ``edge_bundles`` row of ``model_version``; :class:`DeploymentError` naming what is
    missing (an unknown version, or a known one whose bundle was never built)."""
    bundles = storage.read_table("edge_bundles")
    rows = (
        bundles.filter(pl.col("model_version") == model_version).sort("created_at")
        if bundles is not None
        else None
    )
    if rows is not None and rows.height:
        return rows.row(-1, named=True)
    models = storage.read_table("models", columns=["model_version"])
    if models is None or model_version not in models["model_version"].to_list():
        raise DeploymentError(
            f"unknown model version {model_version!r}: not in the registry (lensline models list)"
        )
    raise DeploymentError(
        f"no edge bundle for {model_version}: materialise edge_bundle first "
        f"(lensline run --select key:edge_bundle, with {model_version} the champion)"
    )


def _rows(storage: LensStorage) -> list[Deployment]:
    df = storage.read_table(TABLE)
    if df is None:
        return []
    return sorted((Deployment(**row) for row in df.iter_rows(named=True)), key=lambda r: r.seq)


def _stacks(rows: Iterable[Deployment]) -> dict[tuple[str, str], list[Deployment]]:
    """Replay one box's rows in order: (camera or "*", role) -> deployments, newest last."""
    stacks: dict[tuple[str, str], list[Deployment]] = {}
    for row in sorted(rows, key=lambda r: r.seq):
        stack = stacks.setdefault((row.camera or ALL_CAMERAS, row.role), [])
        if row.action == "deploy":
            stack.append(row)
        elif stack:
            stack.pop()
    return stacks


def _top(stacks: dict[tuple[str, str], list[Deployment]], scope: str, role: str):
    stack = stacks.get((scope, role))
    return stack[-1] if stack else None


def _next_seq(rows: list[Deployment]) -> int:
    return max((r.seq for r in rows), default=0) + 1


def _append(storage: LensStorage, row: Deployment) -> None:
    from lake.tables import table_schema

    frame = table_schema(TABLE).conform([asdict(row)])
    storage.write_table(frame, TABLE, mode="append")


def _read_or_none(storage: LensStorage, uri: str) -> bytes | None:
    """The object's bytes, or None when there is none yet."""
    if not storage.is_s3_uri(uri):
        try:
            return storage.read_bytes(uri)
        except FileNotFoundError:
            return None
    from botocore.exceptions import ClientError

    try:
        return storage.read_bytes(uri)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)

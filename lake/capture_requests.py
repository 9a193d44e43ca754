"""Capture requests: what the boxes send back from the line, as data in the lake (issue 18).

``capture_requests`` (Delta; one row per request, the row replaced when its status changes):
    seq (the change that last touched the row), request_id, camera, reason, policy
    (``uncertain`` | ``shadow_disagree`` | ``random`` | ``alarm_clip``), margin (uncertain: top-1
    minus top-2 probability below this), every_n (random: 1 frame in N), before_s, after_s
    (alarm_clip: seconds kept before the alarm and recorded after it), per_hour (frames, or
    clips for alarm_clip, in any sliding hour), max_bytes (all the request's capture videos
    together), expires_at, created_at, created_by, status (``active`` | ``cancelled``)

``capture_reports`` (Delta, append-only; key box, video; written by the ``capture_requests``
asset): one row per capture video a box closed, from its sidecar report in
``landing/captures/<box>/<camera>/``: box, camera, request_id, policy, video, frame_count,
bytes, closed_at, sent_frames, sent_clips, sent_bytes, skipped_budget (the request's totals on
that box when the video closed), ingested_at. :func:`ingest_reports` appends the new ones in
one commit; a rerun appends nothing.

A request past ``expires_at`` reads as ``expired`` (:func:`effective_status`); nothing rewrites
it. :func:`publish` writes ONE document, ``<storage root>/capture_requests.json``: every active,
unexpired request, signed exactly like ``deployments/<box>.json``
(:func:`edge_export.service.deploy.sign_document`, format ``lensline.capture_requests/1``). Each
box takes the requests for its cameras (:mod:`edge_export.service.requests`): nothing is
captured without one, and a box never sends more than a request's budget.

Each :func:`request` or :func:`cancel` is one Delta commit; asking again for what is already
active (same camera, reason and policy) commits nothing and returns the active request, and
cancelling a request that is not active commits nothing. A crash between a commit and
:func:`publish` leaves the table ahead of the document: boxes keep the previous requests until
the next publish (any later ``lensline capture`` command or the ``capture_requests`` asset)
rewrites it from the table. Identical documents are not rewritten. One writer at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from edge_export.service.deploy import sign_document
from edge_export.service.requests import DOCUMENT, FORMAT

if TYPE_CHECKING:
    from lake.storage import LensStorage

__all__ = [
    "DOCUMENT",
    "FORMAT",
    "POLICIES",
    "CaptureRequest",
    "CaptureRequestError",
    "Published",
    "active",
    "cancel",
    "document",
    "effective_status",
    "from_drift",
    "history",
    "ingest_reports",
    "parse_duration",
    "publish",
    "reports",
    "request",
    "sent",
]

TABLE = "capture_requests"
REPORTS = "capture_reports"
DRIFT_REASON = "drift"  # the reason of the requests a detected drift makes
POLICIES = ("uncertain", "shadow_disagree", "random", "alarm_clip")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CaptureRequestError(ValueError):
    """A request the lake refuses; ``field`` names the input at fault."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class CaptureRequest:
    """One ``capture_requests`` row."""

    seq: int
    request_id: str
    camera: str
    reason: str
    policy: str
    margin: float | None
    every_n: int | None
    before_s: float | None
    after_s: float | None
    per_hour: int
    max_bytes: int
    expires_at: datetime
    created_at: datetime
    created_by: str
    status: str

    def entry(self) -> dict[str, Any]:
        """What a box reads of this request (the published document's ``requests[]``)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("seq", "status", "created_by")}
        out["expires_at"] = self.expires_at.isoformat()
        out["created_at"] = self.created_at.isoformat()
        return out


@dataclass(frozen=True)
class Published:
    """What :func:`publish` did: the document's URI, whether it changed, signed or not, and
    how many requests it holds."""

    uri: str
    changed: bool
    signed: bool
    requests: int


def request(
    storage: LensStorage,
    *,
    camera: str,
    policy: str,
    per_hour: int,
    max_bytes: int,
    expires_in: timedelta,
    reason: str,
    created_by: str,
    margin: float | None = None,
    every_n: int | None = None,
    before_s: float | None = None,
    after_s: float | None = None,
    now: datetime | None = None,
) -> tuple[CaptureRequest, bool]:
    """Ask the boxes for frames of ``camera``: ``(request, created)``; one commit when created.

    An active request of the same camera, reason and policy is returned as it is
    (``created`` False, nothing committed). :class:`CaptureRequestError` names the field at
    fault: a malformed camera, an unknown policy, a missing or out-of-range parameter
    (``margin`` in (0, 1] for ``uncertain``, ``every_n`` >= 1 for ``random``, ``before_s`` and
    ``after_s`` >= 0 for ``alarm_clip``), a budget or an expiry that is not positive.
    """
    now = now or _now()
    params = _check(camera, policy, per_hour, max_bytes, expires_in, reason, margin, every_n,
                    before_s, after_s)  # fmt: skip
    rows = _rows(storage)
    for row in rows:
        same = (row.camera, row.reason, row.policy) == (camera, reason, policy)
        if same and effective_status(row, now) == "active":
            return row, False
    seq = _next_seq(rows)
    row = CaptureRequest(
        seq=seq, request_id=f"cr-{seq:05d}", camera=camera, reason=reason, policy=policy,
        per_hour=per_hour, max_bytes=max_bytes, expires_at=now + expires_in, created_at=now,
        created_by=created_by, status="active", **params,
    )  # fmt: skip
    _write(storage, row, append=True)
    return row, True


def cancel(
    storage: LensStorage, request_id: str, *, now: datetime | None = None
) -> tuple[CaptureRequest, bool]:
    """Stop ``request_id``: ``(row, changed)``; one commit when it was active (boxes stop at
    once when they read the next document). :class:`CaptureRequestError` if it is unknown."""
    now = now or _now()
    row = next((r for r in _rows(storage) if r.request_id == request_id), None)
    if row is None:
        raise CaptureRequestError("request_id", f"no capture request {request_id!r}")
    if effective_status(row, now) != "active":
        return row, False
    row = replace(row, seq=_next_seq(_rows(storage)), status="cancelled")
    _write(storage, row, append=False)
    return row, True


def active(storage: LensStorage, *, camera: str | None = None, now: datetime | None = None):
    """The requests in force (active and unexpired), oldest first (of ``camera`` only)."""
    now = now or _now()
    return [
        r
        for r in _rows(storage)
        if effective_status(r, now) == "active" and (camera is None or r.camera == camera)
    ]


def history(storage: LensStorage, *, now: datetime | None = None):
    """Every request, newest first, with its status as it reads now."""
    now = now or _now()
    return [(r, effective_status(r, now)) for r in sorted(_rows(storage), key=lambda r: -r.seq)]


def effective_status(row: CaptureRequest, now: datetime) -> str:
    """``active``, ``cancelled`` or ``expired`` (an active row past its ``expires_at``)."""
    if row.status == "active" and row.expires_at <= now:
        return "expired"
    return row.status


def document(storage: LensStorage, *, now: datetime | None = None) -> dict[str, Any]:
    """The published payload: ``{"seq", "requests": [entry, ...]}`` (active ones, by id).
    ``seq`` is the latest change to the table, so a box refuses an older document."""
    rows = _rows(storage)
    live = sorted(active(storage, now=now), key=lambda r: r.request_id)
    return {"seq": max((r.seq for r in rows), default=0), "requests": [r.entry() for r in live]}


def publish(
    storage: LensStorage, *, signing_key: bytes | None, now: datetime | None = None
) -> Published:
    """Write ``<root>/capture_requests.json`` (atomic; signed when ``signing_key``, Ed25519
    PEM, is given, else marked unsigned). Unchanged bytes are not rewritten."""
    from lake.deployments import _read_or_none

    payload = document(storage, now=now)
    data = sign_document(payload, signing_key, format=FORMAT)
    uri = storage.uri(DOCUMENT)
    changed = _read_or_none(storage, uri) != data
    if changed:
        storage.write_bytes(uri, data)
    return Published(uri, changed, signing_key is not None, len(payload["requests"]))


def from_drift(
    storage: LensStorage,
    *,
    margin: float,
    per_hour: int,
    max_bytes: int,
    expires_in: timedelta,
    created_by: str,
    now: datetime | None = None,
    per_camera: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[CaptureRequest]:
    """One ``uncertain`` request (reason ``drift``) per camera whose drift was detected, in
    landed video (``drift``: ``drifted``) or in its heartbeats (``line_drift``: ``detected``),
    since its latest drift request was made, unless one is still active: a drift already
    answered asks for nothing more. The requests created."""
    import polars as pl

    now = now or _now()
    found = []
    for table, camera, flag in (("drift", "camera_id", "drifted"),
                                ("line_drift", "camera", "detected")):  # fmt: skip
        df = storage.read_table(table, columns=[camera, flag, "computed_at"])
        if df is not None:
            found.append(
                df.filter(pl.col(flag).fill_null(False)).select(
                    pl.col(camera).alias("camera"), "computed_at"
                )
            )
    if not found:
        return []
    latest = pl.concat(found).group_by("camera").agg(pl.col("computed_at").max()).sort("camera")
    asked: dict[str, datetime] = {}
    for r in _rows(storage):
        if r.reason == DRIFT_REASON and r.policy == "uncertain":
            asked[r.camera] = max(asked.get(r.camera, r.created_at), r.created_at)
    created: list[CaptureRequest] = []
    for camera, detected_at in latest.iter_rows():
        if camera in asked and detected_at is not None and detected_at <= asked[camera]:
            continue
        # the camera's line may set the margin and caps (:func:`line_capture`)
        own = {"margin": margin, "per_hour": per_hour, "max_bytes": max_bytes,
               **(per_camera or {}).get(camera, {})}  # fmt: skip
        if own["per_hour"] < 1 or own["max_bytes"] < 1:
            continue  # the camera's line allows nothing back
        row, new = request(
            storage, camera=camera, policy="uncertain", expires_in=expires_in,
            reason=DRIFT_REASON, created_by=created_by, now=now, **own,
        )  # fmt: skip
        if new:
            created.append(row)
    return created


def line_capture(
    configs: Iterable[Any], *, margin: float, per_hour: int, max_bytes: int
) -> dict[str, dict[str, Any]]:
    """Per camera of the lines in force (:class:`lake.line_config.LineConfig`), the drift
    request's ``margin`` (the line's ``capture.uncertain_margin``, else ``margin``) and caps
    (``per_hour`` and ``max_bytes`` no higher than the line's ``max_per_hour`` and
    ``max_mb_per_hour``: the line bounds every request of its cameras)."""
    out: dict[str, dict[str, Any]] = {}
    for config in configs:
        cap = config.capture
        for camera in config.cameras:
            out[camera.id] = {
                "margin": cap.uncertain_margin or margin,
                "per_hour": min(per_hour, cap.max_per_hour),
                "max_bytes": min(max_bytes, int(cap.max_mb_per_hour * 1_000_000)),
            }
    return out


def reports(storage: LensStorage) -> list[dict[str, Any]]:
    """The boxes' capture reports: one row per closed capture video, from its sidecar
    ``landing/captures/<box>/<camera>/req-*.json`` (``capture_reports`` columns but
    ``ingested_at``). A file that is not a readable report is left out (looked at again later)."""
    import json

    rows = []
    for f in storage.list_files("landing", "captures", suffixes=(".json",)):
        name = f.key.rsplit("/", 1)[-1]
        if not name.startswith("req-"):
            continue
        try:
            doc = json.loads(storage.read_bytes(f.uri))
            total = doc["sent"]
            rows.append({
                "box": str(doc["box"]), "camera": str(doc["camera"]),
                "request_id": str(doc["request_id"]), "policy": str(doc["policy"]),
                "video": name[: -len(".json")] + ".mp4", "frame_count": int(doc["frame_count"]),
                "bytes": int(doc["bytes"]), "closed_at": datetime.fromtimestamp(
                    float(doc["closed_at"]), UTC),
                "sent_frames": int(total["frames"]), "sent_clips": int(total["clips"]),
                "sent_bytes": int(total["bytes"]), "skipped_budget": int(total["skipped_budget"]),
            })  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue  # not a capture report (or a half-written one): left to the next look
    return rows


def ingest_reports(storage: LensStorage) -> int:
    """Append the reports not in ``capture_reports`` yet (key: box, video); one commit, none
    when there is nothing new. The number of rows appended."""
    import polars as pl

    from lake.tables import table_schema

    schema = table_schema(REPORTS)
    now = _now()
    new = schema.conform([{**r, "ingested_at": now} for r in reports(storage)])
    done = storage.read_table(REPORTS, columns=["box", "video"])
    if done is not None:
        new = new.join(done, on=["box", "video"], how="anti")
    if new.height:
        storage.write_table(new.select(pl.col(c) for c in schema.columns), REPORTS, mode="append")
    return new.height


def sent(storage: LensStorage) -> dict[str, dict[str, int]]:
    """What the boxes report they sent, per request: ``frames, clips, bytes, skipped_budget,
    boxes`` (each box's latest report of the request, summed over the boxes), from the
    reports in the landing zone (:func:`reports`)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in reports(storage):
        key = (r["request_id"], r["box"])
        if key not in latest or r["closed_at"] > latest[key]["closed_at"]:
            latest[key] = r
    out: dict[str, dict[str, int]] = {}
    for (rid, _box), r in sorted(latest.items()):
        row = out.setdefault(rid, {"frames": 0, "clips": 0, "bytes": 0, "skipped_budget": 0,
                                   "boxes": 0})  # fmt: skip
        for k in ("frames", "clips", "bytes"):
            row[k] += r[f"sent_{k}"]
        row["skipped_budget"] += r["skipped_budget"]
        row["boxes"] += 1
    return out


def parse_duration(text: str) -> timedelta:
    """``90m``, ``24h``, ``2d`` or seconds (``3600``) as a timedelta (ValueError otherwise)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 90m, 24h, 2d)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return timedelta(seconds=float(m.group(1)) * unit)


# ---- helpers -----------------------------------------------------------------------------------
def _check(camera, policy, per_hour, max_bytes, expires_in, reason, margin, every_n, before_s,
           after_s) -> dict[str, Any]:  # fmt: skip
    """The policy's parameters (the others None); :class:`CaptureRequestError` naming a field."""
    if not isinstance(camera, str) or not _ID.match(camera):
        raise CaptureRequestError(
            "camera", f"{camera!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    if policy not in POLICIES:
        raise CaptureRequestError("policy", f"{policy!r}: one of {', '.join(POLICIES)}")
    if isinstance(per_hour, bool) or not isinstance(per_hour, int) or per_hour < 1:
        raise CaptureRequestError("per_hour", f"must be a whole number >= 1, got {per_hour!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise CaptureRequestError("max_bytes", f"must be a whole number >= 1, got {max_bytes!r}")
    if not isinstance(expires_in, timedelta) or expires_in.total_seconds() <= 0:
        raise CaptureRequestError("expires", f"must be a positive duration, got {expires_in!r}")
    if not isinstance(reason, str) or not reason.strip():
        raise CaptureRequestError("reason", "missing (why the frames are wanted)")
    params: dict[str, Any] = {"margin": None, "every_n": None, "before_s": None, "after_s": None}
    if policy == "uncertain":
        if margin is None or isinstance(margin, bool) or not 0 < float(margin) <= 1:
            raise CaptureRequestError("margin", f"uncertain needs 0 < margin <= 1, got {margin!r}")
        params["margin"] = float(margin)
    elif policy == "random":
        if isinstance(every_n, bool) or not isinstance(every_n, int) or every_n < 1:
            raise CaptureRequestError("every_n", f"random needs every_n >= 1, got {every_n!r}")
        params["every_n"] = every_n
    elif policy == "alarm_clip":
        for name, value in (("before_s", before_s), ("after_s", after_s)):
            if value is None or isinstance(value, bool) or not 0 <= float(value) <= 600:
                raise CaptureRequestError(
                    name, f"alarm_clip needs 0 <= {name} <= 600 seconds, got {value!r}"
                )
            params[name] = float(value)
    return params


def _rows(storage: LensStorage) -> list[CaptureRequest]:
    df = storage.read_table(TABLE)
    if df is None:
        return []
    return sorted((CaptureRequest(**r) for r in df.iter_rows(named=True)), key=lambda r: r.seq)


def _next_seq(rows: list[CaptureRequest]) -> int:
    return max((r.seq for r in rows), default=0) + 1


def _write(storage: LensStorage, row: CaptureRequest, *, append: bool) -> None:
    from lake.tables import table_schema

    frame = table_schema(TABLE).conform([asdict(row)])
    if append:
        storage.write_table(frame, TABLE, mode="append")
    else:
        where = storage.eq_predicate("request_id", row.request_id)
        storage.write_table(frame, TABLE, replace_where=where)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)

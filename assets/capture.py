"""capture_requests: a detected drift asks the line for data by itself (issue 18).

For every camera whose drift was detected since its last drift request (by ``drift_report``
on landed video, or by ``line_drift`` on the boxes' heartbeats),
:func:`lake.capture_requests.from_drift` adds one ``uncertain`` request (one commit each; none
while one is active, so a rerun creates nothing), then the active requests are published signed
as ``capture_requests.json`` for the boxes. ``lensline capture`` owns the same table by hand.
The boxes' reports (sidecars in ``landing/captures/<box>/``, which ``capture_reports_sensor``
watches) are appended to ``capture_reports`` (one commit, new ones only).
"""

import hashlib
from datetime import timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from assets.provenance import code_version
from assets.tables import md_table
from lake import pools
from lake.storage import LensStorage


class CaptureRequestsConfig(dg.Config):
    """The request a detected drift makes: what to send back and how much."""

    margin: float = Field(
        default=0.2, description="Frames whose top-1 minus top-2 probability is below this."
    )
    per_hour: int = Field(default=60, description="Frames per camera and hour, at most.")
    max_mb: float = Field(default=50.0, description="Megabytes per request, at most.")
    expires_h: float = Field(default=24.0, description="Hours the request runs.")


@dg.asset(
    pool=pools.GRAPH,
    deps=["drift_report", "line_drift", "line_config_capture"],
    group_name="drift",
    kinds={"delta", "json"},
    code_version=code_version("capture_requests", 3, CaptureRequestsConfig().model_dump()),
)
def capture_requests(config: CaptureRequestsConfig, storage: LensStorage):
    """Capture requests for the boxes (uncertain frames of every drifted camera), published
    signed, and what the boxes reported they sent."""
    from edge_export.bundle import load_signing_key
    from lake import capture_requests as cr
    from lake.line_config import active_all

    key = load_signing_key()  # LENSLINE_SIGNING_KEY(_FILE), read at run time, never shown
    margin, per_hour = config.margin, config.per_hour
    max_bytes = int(config.max_mb * 1_000_000)
    lines = cr.line_capture(  # the lines in force bound their cameras' requests
        [v.config for v in active_all(storage)],
        margin=margin, per_hour=per_hour, max_bytes=max_bytes,
    )  # fmt: skip
    created = cr.from_drift(
        storage, margin=margin, per_hour=per_hour, max_bytes=max_bytes,
        expires_in=timedelta(hours=config.expires_h), created_by="capture_requests asset",
        per_camera=lines,
    )  # fmt: skip
    done = cr.publish(storage, signing_key=key)
    ingested, reports = cr.ingest_reports(storage), cr.sent(storage)
    rows = [{"request": r.request_id, "camera": r.camera, "policy": r.policy,
             "reason": r.reason, "per_hour": r.per_hour, "max_mb": r.max_bytes / 1e6,
             "expires_at": r.expires_at.strftime("%Y-%m-%d %H:%M"),
             **{f"sent_{k}": v for k, v in reports.get(r.request_id, {}).items()}}
            for r in cr.active(storage)]  # fmt: skip
    return dg.MaterializeResult(
        data_version=dg.DataVersion(
            hashlib.sha256(storage.read_bytes(done.uri) + str(reports).encode()).hexdigest()
        ),
        metadata={
            "created": ", ".join(f"{r.request_id} ({r.camera})" for r in created) or "none",
            "active": done.requests,
            "signed": done.signed,
            "reports_ingested": ingested,
            "document": done.uri,
            "requests": dg.MetadataValue.md(
                md_table(pl.DataFrame(rows)) if rows else "no active capture requests"
            ),
        },
    )

"""lake.capture_requests on a temp home: requests, cancel, expiry, the signed document, the
requests a detected drift makes and what the boxes reported they sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from edge_export.bundle import generate_signing_key, load_trusted_key
from edge_export.service.requests import FORMAT, RequestsWatcher
from lake import capture_requests as cr
from lake.storage import LensStorage
from lake.tables import table_schema

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ARGS = dict(camera="cam1", policy="uncertain", margin=0.2, per_hour=60, max_bytes=50_000_000,
            expires_in=timedelta(hours=24), reason="test", created_by="t")  # fmt: skip


def test_a_request_is_one_commit_and_asking_again_commits_nothing(home):
    storage = LensStorage()
    row, created = cr.request(storage, **ARGS, now=NOW)
    assert created and row.request_id == "cr-00001" and row.expires_at == NOW + timedelta(hours=24)
    version = storage.table_version("capture_requests")
    again, created = cr.request(storage, **ARGS, now=NOW + timedelta(hours=1))
    assert not created and again == row and storage.table_version("capture_requests") == version
    other, created = cr.request(storage, **{**ARGS, "policy": "random", "margin": None,
                                            "every_n": 10}, now=NOW)  # fmt: skip
    assert created and other.request_id == "cr-00002" and other.every_n == 10
    assert [r.request_id for r in cr.active(storage, now=NOW)] == ["cr-00001", "cr-00002"]


def test_cancel_and_expiry_end_a_request(home):
    storage = LensStorage()
    row, _ = cr.request(storage, **ARGS, now=NOW)
    short, _ = cr.request(storage, **{**ARGS, "reason": "short", "expires_in": timedelta(hours=1)},
                          now=NOW)  # fmt: skip
    cancelled, changed = cr.cancel(storage, row.request_id, now=NOW)
    assert changed and cancelled.status == "cancelled" and cancelled.seq == 3
    assert not cr.cancel(storage, row.request_id, now=NOW)[1]  # twice: nothing more
    later = NOW + timedelta(hours=2)
    assert dict((r.request_id, s) for r, s in cr.history(storage, now=later)) == {
        "cr-00001": "cancelled", "cr-00002": "expired"}  # fmt: skip
    assert cr.active(storage, now=later) == []
    with pytest.raises(cr.CaptureRequestError) as err:
        cr.cancel(storage, "cr-404")
    assert err.value.field == "request_id"
    assert short.request_id == "cr-00002"


@pytest.mark.parametrize(
    ("change", "field"),
    [({"camera": "cam 1"}, "camera"), ({"policy": "all"}, "policy"), ({"margin": None}, "margin"),
     ({"margin": 1.5}, "margin"), ({"per_hour": 0}, "per_hour"), ({"max_bytes": -1}, "max_bytes"),
     ({"expires_in": timedelta(0)}, "expires"), ({"reason": " "}, "reason"),
     ({"policy": "random"}, "every_n"), ({"policy": "alarm_clip"}, "before_s")],
)  # fmt: skip
def test_a_bad_request_names_its_field_and_writes_nothing(home, change, field):
    storage = LensStorage()
    with pytest.raises(cr.CaptureRequestError) as err:
        cr.request(storage, **{**ARGS, **change})
    assert err.value.field == field
    assert storage.read_table("capture_requests") is None


def test_the_published_document_is_signed_and_holds_the_active_requests(home):
    storage = LensStorage()
    key, pub = generate_signing_key()
    row, _ = cr.request(storage, **ARGS)
    done = cr.publish(storage, signing_key=key)
    assert done.changed and done.signed and done.requests == 1
    assert not cr.publish(storage, signing_key=key).changed  # same table, same bytes
    doc = json.loads(storage.read_bytes(done.uri))
    assert doc["format"] == FORMAT and doc["signature"]["algorithm"] == "ed25519"
    assert doc["payload"]["requests"][0]["request_id"] == row.request_id
    watcher = RequestsWatcher(lambda: storage.read_bytes(done.uri),
                              trusted=load_trusted_key(pub), cameras=["cam1"])  # fmt: skip
    (req,) = watcher.poll() or []
    assert (req.policy, req.margin, req.max_bytes) == ("uncertain", 0.2, 50_000_000)
    cr.cancel(storage, row.request_id)
    cr.publish(storage, signing_key=key)
    assert watcher.poll() == [] and watcher.seq == 2


def _drift(storage, camera: str, drifted: bool, at: datetime, video: str) -> None:
    row = {"video_id": video, "camera_id": camera, "kind": "data", "statistic": "brightness",
           "drifted": drifted, "status": "ok", "computed_at": at}  # fmt: skip
    storage.write_table(table_schema("drift").conform([row]), "drift", mode="append")


def test_a_detected_drift_makes_one_request_per_camera(home):
    storage = LensStorage()
    _drift(storage, "cam1", True, NOW, "cam1__a")
    _drift(storage, "cam2", False, NOW, "cam2__a")
    args = dict(margin=0.2, per_hour=60, max_bytes=10**7, expires_in=timedelta(hours=24),
                created_by="t")  # fmt: skip
    (made,) = cr.from_drift(storage, **args, now=NOW + timedelta(minutes=1))
    assert (made.camera, made.reason, made.policy) == ("cam1", "drift", "uncertain")
    assert cr.from_drift(storage, **args, now=NOW + timedelta(minutes=2)) == []  # active
    # expired and no new drift since: nothing; a new drift after it: a new request
    assert cr.from_drift(storage, **args, now=NOW + timedelta(days=2)) == []
    _drift(storage, "cam1", True, NOW + timedelta(days=3), "cam1__b")
    (again,) = cr.from_drift(storage, **args, now=NOW + timedelta(days=3, minutes=1))
    assert again.request_id == "cr-00002"


def test_the_capture_requests_asset_asks_once_per_drift(home):
    from assets.capture import capture_requests

    storage = LensStorage()
    _drift(storage, "cam1", True, datetime.now(UTC) - timedelta(minutes=1), "cam1__a")
    resources = {"storage": LensStorage()}
    first = dg.materialize([capture_requests], resources=resources)
    assert first.success
    meta = first.asset_materializations_for_node("capture_requests")[0].metadata
    assert meta["active"].value == 1 and "cam1" in meta["created"].value
    second = dg.materialize([capture_requests], resources=resources)
    meta2 = second.asset_materializations_for_node("capture_requests")[0].metadata
    assert meta2["created"].value == "none" and meta2["active"].value == 1
    assert storage.read_table("capture_requests").height == 1
    _report(home, "b1", 1.0, 3)
    third = dg.materialize([capture_requests], resources=resources)
    meta3 = third.asset_materializations_for_node("capture_requests")[0].metadata
    assert meta3["reports_ingested"].value == 1 and "sent_frames" in meta3["requests"].value
    doc = json.loads((home / "capture_requests.json").read_text())
    assert [r["camera"] for r in doc["payload"]["requests"]] == ["cam1"]


def _report(home, box: str, at: float, frames: int) -> None:
    side = home / "landing" / "captures" / box / "cam1" / f"req-cr-00001-{box}-cam1-{at:.0f}.json"
    side.parent.mkdir(parents=True, exist_ok=True)
    sent = {"frames": frames, "clips": 1, "bytes": 100 * frames, "skipped_budget": 1}
    side.write_text(json.dumps({"box": box, "camera": "cam1", "request_id": "cr-00001",
                                "policy": "random", "frame_count": 2, "bytes": 200,
                                "closed_at": at, "sent": sent, "frames": []}))  # fmt: skip


def test_what_the_boxes_sent_is_read_from_their_reports(home):
    storage = LensStorage()
    for box, at, frames in (("b1", 1.0, 3), ("b1", 2.0, 7), ("b2", 1.0, 2)):
        _report(home, box, at, frames)
    (home / "landing" / "captures" / "b1" / "cam1" / "shadow-b1-1.json").write_text("{}")
    (home / "landing" / "captures" / "b1" / "cam1" / "req-broken.json").write_text("{")
    assert cr.sent(storage) == {
        "cr-00001": {"frames": 9, "clips": 2, "bytes": 900, "skipped_budget": 2, "boxes": 2}
    }
    assert cr.ingest_reports(storage) == 3
    version = storage.table_version("capture_reports")
    assert cr.ingest_reports(storage) == 0 and storage.table_version("capture_reports") == version
    _report(home, "b2", 3.0, 4)
    assert cr.ingest_reports(storage) == 1
    table = storage.read_table("capture_reports")
    assert table.height == 4 and set(table["video"]) == {
        "req-cr-00001-b1-cam1-1.mp4", "req-cr-00001-b1-cam1-2.mp4", "req-cr-00001-b2-cam1-1.mp4",
        "req-cr-00001-b2-cam1-3.mp4"}  # fmt: skip


def test_capture_reports_sensor_asks_for_a_run_per_new_report(home):
    from orchestration.sensors import capture_reports_sensor

    with dg.build_sensor_context() as context:
        assert isinstance(capture_reports_sensor(context, storage=LensStorage()), dg.SkipReason)
    _report(home, "b1", 1.0, 3)
    with dg.build_sensor_context() as context:
        first = capture_reports_sensor(context, storage=LensStorage())
    assert len(first.run_requests) == 1
    with dg.build_sensor_context(cursor=first.cursor) as context:
        assert isinstance(capture_reports_sensor(context, storage=LensStorage()), dg.SkipReason)


def test_the_cameras_line_sets_the_drift_requests_margin_and_caps(home, tmp_path):
    """A camera on a line with ``capture: {uncertain_margin, max_per_hour, max_mb_per_hour}``
    gets that margin and caps no higher than the line's; a camera on no line the asset's own;
    a line that allows nothing back gets no request."""
    from assets.capture import capture_requests
    from lake.line_config import apply

    storage = LensStorage()
    line = tmp_path / "line.yaml"
    line.write_text(
        "line: line1\ncameras:\n  - {id: cam1, box: b1, source: rtsp://127.0.0.1/cam1}\n"
        "  - {id: cam3, box: b1, source: rtsp://127.0.0.1/cam3}\n"
        "classes:\n  - {name: good, role: ok}\n  - {name: scratch, role: defect}\n"
        "capture: {uncertain_margin: 0.1, max_per_hour: 5, max_mb_per_hour: 1.0}\n"
    )
    apply(storage, line, by="t")
    now = datetime.now(UTC) - timedelta(minutes=1)
    for cam in ("cam1", "cam2"):
        _drift(storage, cam, True, now, f"{cam}__a")
    assert dg.materialize([capture_requests], resources={"storage": LensStorage()}).success
    got = {r.camera: (r.margin, r.per_hour, r.max_bytes) for r in cr.active(storage)}
    assert got == {"cam1": (0.1, 5, 1_000_000), "cam2": (0.2, 60, 50_000_000)}

    line.write_text(line.read_text().replace("max_per_hour: 5", "max_per_hour: 0"))
    apply(storage, line, by="t")
    _drift(storage, "cam3", True, datetime.now(UTC), "cam3__a")
    assert dg.materialize([capture_requests], resources={"storage": LensStorage()}).success
    assert "cam3" not in {r.camera for r in cr.active(storage)}

"""Box telemetry on real parts: ``lensline-edge serve`` on a looping clip writes heartbeat
segments with every field, publishes them to the lake's landing/telemetry, and fleet_sensor and
edge_fleet turn them into fleet_state."""

from __future__ import annotations

import json
import time

import dagster as dg

from edge_export.service.telemetry import EDGES, FRAME_STATS
from lake.storage import LensStorage
from tests.edge_export.test_serve import (  # noqa: F401 - fixtures
    Running,
    _config,
    _frames_since,
    clip,
    keys,
    lake,
)

FIELDS = {
    "box", "camera", "at", "models", "fps", "frames", "latency_p50_s", "latency_p95_s",
    "decoded", "dropped", "skipped", "stream_state", "gaps", "gap_s", "alarms",
    "shadow_frames", "shadow_agree", "shadow_agreement", "signals", "software_version",
    "frame_stats", "heartbeat_s", "segment_s", "refused", "stream", "capture_requests",
}  # fmt: skip


def test_heartbeats_land_as_segments_and_become_the_fleet_state(lake, keys, home, tmp_path, clip):  # noqa: F811, E501
    from assets.fleet import edge_fleet
    from orchestration.sensors import fleet_sensor

    lake("m-001"), lake("m-002")
    lake.deploy("m-001", shadow="m-002")
    config = _config(home, tmp_path, keys, clip, heartbeat_s=0.3, telemetry={"segment_s": 0.6})
    run = Running(config)
    try:
        run.wait(_frames_since(60), what="60 frames")
        run.wait(lambda s: len(s.telemetry.closed) >= 2, what="two closed telemetry segments")
    finally:
        run.stop()
    local = sorted((tmp_path / "out" / "telemetry" / "cam1").glob("*.jsonl"))
    beats = [json.loads(x) for f in local for x in f.read_text().splitlines()]
    assert len(beats) >= 3 and all(set(b) >= FIELDS for b in beats)
    scored = [b for b in beats if b["frame_stats"]["brightness"]["n"]]
    assert scored, "beats carry the frame statistics of the frames inspected since the last"
    b = scored[-1]
    assert b["models"]["champion"]["model_version"] == "m-001"
    assert b["models"]["shadow"]["model_version"] == "m-002"
    assert len(b["models"]["champion"]["bundle_sha256"]) == 64
    assert b["shadow_frames"] > 0 and b["shadow_agreement"] == 1.0  # one model, two versions
    for s in FRAME_STATS:
        st = b["frame_stats"][s]
        assert sum(st["hist"]) == st["n"] and len(st["hist"]) == len(EDGES[s]) - 1
    assert 0 < b["frame_stats"]["brightness"]["mean"] < 256
    total = sum(x["frame_stats"]["brightness"]["n"] for x in beats)
    assert total == run.frames()  # every inspected frame measured once, in exactly one beat
    landed = sorted((home / "landing" / "telemetry" / "b1").glob("*.jsonl"))
    assert [p.name for p in landed] == [p.name for p in local]  # every closed segment published
    storage = LensStorage()
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"storage": storage})
        assert fleet_sensor(ctx).run_requests, "fleet_sensor asks for edge_fleet"
    assert dg.materialize([edge_fleet], resources={"storage": storage}).success
    state = storage.read_table("fleet_state")
    assert state.select(
        "box", "camera", "champion_version", "shadow_version", "on_desired"
    ).rows() == [("b1", "cam1", "m-001", "m-002", True)]
    assert storage.read_table("fleet_heartbeats").height == len(beats)
    # the box is gone: fleet_reporting fails once its last beat is more than 3 beats old
    # (after the segment's wait on the box), i.e. 3 * 0.3 + 0.6 = 1.5 s after the last beat
    last = max(x["at"] for x in beats)
    while True:
        result = dg.materialize([edge_fleet], resources={"storage": storage})
        check = {c.check_name: c for c in result.get_asset_check_evaluations()}["fleet_reporting"]
        if not check.passed:
            break
        assert time.time() - last < 10, "a silent box never failed fleet_reporting"
    assert "b1/cam1: silent for" in check.description
    assert time.time() - last >= 1.5  # not before its time either

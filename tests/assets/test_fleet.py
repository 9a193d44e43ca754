"""edge_fleet, line_drift and fleet_sensor through real Dagster runs on real Delta tables in a
temp home, from heartbeat segments laid out as the boxes publish them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import polars as pl

from assets.fleet import edge_fleet, line_drift
from data_quality.drift import build_reference
from edge_export.service.telemetry import FRAME_STATS, FrameStatsWindow
from lake.deployments import deploy
from lake.storage import LensStorage
from tests.assets.test_deployments_asset import add_bundle

BASE = {"brightness": 120.0, "contrast": 40.0, "sharpness": 300.0}


def beat(
    box: str,
    camera: str,
    at: float,
    version: str,
    *,
    scale: float = 1.0,
    rng=None,
    refused: list[str] | None = None,
) -> dict:
    """One heartbeat line as ``lensline-edge serve`` writes it (the fields the graph reads)."""
    rng = rng or np.random.default_rng(0)
    window = FrameStatsWindow()
    for _ in range(50):
        window.add({k: v * scale + rng.normal(0, v * 0.03) for k, v in BASE.items()})
    return {
        "box": box, "camera": camera, "at": at, "heartbeat_s": 10.0, "segment_s": 30.0,
        "models": {"champion": {"model_version": version, "bundle_sha256": "a" * 64,
                                "bundle": "/x/bundle.tar.gz"}},
        "decoded": 500, "dropped": 0, "skipped": 0, "stream_state": "online", "gaps": 0,
        "gap_s": 0.0, "shadow_frames": 0, "shadow_agree": 0, "shadow_agreement": None,
        "software_version": "0.1.0", "frames": 500, "fps": 25.0, "alarms": 1,
        "latency_p50_s": 0.02, "latency_p95_s": 0.04, "stream": {}, "refused": refused or [],
        "shadow_captures": {}, "signals": {"mqtt": {"connected": True}},
        "frame_stats": window.take(),
    }  # fmt: skip


def land(home, box: str, camera: str, beats: list[dict]) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(beats[0]["at"]))
    path = home / "landing" / "telemetry" / box / f"{camera}__{stamp}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(b) + "\n" for b in beats))


def checks(result) -> dict:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_edge_fleet_is_idempotent_and_names_a_silent_box_and_one_off_its_deployment(home):
    storage = LensStorage()
    add_bundle(storage, "m-001", "a"), add_bundle(storage, "m-002", "b")
    for box in ("b1", "b2"):
        deploy(storage, "m-001", box=box, by="test")
    deploy(storage, "m-002", box="b2", by="test")  # b2 refuses it: keeps running m-001
    now = time.time()
    land(home, "b1", "cam1", [beat("b1", "cam1", now - 10 * i, "m-001") for i in (2, 1, 0)])
    land(home, "b2", "cam7", [beat("b2", "cam7", now - 300 - 10 * i, "m-001",
                                   refused=["cam7: bundle signature invalid"]) for i in (1, 0)])  # fmt: skip
    first = dg.materialize([edge_fleet], resources={"storage": storage})
    second = dg.materialize([edge_fleet], resources={"storage": storage})
    assert first.success and second.success
    assert storage.read_table("fleet_heartbeats").height == 5  # the rerun appended nothing
    state = storage.read_table("fleet_state").sort("box")
    assert state["health"].to_list() == ["ok", "silent"]
    assert state["on_desired"].to_list() == [True, False]
    got = checks(second)
    assert not got["fleet_reporting"].passed
    assert (
        "b2/cam7" in got["fleet_reporting"].description
        and "b1" not in got["fleet_reporting"].description
    )
    off = got["fleet_on_desired_bundle"]
    assert not off.passed and "b2/cam7: runs m-001, deployment says m-002" in off.description
    assert "signature" in off.description
    meta = second.asset_materializations_for_node("edge_fleet")[0].metadata
    assert "b2" in meta["fleet"].value and "data:image/png;base64" in meta["plots"].value


def test_fleet_sensor_requests_edge_fleet_for_new_segments_only(home):
    from orchestration.sensors import fleet_sensor

    storage = LensStorage()
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"storage": storage})
        assert isinstance(fleet_sensor(ctx), dg.SkipReason)  # nothing landed yet
        land(home, "b1", "cam1", [beat("b1", "cam1", time.time(), "m-001")])
        result = fleet_sensor(ctx)
        [request] = result.run_requests
        assert "cam1__" in request.tags["lensline/reason"]
        again = dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                        resources={"storage": storage})  # fmt: skip
        assert isinstance(fleet_sensor(again), dg.SkipReason)
        stale = json.dumps({**json.loads(result.cursor), "at": 0.0})  # a minute later: re-check
        ctx = dg.build_sensor_context(
            instance=instance, cursor=stale, resources={"storage": storage}
        )
        assert fleet_sensor(ctx).run_requests[0].tags["lensline/reason"] == "silence re-check"


def _store_reference(storage: LensStorage) -> None:
    rng = np.random.default_rng(3)
    stats = np.column_stack([v + rng.normal(0, v * 0.03, 400) for v in BASE.values()])
    ref = build_reference(stats, camera_id="cam1", version="m-001",
                          segments=np.repeat(range(4), 100))  # fmt: skip
    uri = storage.uri("artifacts", "drift", "reference", "m-001", "cam1.npz")
    storage.write_bytes(uri, ref.to_bytes())
    row = {"camera_id": ["cam1"], "model_version": ["m-001"], "uri": [uri], "frames": [400],
           "videos": [4], "held_out": [True], "created_at": [datetime.now(UTC)]}  # fmt: skip
    storage.write_table(pl.DataFrame(row), "drift_references")


def test_line_drift_detects_a_darker_line_from_heartbeats_alone(home):
    storage = LensStorage()
    _store_reference(storage)
    rng, now = np.random.default_rng(4), time.time()
    steady = [beat("b1", "cam1", now - 400 + 10 * i, "m-001", rng=rng) for i in range(12)]
    land(home, "b1", "cam1", steady)
    run = dg.materialize([edge_fleet, line_drift], resources={"storage": storage})
    assert run.success and checks(run)["no_data_drift"].passed
    darker = [
        beat("b1", "cam1", now - 150 + 10 * i, "m-001", scale=0.6, rng=rng) for i in range(12)
    ]
    land(home, "b1", "cam1", darker)
    run = dg.materialize([edge_fleet, line_drift], resources={"storage": storage})
    got = checks(run)["no_data_drift"]
    assert not got.passed and "cam1: brightness" in got.description
    table = storage.read_table("line_drift")
    latest = table.filter(pl.col("window_end") == table["window_end"].max())
    assert set(latest["statistic"]) == set(FRAME_STATS)
    assert latest.filter(pl.col("statistic") == "brightness")["detected"].item()
    assert latest["severity"].drop_nulls().to_list() and table.height == 2 * len(FRAME_STATS)
    again = dg.materialize([edge_fleet, line_drift], resources={"storage": storage})
    assert again.success and storage.read_table("line_drift").height == table.height

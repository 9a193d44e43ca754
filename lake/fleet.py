"""The fleet's inputs in the lake: heartbeat segments not yet ingested, boxes' desired states and
cameras' drift references (reads only; ``edge_fleet`` and ``line_drift`` write).

``landing/telemetry/<box>/<camera>__<start>.jsonl`` are the heartbeat segments the boxes publish
(:mod:`edge_export.service.telemetry`); a segment whose key is already a ``source`` of
``fleet_heartbeats`` has been ingested and is skipped, so re-running ``edge_fleet`` appends
nothing twice.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from data_quality.fleet import heartbeat_rows
from lake.storage import LensStorage

__all__ = ["camera_references", "desired_states", "new_heartbeat_rows"]


def new_heartbeat_rows(storage: LensStorage) -> tuple[list[dict[str, Any]], list[str]]:
    """``fleet_heartbeats`` rows of every segment under ``landing/telemetry`` not ingested yet,
    and those segments' keys (a line that is not JSON ends its segment: a torn copy)."""
    done = storage.read_table("fleet_heartbeats", columns=["source"])
    known = set(done["source"].unique().to_list()) if done is not None else set()
    rows: list[dict[str, Any]] = []
    keys = []
    for f in storage.list_files("landing", "telemetry", suffixes=(".jsonl",)):
        if f.key in known:
            continue
        beats = []
        with storage.local_path(f.uri) as local:
            for line in local.read_text().splitlines():
                try:
                    beats.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        rows += heartbeat_rows(beats, f.key)
        keys.append(f.key)
    return rows, keys


def desired_states(storage: LensStorage, boxes: list[str]) -> dict[str, dict[str, Any]]:
    """``box -> lake.deployments.desired_state(box)`` (no ``deployments`` table: empty states)."""
    from lake.deployments import desired_state

    if storage.read_table("deployments") is None:
        return {}
    return {box: desired_state(storage, box) for box in boxes}


def camera_references(storage: LensStorage, wanted: dict[str, str | None]) -> dict[str, Any]:
    """``camera -> (CameraReference, model_version)`` for each camera of ``wanted``
    (``camera -> the champion version it runs``): that version's reference when there is one,
    else the camera's newest; cameras without any are left out."""
    from data_quality.drift import CameraReference

    refs = storage.read_table("drift_references")
    out: dict[str, Any] = {}
    if refs is None:
        return out
    for camera, version in wanted.items():
        mine = refs.filter(pl.col("camera_id") == camera).sort("created_at")
        if mine.is_empty():
            continue
        exact = mine.filter(pl.col("model_version") == version)
        row = (exact if not exact.is_empty() else mine).row(-1, named=True)
        out[camera] = (
            CameraReference.from_bytes(storage.read_bytes(row["uri"])),
            row["model_version"],
        )
    return out

"""The fleet from its heartbeats: rows of ``fleet_heartbeats``, the ``fleet_state`` table and the
``fleet_reporting`` / ``fleet_on_desired_bundle`` verdicts.

No I/O here: the ``edge_fleet`` asset reads the heartbeat segments the boxes publish to
``landing/telemetry/<box>/`` (one JSON line per camera and beat, written by
:mod:`edge_export.service.telemetry`) and each box's desired state
(:func:`lake.deployments.desired_state`), and hands them in.

A camera is **silent** when its newest heartbeat is more than ``k`` heartbeat intervals old,
after allowing for the time its segment waits on the box before it is published (the box's
``segment_s``): ``silent_beats = (now - last_seen - segment_s) / heartbeat_s > k``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import polars as pl

from edge_export.service.telemetry import FRAME_STATS

__all__ = [
    "HEARTBEAT_COLUMNS",
    "LINE_DRIFT_COLUMNS",
    "STATE_COLUMNS",
    "camera_plot",
    "fleet_state",
    "heartbeat_rows",
    "not_on_desired",
    "silent_cameras",
]

UTC_US = pl.Datetime("us", "UTC")

HEARTBEAT_COLUMNS: dict[str, pl.DataType] = {
    "box": pl.String(), "camera": pl.String(), "at": UTC_US,
    "champion_version": pl.String(), "champion_sha256": pl.String(),
    "shadow_version": pl.String(), "shadow_sha256": pl.String(),
    "software_version": pl.String(), "frames": pl.Int64(), "fps": pl.Float64(),
    "latency_p50_s": pl.Float64(), "latency_p95_s": pl.Float64(),
    "decoded": pl.Int64(), "dropped": pl.Int64(), "skipped": pl.Int64(),
    "stream_state": pl.String(), "gaps": pl.Int64(), "gap_s": pl.Float64(),
    "alarms": pl.Int64(), "shadow_frames": pl.Int64(), "shadow_agree": pl.Int64(),
    "shadow_agreement": pl.Float64(), "signals": pl.String(), "refused": pl.String(),
    "heartbeat_s": pl.Float64(), "segment_s": pl.Float64(), "stat_frames": pl.Int64(),
    **{f"{s}_{p}": pl.Float64() for s in FRAME_STATS for p in ("mean", "std")},
    **{f"{s}_hist": pl.List(pl.Int64()) for s in FRAME_STATS},
    "source": pl.String(),
}  # fmt: skip
"""Columns of ``fleet_heartbeats``: one row per camera and heartbeat (``source``: the segment's
key under ``landing/telemetry``; ``signals`` and ``refused`` as JSON)."""

STATE_COLUMNS: dict[str, pl.DataType] = {
    "box": pl.String(), "camera": pl.String(), "champion_version": pl.String(),
    "shadow_version": pl.String(), "software_version": pl.String(), "health": pl.String(),
    "fps": pl.Float64(), "latency_p95_s": pl.Float64(), "dropped": pl.Int64(),
    "last_seen": UTC_US, "silent_beats": pl.Float64(), "desired_champion": pl.String(),
    "desired_shadow": pl.String(), "on_desired": pl.Boolean(), "refused": pl.String(),
    "updated_at": UTC_US,
}  # fmt: skip
"""Columns of ``fleet_state``: one row per box and camera, rewritten on every run. ``health``:
``ok``, ``silent`` (see the module docstring), ``stream_<state>`` (the camera's stream is not
online) or ``no_model`` (nothing deployed runs)."""


LINE_DRIFT_COLUMNS: dict[str, pl.DataType] = {
    "camera": pl.String(), "box": pl.String(), "reference_version": pl.String(),
    "window_start": UTC_US, "window_end": UTC_US,
    "beats": pl.Int64(), "frames": pl.Int64(), "kind": pl.String(), "statistic": pl.String(),
    "value": pl.Float64(), "p_value": pl.Float64(), "p_raw": pl.Float64(),
    "threshold": pl.Float64(), "detected": pl.Boolean(), "status": pl.String(),
    "severity": pl.String(), "computed_at": UTC_US,
}  # fmt: skip
"""Columns of ``line_drift``: one row per camera, heartbeat window and statistic. ``value``: the
relative change of the mean (``drift_report``'s); ``p_value``: Holm-adjusted; ``detected``:
``p_value < threshold`` (alpha) and ``value >= min_change``; ``severity``: the check's (WARN or
ERROR) when detected, else None."""


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(float(t), UTC)


def heartbeat_rows(beats: Iterable[Mapping[str, Any]], source: str) -> list[dict[str, Any]]:
    """``fleet_heartbeats`` rows from the heartbeat lines of one segment.

    Parameters
    ----------
    beats : iterable of mapping
        Parsed JSON lines (``box, camera, at`` (epoch seconds), ``models``, ``frame_stats`` ...).
    source : str
        The segment's key, stored on every row (a segment ingested once is never appended again).
    """
    rows = []
    for b in beats:
        models = b.get("models") or {}
        champ, shadow = models.get("champion") or {}, models.get("shadow") or {}
        stats = b.get("frame_stats") or {}
        row: dict[str, Any] = {
            "box": b["box"], "camera": b["camera"], "at": _when(b["at"]),
            "champion_version": champ.get("model_version"),
            "champion_sha256": champ.get("bundle_sha256"),
            "shadow_version": shadow.get("model_version"),
            "shadow_sha256": shadow.get("bundle_sha256"),
            "software_version": b.get("software_version"),
            "frames": b.get("frames"), "fps": b.get("fps"),
            "latency_p50_s": b.get("latency_p50_s"), "latency_p95_s": b.get("latency_p95_s"),
            "decoded": b.get("decoded"), "dropped": b.get("dropped"), "skipped": b.get("skipped"),
            "stream_state": b.get("stream_state"), "gaps": b.get("gaps"), "gap_s": b.get("gap_s"),
            "alarms": b.get("alarms"), "shadow_frames": b.get("shadow_frames"),
            "shadow_agree": b.get("shadow_agree"), "shadow_agreement": b.get("shadow_agreement"),
            "signals": json.dumps(b.get("signals") or {}, sort_keys=True, default=str),
            "refused": json.dumps(b.get("refused") or []),
            "heartbeat_s": b.get("heartbeat_s"), "segment_s": b.get("segment_s"),
            "stat_frames": (stats.get(FRAME_STATS[0]) or {}).get("n", 0),
            "source": source,
        }  # fmt: skip
        for s in FRAME_STATS:
            st = stats.get(s) or {}
            row[f"{s}_mean"], row[f"{s}_std"] = st.get("mean"), st.get("std")
            row[f"{s}_hist"] = st.get("hist")
        rows.append(row)
    return rows


def _desired(state: Mapping[str, Any] | None, camera: str) -> tuple[str | None, str | None]:
    """(champion, shadow) versions a box's desired state asks ``camera`` to run."""
    cams = (state or {}).get("cameras", {})
    champion = (cams.get(camera, {}).get("champion") or cams.get("*", {}).get("champion")) or {}
    shadow = (cams.get(camera, {}).get("shadow") or cams.get("*", {}).get("shadow")) or {}
    return champion.get("model_version"), shadow.get("model_version")


def fleet_state(
    heartbeats: pl.DataFrame,
    desired: Mapping[str, Mapping[str, Any]],
    *,
    now: datetime,
    k: int,
) -> pl.DataFrame:
    """One row per box and camera from its newest heartbeat (``STATE_COLUMNS``).

    Parameters
    ----------
    heartbeats : pl.DataFrame
        ``fleet_heartbeats`` (at least the newest row of each box and camera).
    desired : mapping
        ``box -> lake.deployments.desired_state(box)``; a box without one has no desired
        version (and is never on it).
    now : datetime
        UTC; the time silence is measured to.
    k : int
        Heartbeats a camera may miss before it is ``silent``.
    """
    if heartbeats.is_empty():
        return pl.DataFrame(schema=STATE_COLUMNS)
    last = heartbeats.sort("at").group_by("box", "camera", maintain_order=True).last()
    rows = []
    for r in last.sort("box", "camera").iter_rows(named=True):
        age = (now - r["at"]).total_seconds() - float(r["segment_s"] or 0.0)
        beats = max(0.0, age) / float(r["heartbeat_s"] or 1.0)
        want, want_shadow = _desired(desired.get(r["box"]), r["camera"])
        on = want is not None and r["champion_version"] == want
        on = on and (want_shadow is None or r["shadow_version"] == want_shadow)
        if beats > k:
            health = "silent"
        elif r["champion_version"] is None:
            health = "no_model"
        elif r["stream_state"] not in (None, "online"):
            health = f"stream_{r['stream_state']}"
        else:
            health = "ok"
        refused = json.loads(r["refused"] or "[]")
        rows.append({
            "box": r["box"], "camera": r["camera"], "champion_version": r["champion_version"],
            "shadow_version": r["shadow_version"], "software_version": r["software_version"],
            "health": health, "fps": r["fps"], "latency_p95_s": r["latency_p95_s"],
            "dropped": r["dropped"], "last_seen": r["at"], "silent_beats": round(beats, 2),
            "desired_champion": want, "desired_shadow": want_shadow, "on_desired": on,
            "refused": refused[-1] if refused else None, "updated_at": now,
        })  # fmt: skip
    return pl.DataFrame(rows, schema=STATE_COLUMNS)


def silent_cameras(state: pl.DataFrame, k: int) -> list[str]:
    """``box/camera: silent for N heartbeats (last seen T)`` for every silent camera."""
    silent = state.filter(pl.col("health") == "silent")
    return [
        f"{r['box']}/{r['camera']}: silent for {r['silent_beats']:.1f} heartbeats > {k} "
        f"(last seen {r['last_seen']:%Y-%m-%d %H:%M:%S} UTC)"
        for r in silent.iter_rows(named=True)
    ]


def not_on_desired(state: pl.DataFrame) -> list[str]:
    """``box/camera: runs X, deployment says Y (refused: ...)`` for every camera off its
    deployment (a refused bundle keeps the previous one running: it shows here)."""
    out = []
    for r in state.filter(~pl.col("on_desired")).iter_rows(named=True):
        runs = r["champion_version"] or "nothing"
        if r["desired_shadow"] is not None:
            runs += f" (shadow {r['shadow_version'] or 'none'})"
        want = r["desired_champion"] or "no deployment"
        if r["desired_shadow"] is not None:
            want += f" (shadow {r['desired_shadow']})"
        why = f"; refused: {r['refused']}" if r["refused"] else ""
        out.append(f"{r['box']}/{r['camera']}: runs {runs}, deployment says {want}{why}")
    return out


def camera_plot(beats: pl.DataFrame, *, title: str) -> bytes:
    """One camera's heartbeats over time as a PNG: fps, latency p50/p95, and the mean frame
    statistics (a lighting change shows as a step in brightness).

    Parameters
    ----------
    beats : pl.DataFrame
        ``fleet_heartbeats`` rows of one box and camera.
    title : str
        ``box/camera``.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    beats = beats.sort("at")
    t = beats["at"].to_list()
    fig = Figure(figsize=(9.0, 2.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    axes[0].plot(t, beats["fps"].to_list(), lw=1)
    axes[0].set_title(f"{title}: fps", fontsize=8)
    for col in ("latency_p50_s", "latency_p95_s"):
        axes[1].plot(t, beats[col].to_list(), lw=1, label=col.split("_")[1])
    axes[1].set_title("latency (s)", fontsize=8)
    axes[1].legend(fontsize=6)
    for s in FRAME_STATS[:2]:
        axes[2].plot(t, beats[f"{s}_mean"].to_list(), lw=1, label=s)
    axes[2].set_title("frame statistics (mean per beat)", fontsize=8)
    axes[2].legend(fontsize=6)
    for ax in axes:
        ax.tick_params(labelsize=6)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()

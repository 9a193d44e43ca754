"""edge_fleet and line_drift: the boxes' heartbeats into the lake, and drift from the line.

``edge_fleet`` appends the heartbeat segments the boxes published to ``landing/telemetry`` to
``fleet_heartbeats`` (one commit; a segment already ingested is skipped, so a rerun appends
nothing) and then rewrites ``fleet_state`` (one commit). A crash between the two leaves the
heartbeats in and the state one run old; the next run rewrites it. ``line_drift`` tests each
camera's newest heartbeat window against its drift reference (:mod:`data_quality.drift.line`)
and appends one row per statistic (one commit; a window already tested is not appended again).
"""

import hashlib
from datetime import UTC, datetime

import dagster as dg
import polars as pl
from pydantic import Field

from assets.previews import png_md
from assets.provenance import code_version
from assets.tables import md_table
from lake import pools
from lake.storage import LensStorage

_PLOT_BEATS = 360  # newest heartbeats per camera in the plots (an hour at 10 s)


class FleetConfig(dg.Config):
    """When a box counts as silent."""

    silent_after: int = Field(
        default=3, description="Heartbeats a camera may miss before fleet_reporting fails."
    )


@dg.asset(
    pool=pools.FLEET,
    deps=["deployments"],
    group_name="edge",
    kinds={"delta"},
    check_specs=[
        dg.AssetCheckSpec(
            "fleet_reporting",
            asset="edge_fleet",
            description="Every box and camera sent a heartbeat recently.",
        ),
        dg.AssetCheckSpec(
            "fleet_on_desired_bundle",
            asset="edge_fleet",
            description="Every box and camera runs what its deployment says.",
        ),
    ],  # fmt: skip
    code_version=code_version("edge_fleet", 1, FleetConfig().model_dump()),
)
def edge_fleet(config: FleetConfig, storage: LensStorage):
    """Box heartbeats (landing/telemetry) into fleet_heartbeats, and what runs where now."""
    from data_quality.fleet import fleet_state, not_on_desired, silent_cameras
    from lake.fleet import desired_states, new_heartbeat_rows

    rows, segments = new_heartbeat_rows(storage)
    if rows:
        storage.write_table(_frame(rows), "fleet_heartbeats", mode="append")
    beats = storage.read_table("fleet_heartbeats")
    if beats is None:
        return _nothing_yet(storage)
    now = datetime.now(UTC)
    desired = desired_states(storage, sorted(set(beats["box"].to_list())))
    state = fleet_state(beats, desired, now=now, k=config.silent_after)
    storage.write_table(state, "fleet_state")
    silent, off = silent_cameras(state, config.silent_after), not_on_desired(state)
    shown = state.drop("updated_at", "desired_shadow", "shadow_version")
    return dg.MaterializeResult(
        metadata={
            "segments_ingested": len(segments),
            "heartbeats_new": len(rows),
            "heartbeats_total": beats.height,
            "fleet": dg.MetadataValue.md(md_table(shown, max_rows=100)),
            "plots": dg.MetadataValue.md(_plots(beats)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="fleet_reporting",
                passed=not silent,
                description="; ".join(silent) or f"{state.height} camera(s) reporting",
                metadata={"silent": dg.MetadataValue.json(silent)},
            ),
            dg.AssetCheckResult(
                check_name="fleet_on_desired_bundle",
                passed=not off,
                description="; ".join(off) or "every camera runs its deployment",
                metadata={"off_desired": dg.MetadataValue.json(off)},
            ),
        ],  # fmt: skip
        data_version=dg.DataVersion(_digest(state.drop("updated_at", "silent_beats"))),
    )


def _frame(rows: list[dict]) -> pl.DataFrame:
    from data_quality.fleet import HEARTBEAT_COLUMNS

    return pl.DataFrame(rows, schema=HEARTBEAT_COLUMNS)


def _digest(df: pl.DataFrame) -> str:
    return hashlib.sha256(df.write_csv().encode()).hexdigest()[:16]


def _nothing_yet(storage: LensStorage) -> dg.MaterializeResult:
    how = f"run `lensline-edge serve` with the lake as `deployments:` ({storage.uri('landing', 'telemetry')})"
    return dg.MaterializeResult(
        metadata={"heartbeats_total": 0, "how": how},
        check_results=[
            dg.AssetCheckResult(
                check_name=name, passed=True, description=f"no heartbeats yet: {how}"
            )
            for name in ("fleet_reporting", "fleet_on_desired_bundle")
        ],
        data_version=dg.DataVersion("empty"),
    )


def _plots(beats: pl.DataFrame) -> str:
    """Per box and camera: fps, latency and frame statistics over its newest heartbeats."""
    from data_quality.fleet import camera_plot

    parts = []
    for (box, camera), mine in beats.sort("at").group_by(["box", "camera"], maintain_order=True):
        png = camera_plot(mine.tail(_PLOT_BEATS), title=f"{box}/{camera}")
        parts.append(f"**{box}/{camera}**\n\n{png_md(png, alt=f'{box}/{camera}')}")
    return "\n\n".join(parts)


class LineDriftConfig(dg.Config):
    """The heartbeat window tested per camera; the drift tests' own options are drift_report's."""

    window_beats: int = Field(default=12, description="Newest heartbeats tested per camera.")
    min_beats: int = Field(default=4, description="Fewest heartbeats a window is tested with.")
    severity: str = Field(default="WARN", description="Severity of a drift check: WARN or ERROR.")


@dg.asset(
    pool=pools.FLEET,
    deps=["edge_fleet", "drift_reference"],
    group_name="drift",
    kinds={"delta"},
    check_specs=[
        dg.AssetCheckSpec(
            "no_data_drift",
            asset="line_drift",
            description="No data drift in the cameras' heartbeats.",
        ),
    ],  # fmt: skip
    code_version=code_version("line_drift", 1, LineDriftConfig().model_dump()),
)
def line_drift(config: LineDriftConfig, storage: LensStorage):
    """Drift from the line: each camera's recent heartbeats against its drift reference."""
    from data_quality.drift.line import line_drift_rows
    from lake.fleet import camera_references

    beats = storage.read_table("fleet_heartbeats")
    if beats is None:
        return dg.MaterializeResult(
            metadata={"cameras": 0},
            check_results=[dg.AssetCheckResult(check_name="no_data_drift", passed=True,
                                               description="no heartbeats yet")],
        )  # fmt: skip
    last = beats.sort("at").group_by("camera").last()
    refs = camera_references(
        storage, dict(zip(last["camera"], last["champion_version"], strict=True))
    )
    rows = line_drift_rows(beats, refs, beats=config.window_beats, min_beats=config.min_beats,
                           severity=config.severity, now=datetime.now(UTC))  # fmt: skip
    done, new = storage.read_table("line_drift"), rows
    if done is not None:  # a window already tested (no new heartbeats) is not appended again
        keys = done.select("camera", "window_end").unique()
        new = rows.join(keys, on=["camera", "window_end"], how="anti")
    if new.height:
        storage.write_table(new, "line_drift", mode="append")
    drifted = rows.filter(pl.col("detected"))
    text = "; ".join(
        f"{r['camera']}: {r['statistic']}={r['value']:.3g}" for r in drifted.iter_rows(named=True)
    )
    return dg.MaterializeResult(
        metadata={"windows": rows["camera"].n_unique(), "appended": new.height,
                  "tests": dg.MetadataValue.md(md_table(rows.drop("computed_at", "kind")))},
        check_results=[dg.AssetCheckResult(
            check_name="no_data_drift", passed=drifted.is_empty(),
            severity=dg.AssetCheckSeverity.ERROR if config.severity.upper() == "ERROR" and text
            else dg.AssetCheckSeverity.WARN,
            description=f"data drift from the line: {text}" if text else "no camera drifted",
            metadata={"drifted_cameras": dg.MetadataValue.json(sorted(set(drifted["camera"])))},
        )],
        data_version=dg.DataVersion(_digest(rows.drop("computed_at"))),
    )  # fmt: skip

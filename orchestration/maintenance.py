"""The ``lake_maintenance`` job and its weekly schedule: compact, checkpoint, vacuum the lake.

Thin: the work and its retention rule are :mod:`lake.maintenance`. The job carries the
lake-writer tag, so the run queue starts it only when no other lake writer runs.

Another maintenance window: pass ``maintenance_schedule("0 2 * * 6")`` (Saturdays 02:00) where
``build_defs`` passes ``maintenance_schedule()``, or add it under another ``name`` and stop the
default one in the UI.
"""

import dagster as dg
from pydantic import Field

from lake import pools
from lake.storage import LensStorage

__all__ = ["DEFAULT_CRON", "MaintenanceConfig", "lake_maintenance_job", "maintenance_schedule"]

DEFAULT_CRON = "0 3 * * 0"  # Sundays 03:00


class MaintenanceConfig(dg.Config):
    """What ``lake_maintenance`` maintains and how long removed files are kept."""

    dry_run: bool = Field(default=False, description="Report what would be done; change nothing.")
    tables: list[str] = Field(default=[], description="Only these tables (default: all).")
    retention_days: float = Field(
        default=7.0,
        description="Keep removed files this long at least; longer where a registered model "
        "references an older version.",
    )
    margin_hours: float = Field(
        default=1.0, description="Added to the age of the oldest referenced version."
    )
    min_files: int = Field(default=16, description="Compact a table with at least this many files.")


# lake_graph: never beside a graph run's whole-table rewrites. Ingestion may commit meanwhile:
# Delta's optimistic concurrency arbitrates (a compaction that loses fails whole, next week redoes)
@dg.op(pool=pools.GRAPH)
def lake_maintenance(
    context: dg.OpExecutionContext, config: MaintenanceConfig, storage: LensStorage
):
    """Compact small files, vacuum (keeping every version a registered model references), checkpoint."""
    from datetime import timedelta

    from lake.maintenance import MaintenanceSettings, maintain_lake, reports_markdown

    settings = MaintenanceSettings(
        retention=timedelta(days=config.retention_days),
        margin=timedelta(hours=config.margin_hours),
        min_files=config.min_files,
    )
    reports = maintain_lake(
        storage, tables=config.tables or None, dry_run=config.dry_run, settings=settings
    )
    metadata: dict[str, dg.MetadataValue] = {
        "tables": dg.MetadataValue.md(reports_markdown(reports)),
        "files_removed": dg.MetadataValue.int(sum(len(r.vacuumed) for r in reports)),
        "bytes_removed": dg.MetadataValue.int(sum(r.vacuumed_bytes for r in reports)),
        "dry_run": dg.MetadataValue.bool(config.dry_run),
    }
    for r in reports:
        rows = "\n".join(f"| {k} | {v} |" for k, v in r.row().items() if k != "table")
        metadata[f"table/{r.table}"] = dg.MetadataValue.md(
            f"| {r.table} | |\n| --- | --- |\n{rows}"
        )
    return dg.Output(len(reports), metadata=metadata)


@dg.job(description="Compact, vacuum and checkpoint every Delta table of the lake.")
def lake_maintenance_job():
    lake_maintenance()


def maintenance_schedule(
    cron_schedule: str = DEFAULT_CRON, *, name: str = "lake_maintenance_schedule"
) -> dg.ScheduleDefinition:
    """The ``lake_maintenance`` schedule at ``cron_schedule`` (UTC; default Sundays 03:00)."""
    return dg.ScheduleDefinition(
        name=name,
        job=lake_maintenance_job,
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        tags={"lensline/reason": "weekly lake maintenance"},
        description="Compact small files, checkpoint and vacuum the lake every week.",
    )

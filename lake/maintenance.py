"""Lake maintenance: compact small files, checkpoint, vacuum and clean the log of every Delta table,
without breaking time travel to a version anything still references.

Owns no table; it rewrites the files of the tables in :data:`lake.tables.TABLES`. Per table, in
this order (each step is deltalake's own operation):

0. **Repartition** a table created before its schema named partition columns
   (:attr:`lake.tables.TableSchema.partition_by`: ``frames`` by ``camera_id``): its rows are
   rewritten, the same rows, partitioned, in one overwrite commit (``schema_mode="overwrite"``),
   once; the table's old versions stay readable as long as vacuum keeps their files.
1. **Compact** (``DeltaTable.optimize.compact``): small files are rewritten into few large ones in
   one ``OPTIMIZE`` commit (``dataChange=false``: the rows are the same). Only when the table has
   at least ``min_files`` active files, and never on :data:`VERSION_IS_DATA` tables, whose Delta
   version is a Dagster data version (``dataset-<v>``, ``labels``...): a rewrite there would make
   the graph rebuild (retrain) on unchanged rows.
2. **Checkpoint** (``create_checkpoint``) when the table has commits since its last checkpoint;
   readers then replay one Parquet file instead of every JSON commit. Writes no commit.
3. **Vacuum** (``DeltaTable.vacuum``). *Protected* versions: every version a registered model was
   trained on (``models.dataset_version`` -> ``dataset``, ``models.label_version`` -> ``labels``,
   whatever the model's alias: champion, challenger, archived, deployed or not; model rows are
   never deleted) and those of the trained checkpoint ``model_evaluation`` has not registered
   yet (``artifacts/io/trained_model.json``). The retention is the default
   (:attr:`MaintenanceSettings.retention`, 7 days) or, if longer, the age of the oldest protected
   version's commit plus :attr:`MaintenanceSettings.margin`; the protected versions are passed as
   ``keep_versions`` too. Deleted: the log's removed files older than the retention (lite
   vacuum), and files no version lists any more whose object is older than the retention (a
   checkpoint forgets removals older than ``delta.deletedFileRetentionDuration``, so a lite
   vacuum alone would keep them forever; or a write that never committed). So every version
   from the oldest protected one to the current stays readable; compaction's leftovers stay
   until no referenced version needs them. The plan is deltalake's (``dry_run=True``) and the
   files are deleted through :class:`lake.storage.LensStorage`, so vacuum writes no ``VACUUM
   START/END`` commits: table versions (data versions) stay put.
4. **Clean the log** (``cleanup_metadata``: commits older than ``delta.logRetentionDuration``, 30
   days) only when the oldest protected version is younger than that retention minus the
   margin; otherwise it is skipped, as it would delete the commits that version is replayed from.

A crash between two steps leaves a consistent table: after (1) the table is compacted and its
old files are still there (a later run vacuums them once unreferenced); a checkpoint that dies
halfway leaves the JSON commits readers fall back to; a vacuum that dies has deleted some
expired files and the next run deletes the rest (only files no version it keeps reads); a log
cleanup that dies has dropped some expired commits, never one a kept version is replayed from. Every step is idempotent: a second run compacts
nothing, finds nothing to vacuum and writes no commit.

Not covered here: deltalake's writers clean the log themselves when they checkpoint (every 100
commits, ``delta.enableExpiredLogCleanup``, default on), dropping commits older than 30 days
whatever references them; a table whose old versions must stay replayable needs that property
off (``dataset``'s writer is where to set it).

Run it while nothing else writes (the ``lake_maintenance`` job carries the lake-writer tag and
queues behind ingestion). If a writer commits concurrently anyway, Delta's optimistic
concurrency decides: an append commits beside a compaction; a compaction that conflicts (a
delete or overwrite of the files it rewrote) fails to commit, is retried once on the new
version and otherwise skipped for that table (its rewritten files are orphans, never read); the
vacuum deletes only files removed longer ago than the retention, never a writer's new files.
Nothing here can corrupt a table.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from lake.storage import LensStorage
from lake.tables import TABLES

__all__ = [
    "VERSION_IS_DATA",
    "MaintenanceSettings",
    "Reference",
    "TableReport",
    "maintain_lake",
    "maintain_table",
    "references",
    "reports_markdown",
]

#: tables whose Delta version is a Dagster data version or a model's recorded version: never
#: compacted (a rewrite commit would change the version downstream assets key on)
VERSION_IS_DATA = ("dataset", "labels", "label_reviews", "label_classes", "frame_embeddings")

#: custom commit metadata that marks maintenance's repartitioning commit
REPARTITION_MARK = "lensline.repartition"

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


@dataclass(frozen=True)
class MaintenanceSettings:
    """How maintenance compacts and how long it keeps removed files.

    ``retention``: the default vacuum retention (Delta's 7 days); ``margin``: added to the age of
    a protected version (clock skew between writers, a commit's write time); ``min_files``: a
    table is compacted only with at least this many active files; ``target_size``: bytes per
    compacted file (None: deltalake's ``delta.targetFileSize`` or 100 MB).
    """

    retention: timedelta = timedelta(days=7)
    margin: timedelta = timedelta(hours=1)
    min_files: int = 16
    target_size: int | None = None


@dataclass(frozen=True)
class Reference:
    """A Delta version something still reads: ``table`` at ``version``, and why."""

    table: str
    version: int
    reason: str


@dataclass
class TableReport:
    """What maintenance did (or, in a dry run, would do) to one table."""

    table: str
    version_before: int
    version_after: int
    files_before: int  # active data files (the current version's)
    files_after: int
    bytes_before: int  # bytes of the active files
    bytes_after: int
    stored_before: int  # data files on storage (active + removed, not yet vacuumed)
    stored_after: int
    compacted: str  # "12 -> 1 files", or why not
    protected: Reference | None
    retention_hours: int
    vacuumed: list[str] = field(default_factory=list)
    vacuumed_bytes: int = 0
    checkpoint: str = ""
    log_cleanup: str = ""
    dry_run: bool = False
    partitioning: str = ""  # what repartitioning did, or "" when the table has its layout
    lost: list[int] = field(default_factory=list)  # referenced versions that no longer load

    def row(self) -> dict[str, Any]:
        """The report as one flat row (metadata tables, the CLI)."""
        p = self.protected
        return {
            "table": self.table,
            "versions": f"{self.version_before} -> {self.version_after}",
            "active files": f"{self.files_before} -> {self.files_after}",
            "active bytes": f"{_size(self.bytes_before)} -> {_size(self.bytes_after)}",
            "stored files": f"{self.stored_before} -> {self.stored_after}",
            "compaction": self.compacted,
            **({"partitioning": self.partitioning} if self.partitioning else {}),
            "protected": (f"v{p.version}: {p.reason}" if p else "-")
            + (
                f"; LOST (no longer loads): {', '.join(f'v{v}' for v in self.lost)}"
                if self.lost
                else ""
            ),
            "retention": f"{self.retention_hours} h",
            "vacuum": f"{'would remove' if self.dry_run else 'removed'} "
            f"{len(self.vacuumed)} files, {_size(self.vacuumed_bytes)}",
            "checkpoint": self.checkpoint,
            "log cleanup": self.log_cleanup,
        }


def references(storage: LensStorage) -> list[Reference]:
    """Every Delta version the lake's readers may time-travel to, oldest first per table.

    The ``dataset`` and ``labels`` versions of every registered model (rows are never deleted,
    so champions, challengers, archived, rolled-back and deployed models all count) and those of
    the trained checkpoint ``model_evaluation`` has not registered yet.
    """
    refs: list[Reference] = []
    models = storage.registry().list()
    for row in models.iter_rows(named=True):
        for column, table in (("dataset_version", "dataset"), ("label_version", "labels")):
            if row[column] is not None:
                why = f"model {row['model_version']} ({row['alias']})"
                refs.append(Reference(table, int(row[column]), why))
    pending = storage.uri("artifacts", "io", "trained_model.json")
    try:
        ref = json.loads(storage.read_bytes(pending))
    except (FileNotFoundError, OSError, ValueError) + _s3_missing():
        ref = {}
    for column, table in (("dataset_version", "dataset"), ("label_version", "labels")):
        if str(ref.get(column, "")).isdigit():
            refs.append(Reference(table, int(ref[column]), "trained checkpoint, not evaluated"))
    return sorted(refs, key=lambda r: (r.table, r.version))


def maintain_lake(
    storage: LensStorage,
    *,
    tables: Sequence[str] | None = None,
    dry_run: bool = False,
    settings: MaintenanceSettings = MaintenanceSettings(),  # noqa: B008 (frozen)
    extra_references: Iterable[Reference] = (),
) -> list[TableReport]:
    """Maintain ``tables`` (default: every registered table that exists); one report each."""
    from deltalake import DeltaTable

    refs = [*references(storage), *extra_references]
    names = list(tables) if tables is not None else sorted(TABLES)
    out = []
    for name in names:
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r} (registered: {', '.join(sorted(TABLES))})")
        uri = storage.table_uri(name)
        if DeltaTable.is_deltatable(uri, storage_options=storage.storage_options()):
            table_refs = [r for r in refs if r.table == name]
            out.append(
                maintain_table(storage, name, refs=table_refs, dry_run=dry_run, settings=settings)
            )
    return out


def maintain_table(
    storage: LensStorage,
    name: str,
    *,
    refs: Sequence[Reference] = (),
    dry_run: bool = False,
    settings: MaintenanceSettings = MaintenanceSettings(),  # noqa: B008 (frozen)
    now: datetime | None = None,
) -> TableReport:
    """Compact, vacuum, checkpoint and clean the log of table ``name``, keeping ``refs`` readable.

    ``now`` is the clock the protected version's age is measured with (tests); deltalake's
    vacuum measures removed files against the real clock.
    """
    from deltalake import DeltaTable

    now = now or datetime.now(UTC)
    uri, opts = storage.table_uri(name), storage.storage_options()
    table = DeltaTable(uri, storage_options=opts)
    version_before = table.version()
    files_before, bytes_before = _active(table)
    stored_before = _stored(storage, name)

    partitioning = _repartition(storage, table, name, dry_run=dry_run)
    table = DeltaTable(uri, storage_options=opts)
    files = _active(table)[0] if partitioning and not dry_run else files_before
    compacted = _compact(table, name, files, opts, dry_run=dry_run, settings=settings)
    table = DeltaTable(uri, storage_options=opts)
    checkpoint = _checkpoint(table, _last_checkpoint(storage, name), dry_run=dry_run)
    table = DeltaTable(uri, storage_options=opts)  # read from the checkpoint: what vacuum sees

    protected, readable, age = _protected(table, refs, now, opts)
    retention = max(settings.retention, age + settings.margin if protected else timedelta(0))
    hours = math.ceil(retention.total_seconds() / 3600)
    plan = _vacuum_plan(storage, name, table, hours, readable, now=datetime.now(UTC))
    if not dry_run:
        storage.delete([f"{uri}/{p}" for p in plan])

    log_cleanup = _cleanup_log(table, protected, age, dry_run=dry_run, settings=settings)
    table = DeltaTable(uri, storage_options=opts)
    files_after, bytes_after = _active(table)
    return TableReport(
        table=name,
        version_before=version_before,
        version_after=table.version(),
        files_before=files_before,
        files_after=files_after,
        bytes_before=bytes_before,
        bytes_after=bytes_after,
        stored_before=stored_before,
        stored_after=_stored(storage, name),
        compacted=compacted,
        protected=protected,
        lost=sorted({r.version for r in refs if r.version <= version_before} - set(readable)),
        retention_hours=hours,
        vacuumed=list(plan),
        vacuumed_bytes=sum(plan.values()),
        checkpoint=checkpoint,
        log_cleanup=log_cleanup,
        dry_run=dry_run,
        partitioning=partitioning,
    )


def reports_markdown(reports: Sequence[TableReport]) -> str:
    """The reports as one Markdown table (asset metadata, docs)."""
    if not reports:
        return "_no Delta table in the lake yet_"
    rows = [r.row() for r in reports]
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(r[h]).replace("|", "/") for h in head) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- steps


def _repartition(storage: LensStorage, table, name: str, *, dry_run: bool) -> str:
    """Rewrite a table whose partition columns are not its schema's, in one overwrite commit.

    deltalake does not fail a full overwrite when another writer committed after the version it
    read: that writer's files would stay, unpartitioned, in a partitioned table (which polars
    cannot read). So if any commit landed between the version read and the rewrite, the rewrite
    is undone at once (``restore`` of the version before it: the other writer's rows, the old
    layout) and the next run tries again. The job runs as a lake writer, so normally none does.
    """
    from deltalake import CommitProperties, DeltaTable

    want, have = list(TABLES[name].partition_by), list(table.metadata().partition_columns)
    columns = {f.name for f in table.schema().fields}
    if not want or want == have or not set(want) <= columns:
        return ""
    if dry_run:
        return f"would repartition by {', '.join(want)}"
    read = table.version()
    rows = storage.require_table(name, version=read)
    marker = {REPARTITION_MARK: ",".join(want)}
    rows.write_delta(
        table,
        mode="overwrite",
        delta_write_options={
            "schema_mode": "overwrite",
            "partition_by": want,
            "commit_properties": CommitProperties(custom_metadata=marker),
        },
    )
    latest = DeltaTable(table.table_uri, storage_options=storage.storage_options())
    ours = max(
        (h["version"] for h in latest.history(latest.version() - read) if REPARTITION_MARK in h),
        default=None,
    )
    if ours is not None and ours != read + 1:
        latest.restore(ours - 1)
        return f"skipped: a writer committed during repartitioning (undone: v{ours - 1} restored)"
    return f"repartitioned by {', '.join(want)} ({rows.height} rows)"


def _compact(
    table, name: str, files: int, opts, *, dry_run: bool, settings: MaintenanceSettings
) -> str:
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError

    if name in VERSION_IS_DATA:
        return "skipped: its version is a data version"
    if files < settings.min_files:
        return f"skipped: {files} files < {settings.min_files}"
    if dry_run:
        return f"would compact {files} files"
    for attempt in range(2):
        try:
            metrics = table.optimize.compact(target_size=settings.target_size)
            return f"{metrics['numFilesRemoved']} -> {metrics['numFilesAdded']} files"
        except CommitFailedError as exc:  # a concurrent delete/overwrite of the same files
            if attempt:
                return f"skipped: conflicted with a concurrent commit ({exc})"
            table = DeltaTable(table.table_uri, storage_options=opts)
    raise AssertionError("unreachable")


def _vacuum_plan(
    storage: LensStorage, name: str, table, hours: int, keep: list[int], *, now: datetime
) -> dict[str, int]:
    """The files to delete (path relative to the table -> bytes).

    deltalake's lite vacuum: the log's tombstones removed more than ``hours`` ago. Plus the files
    no version references and the log no longer lists as removed (a checkpoint drops tombstones
    older than ``delta.deletedFileRetentionDuration``, so a lite vacuum would never see them
    again; or a write that never committed) whose object is older than ``hours`` too. Files of
    the ``keep`` versions are never in the plan.
    """
    minimum = _duration(table, "delta.deletedFileRetentionDuration", timedelta(days=7))
    keep_versions = keep or None
    expired = table.vacuum(
        retention_hours=hours,
        dry_run=True,
        enforce_retention_duration=hours * 3600 >= minimum.total_seconds(),
        keep_versions=keep_versions,
    )
    tombstones = table.vacuum(
        retention_hours=0,
        dry_run=True,
        enforce_retention_duration=False,
        keep_versions=keep_versions,
    )
    unreferenced = table.vacuum(
        retention_hours=0,
        dry_run=True,
        enforce_retention_duration=False,
        keep_versions=keep_versions,
        full=True,
    )
    stored = {f.key: f for f in storage.list_files("lake", name)}
    cutoff = (now - timedelta(hours=hours)).timestamp()
    orphans = [
        p for p in set(unreferenced) - set(tombstones) if p in stored and stored[p].mtime < cutoff
    ]
    return {p: stored[p].size if p in stored else 0 for p in sorted({*expired, *orphans})}


def _protected(
    table, refs: Sequence[Reference], now: datetime, opts
) -> tuple[Reference | None, list[int], timedelta]:
    """(oldest reference, the referenced versions still loadable, age of the oldest's commit)."""
    from deltalake import DeltaTable

    current = table.version()
    refs = [r for r in refs if r.version <= current]
    if not refs:
        return None, [], timedelta(0)
    oldest = min(refs, key=lambda r: r.version)
    readable = []
    for v in sorted({r.version for r in refs}):
        try:
            DeltaTable(table.table_uri, version=v, storage_options=opts)
            readable.append(v)
        except Exception:  # noqa: BLE001 (its log is gone already: nothing left to keep)
            continue
    # the history of the latest version, back to the oldest reference (a time-travelled
    # table's history pairs versions with the wrong timestamps)
    stamps = {
        h["version"]: h["timestamp"] for h in table.history(limit=current - oldest.version + 1)
    }
    stamp = stamps.get(oldest.version, min(stamps.values(), default=0))
    committed = datetime.fromtimestamp(stamp / 1000, UTC)
    return oldest, readable, max(now - committed, timedelta(0))


def _checkpoint(table, last: int | None, *, dry_run: bool) -> str:
    """Write a checkpoint at the current version unless the last one is there already."""
    version = table.version()
    if last == version:
        return f"at v{version} already"
    if dry_run:
        return f"would write v{version}"
    table.create_checkpoint()
    return f"wrote v{version}"


def _cleanup_log(
    table,
    protected: Reference | None,
    age: timedelta,
    *,
    dry_run: bool,
    settings: MaintenanceSettings,
) -> str:
    """Drop expired commits, unless the protected version would no longer be replayable."""
    keep = _duration(table, "delta.logRetentionDuration", timedelta(days=30))
    if protected is not None and age + settings.margin >= keep:
        return f"skipped: v{protected.version} is older than the log retention"
    if dry_run:
        return f"would drop commits older than {keep.days} d"
    table.cleanup_metadata()
    return f"commits older than {keep.days} d dropped"


# ---------------------------------------------------------------------------- helpers


def _active(table) -> tuple[int, int]:
    actions = pl.DataFrame(table.get_add_actions())
    return actions.height, int(actions["size_bytes"].sum()) if actions.height else 0


def _stored(storage: LensStorage, name: str) -> int:
    return sum(1 for f in storage.list_files("lake", name) if not f.key.startswith("_delta_log/"))


def _last_checkpoint(storage: LensStorage, name: str) -> int | None:
    """The version of the table's ``_last_checkpoint``, or None before its first checkpoint."""
    try:
        raw = storage.read_bytes(f"{storage.table_uri(name)}/_delta_log/_last_checkpoint")
        return int(json.loads(raw)["version"])
    except (OSError, ValueError, KeyError) + _s3_missing():
        return None


def _duration(table, key: str, default: timedelta) -> timedelta:
    """A table property such as ``interval 30 days``; ``default`` when unset or unreadable."""
    text = table.metadata().configuration.get(key)
    match = re.fullmatch(r"\s*interval\s+(\d+)\s+(\w+?)s?\s*", text or "", re.IGNORECASE)
    if not match or match.group(2).lower() not in _UNITS:
        return default
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])


def _s3_missing() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import ClientError
    except ImportError:  # pragma: no cover
        return ()
    return (ClientError,)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"

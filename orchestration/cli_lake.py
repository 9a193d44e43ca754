"""``lensline lake maintain``: compact, vacuum and checkpoint the lake now (what the weekly
``lake_maintenance`` schedule runs), printing one row per table.

It holds the home's writer lock (:mod:`orchestration.lock`) while it works, so it never runs
beside ``lensline run``. Exit codes as ``lensline``: 0 ok, 1 the home is locked and
``--no-wait`` was given, 2 usage error (an unknown table).
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from orchestration.cli_common import console as _console

__all__ = ["add_lake_parser", "cmd_lake"]


def add_lake_parser(sub) -> None:
    """``lensline lake maintain`` on the ``lensline`` subparsers."""
    lake = sub.add_parser("lake", help="look after the Delta lake (compaction, vacuum)")
    actions = lake.add_subparsers(dest="action", required=True)
    maintain = actions.add_parser(
        "maintain", help="compact small files, vacuum and checkpoint every table now"
    )
    maintain.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    maintain.add_argument(
        "--table", action="append", metavar="T", help="only this table (repeatable)"
    )
    maintain.add_argument(
        "--no-wait", action="store_true", help="exit (code 1) if another writer holds the home"
    )
    lake.set_defaults(func=cmd_lake)


def cmd_lake(args: argparse.Namespace) -> int:
    """Run ``lensline lake maintain``; its exit code."""
    from rich.table import Table

    from lake.maintenance import maintain_lake
    from lake.storage import LensStorage
    from lake.tables import TABLES
    from orchestration.lock import HomeLocked, home_lock

    console = _console()
    unknown = [t for t in args.table or [] if t not in TABLES]
    if unknown:
        console.print(
            f"[red]usage error:[/] unknown table {escape(', '.join(unknown))} "
            f"(tables: {', '.join(sorted(TABLES))})",
            soft_wrap=True,
        )
        return 2
    storage = LensStorage()
    try:
        with home_lock(storage).hold(wait=not args.no_wait, on_wait=console.print):
            reports = maintain_lake(storage, tables=args.table, dry_run=args.dry_run)
    except HomeLocked as exc:
        console.print(f"[red]not started:[/] {escape(str(exc))}", soft_wrap=True)
        return 1
    if not reports:
        console.print(f"no Delta table under {storage.uri('lake')} yet", soft_wrap=True)
        return 0
    if args.dry_run:
        console.print("[bold]dry run:[/] nothing changed")
    for report in reports:
        row = report.row()
        table = Table("", escape(row.pop("table")), show_header=True, title_justify="left")
        for key, value in row.items():
            table.add_row(key, escape(str(value)))
        console.print(table)
    return 0

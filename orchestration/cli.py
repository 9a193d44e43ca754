"""The ``lensline`` command: ``demo``, ``run`` (and ``models`` once a registry exists)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _console():
    from rich.console import Console

    return Console(stderr=False)


def _write_dotenv(home: Path) -> None:
    """Let ``dagster dev`` in the repo root find the same instance and lake (it reads ``.env``)."""
    if not Path("workspace.yaml").exists():
        return
    env = Path(".env")
    lines = [
        ln
        for ln in (env.read_text().splitlines() if env.exists() else [])
        if not ln.startswith(("LENSLINE_HOME=", "DAGSTER_HOME="))
    ]
    lines += [f"LENSLINE_HOME={home}", f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}"]
    env.write_text("\n".join(lines) + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from orchestration.runner import prepare_instance_home, run_pending
    from orchestration.storage import lensline_home

    home = lensline_home()
    prepare_instance_home(home)
    _write_dotenv(home)

    import dagster as dg

    from orchestration.definitions import defs

    console = _console()
    started = time.perf_counter()
    with (
        dg.DagsterInstance.get() as instance,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress,
    ):
        task = progress.add_task("lensline run", total=None)

        def on_progress(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=max(total, 1))

        summary = run_pending(
            defs, instance, select=args.select, on_progress=on_progress, force=args.force
        )

    if summary.registered:
        console.print(f"registered {len(summary.registered)} new video partition(s)")
    if summary.ingested:
        table = Table("video", "status", "error", title="ingested")
        for o in summary.ingested:
            style = "green" if o.status == "ok" else "red"
            table.add_row(o.video_id, f"[{style}]{o.status}[/]", o.error or "")
        console.print(table)
    console.print(f"{summary.up_to_date} video(s) already up to date")
    if summary.stopped_reason:
        console.print(f"[yellow]stopped:[/] {summary.stopped_reason}")
    if summary.downstream:
        state = "[green]ok[/]" if summary.downstream_ok else "[red]FAILED[/]"
        console.print(f"materialised {', '.join(summary.downstream)}: {state}")
    for check in summary.failed_checks:
        console.print(f"[yellow]check did not pass[/] {check}")
    for failure in summary.step_failures:
        console.print(f"[red]step failed[/] {failure}")
    console.print(
        f"took {time.perf_counter() - started:.1f}s; instance {os.environ['DAGSTER_HOME']}"
    )
    return 0 if summary.downstream_ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from data_quality.synthetic import make_demo_set
    from orchestration.storage import lensline_home

    home = lensline_home()
    console = _console()
    started = time.perf_counter()
    with console.status("rendering the demo conveyor-belt videos..."):
        demo = make_demo_set(
            home / "landing",
            seed=args.seed,
            cameras=args.cameras,
            videos_per_camera=args.videos_per_camera,
            seconds=args.seconds,
            conditions=args.conditions,
            truth_path=home / "demo" / "truth.csv",
        )
    console.print(
        f"demo set: {len(demo.videos)} videos, labels in {demo.labels_csv} "
        f"({time.perf_counter() - started:.1f}s)"
    )
    code = cmd_run(argparse.Namespace(select=None, force=False))
    console.print(
        "\nWhere to look:\n"
        f"  lake (Delta tables):   {home / 'lake'}\n"
        f"  frames and models:     {home / 'artifacts'}\n"
        "  Dagster UI:            dagster dev   (in this folder; .env points it at the demo instance)\n"
    )
    return code


def cmd_models(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    from orchestration.storage import LensStorage
    from training.registry import ModelRegistry, RegistryError

    storage = LensStorage()
    registry = ModelRegistry(storage.table_uri("models"), storage_options=storage.storage_options())
    console = _console()
    try:
        if args.action == "promote":
            registry.promote(
                args.version, reason=args.reason or "promoted by hand (lensline models promote)"
            )
            console.print(f"{args.version} is now the champion")
        elif args.action == "rollback":
            restored = registry.rollback(
                reason=args.reason or "rolled back by hand (lensline models rollback)"
            )
            console.print(f"rolled back: {restored} is the champion again")
    except RegistryError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    models = registry.list()
    table = Table(
        "version", "alias", "accuracy", "false rejects (good)", "dataset v", "labels v", "created"
    )
    for row in models.sort("created_at", descending=True).iter_rows(named=True):
        metrics = json.loads(row["metrics"] or "{}")
        style = {"champion": "bold green", "challenger": "yellow"}.get(row["alias"], "dim")
        table.add_row(
            row["model_version"],
            f"[{style}]{row['alias']}[/]",
            f"{metrics.get('accuracy', float('nan')):.4f}",
            f"{metrics.get('false_reject_rate') or 0:.4f}",
            str(row["dataset_version"]),
            str(row["label_version"]),
            row["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table if models.height else "no models registered yet")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lensline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process everything new in the landing zone now")
    run.add_argument(
        "--select", help="Dagster asset selection, e.g. 'key:raw_video+' or 'group:ingest'"
    )
    run.add_argument(
        "--force", action="store_true", help="rematerialise downstream assets even if up to date"
    )
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="generate the demo set and run the whole graph on it")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--cameras", type=int, default=3)
    demo.add_argument("--videos-per-camera", type=int, default=2)
    demo.add_argument("--seconds", type=float, default=60.0)
    demo.add_argument(
        "--conditions",
        default="nominal",
        help="nominal, dark, gray_gloves, moved_camera, dirty_lens",
    )
    demo.set_defaults(func=cmd_demo)

    models = sub.add_parser("models", help="the model registry: list, promote, rollback")
    models_sub = models.add_subparsers(dest="action", required=True)
    models_sub.add_parser("list", help="every model version with its alias and test metrics")
    promote = models_sub.add_parser(
        "promote", help="make VERSION the champion (the old one is archived)"
    )
    promote.add_argument("version")
    promote.add_argument("--reason")
    rollback = models_sub.add_parser("rollback", help="reinstate the previous champion")
    rollback.add_argument("--reason")
    models.set_defaults(func=cmd_models)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""The ``lensline`` command: ``demo``, ``run``, ``ui``, ``models`` and ``deploy``.

Exit codes: 0 ok, 1 a step failed (or ``--no-wait`` found the home locked), 2 usage error,
3 input rejected (a bad label file or video; the rest is processed first; a deployment the lake
refuses, e.g. a model version without an edge bundle).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from orchestration.cli_fleet import cmd_deploy, cmd_models

if TYPE_CHECKING:
    import dagster as dg


from orchestration.cli_common import console as _console


def _definitions(args: argparse.Namespace) -> dg.Definitions:
    """The definitions ``run`` and ``demo`` execute: ``args.defs``, or the single entry point's."""
    if args.defs is not None:
        return args.defs
    from orchestration.definitions import defs  # imports every asset module: only when running

    return defs


# `--full-refresh`: the graph's refreshes rebuild from all labelled frames (training/incremental)
FULL_REFRESH = {
    "ops": {
        "frame_embeddings": {"config": {"refresh": "full"}},
        "trained_model": {"config": {"refresh": "full"}},
    }
}


def cmd_run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from lake.storage import LensStorage, lensline_home
    from orchestration.instance_home import prepare_instance_home
    from orchestration.lock import HomeLocked, home_lock
    from orchestration.runner import SelectionError, resolve_selection, run_pending

    prepare_instance_home(lensline_home())

    import dagster as dg

    defs = _definitions(args)
    console = _console()
    try:
        resolve_selection(defs, args.select)
    except SelectionError as exc:
        console.print(f"[red]usage error:[/] {exc}", soft_wrap=True, markup=False, highlight=False)
        return 2
    started = time.perf_counter()
    lock = home_lock(LensStorage())
    waits: list[str] = []

    def on_wait(text: str) -> None:
        waits.append(text)
        console.print(text, soft_wrap=True, markup=False)

    try:
        with lock.hold(wait=not args.no_wait, on_wait=on_wait):
            if waits:
                waited = time.perf_counter() - started
                console.print(f"got {lock.where} after {waited:.1f}s", soft_wrap=True)
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
                    defs,
                    instance,
                    select=args.select,
                    on_progress=on_progress,
                    force=args.force,
                    run_config=FULL_REFRESH if getattr(args, "full_refresh", False) else None,
                )
    except HomeLocked as exc:
        console.print(
            f"[red]not started:[/] {exc}; another lensline run is writing this home. "
            "Run again later, or without --no-wait to wait for it.",
            soft_wrap=True,
        )
        return 1

    for run_id in summary.recovered_runs:
        console.print(f"[yellow]marked failed[/] run {run_id}: its lensline run process had died")
    for problem in summary.landing_problems:
        console.print(f"[yellow]landing:[/] {escape(str(problem))}", soft_wrap=True)
    if summary.registered:
        console.print(f"registered {len(summary.registered)} new video partition(s)")
    if summary.ingested:
        table = Table("video", "status", "error", title="ingested")
        for o in summary.ingested:
            style = "green" if o.status == "ok" else "red"
            table.add_row(escape(o.video_id), f"[{style}]{o.status}[/]", escape(o.error or ""))
        console.print(table)
    console.print(f"{summary.up_to_date} video(s) already up to date")
    for file, problems in summary.rejected_labels.items():
        console.print(f"[red]label file rejected[/] {escape(str(file))}:", soft_wrap=True)
        console.print(problems, markup=False, highlight=False, soft_wrap=True)
    if summary.stopped_reason:
        console.print(f"[yellow]stopped:[/] {escape(summary.stopped_reason)}", soft_wrap=True)
    if summary.downstream:
        state = "[green]ok[/]" if summary.downstream_ok else "[red]FAILED[/]"
        console.print(f"materialised {', '.join(summary.downstream)}: {state}")
    for check in summary.failed_checks:
        console.print(f"[yellow]check did not pass[/] {escape(check)}", soft_wrap=True)
    for note in summary.check_notes:
        console.print(f"[yellow]note[/] {escape(note)}", soft_wrap=True)
    for failure in summary.step_failures:
        console.print(f"[red]step failed[/] {escape(failure)}", soft_wrap=True)
    code = summary.exit_code
    if code == 3:
        console.print(
            "[red]input rejected[/] (exit 3): "
            + escape(
                "; ".join(
                    [f"video {o.video_id} is {o.status}" for o in summary.rejected]
                    + [f"label file {f}" for f in summary.rejected_labels]
                )
            ),
            soft_wrap=True,
        )
    console.print(
        f"took {time.perf_counter() - started:.1f}s; instance {os.environ['DAGSTER_HOME']}"
    )
    return code


def cmd_ui(args: argparse.Namespace) -> int:
    """Start ``dagster dev`` (and the FiftyOne App) for this home, from a temp working dir."""
    import shutil
    import subprocess
    import tempfile

    from lake.storage import lensline_home
    from orchestration.instance_home import prepare_instance_home

    home = lensline_home()
    dagster_home = prepare_instance_home(home)
    env = {**os.environ, "LENSLINE_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    import dagster as dg

    # create the instance's SQLite schema now: the UI's daemon and a `lensline run` started
    # beside it would otherwise both stamp a fresh database (Dagster then refuses to open it)
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
    bindir = Path(sys.executable).parent
    dagster = shutil.which("dagster", path=str(bindir)) or shutil.which("dagster") or "dagster"
    from orchestration.launcher import LOCATION, MODULE, REPO_ROOT

    # a temp cwd: nothing is written into the user's folder, and no stray .env there is read;
    # the workspace names the code location as workspace.yaml does, so a run `lensline run`
    # queued is found and launched by this daemon
    workdir_cm = tempfile.TemporaryDirectory(prefix="lensline-ui-")
    workdir = workdir_cm.name
    workspace = Path(workdir) / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n"
        f"      module_name: {MODULE}\n      location_name: {LOCATION}\n"
        f"      working_directory: {REPO_ROOT}\n"
    )
    commands = [[dagster, "dev", "-h", "127.0.0.1", "-p", str(args.port), "-w", str(workspace)]]
    if args.fiftyone:
        commands.append([sys.executable, "-m", "orchestration.fiftyone_app"])
    print(f"LENSLINE_HOME={home}\nDAGSTER_HOME={dagster_home}")
    for cmd in commands:
        print(" ".join(cmd), flush=True)
    if args.dry_run:
        workdir_cm.cleanup()
        return 0
    with workdir_cm:
        procs = [subprocess.Popen(cmd, cwd=workdir, env=env) for cmd in commands]
        try:
            return procs[0].wait()
        except KeyboardInterrupt:
            return 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from demo import make_demo_set
    from lake.storage import LensStorage, lensline_home

    home = lensline_home()
    storage = LensStorage()
    console = _console()
    started = time.perf_counter()
    options = dict(
        seed=args.seed,
        cameras=args.cameras,
        videos_per_camera=args.videos_per_camera,
        seconds=args.seconds,
        conditions=args.conditions,
    )
    with console.status("rendering the demo conveyor-belt videos..."):
        if storage.is_s3:  # render locally, then upload to the S3 landing zone
            with tempfile.TemporaryDirectory(prefix="lensline-demo-") as tmp:
                root = Path(tmp)
                demo = make_demo_set(
                    root / "landing", **options, truth_path=root / "demo" / "truth.csv"
                )
                uploaded = 0
                for path in sorted(p for p in root.rglob("*") if p.is_file()):
                    uploaded += storage.put_file(
                        path, storage.uri(path.relative_to(root).as_posix())
                    )
                labels = storage.uri(Path(demo.labels_csv).relative_to(root).as_posix())
            where = f"uploaded {uploaded} changed file(s) to {storage.uri('landing')}"
        else:
            demo = make_demo_set(
                home / "landing", **options, truth_path=home / "demo" / "truth.csv"
            )
            labels, where = str(demo.labels_csv), f"in {home / 'landing'}"
    console.print(
        f"demo set: {len(demo.videos)} videos {where}, labels in {labels} "
        f"({time.perf_counter() - started:.1f}s)",
        soft_wrap=True,
    )
    full = getattr(args, "full_refresh", False)
    code = cmd_run(
        argparse.Namespace(
            select=None, force=False, no_wait=False, defs=args.defs, full_refresh=full
        )
    )
    console.print(
        "\nWhere to look:\n"
        f"  landing zone:          {storage.uri('landing')}\n"
        f"  lake (Delta tables):   {storage.uri('lake')}\n"
        f"  frames and models:     {storage.uri('artifacts')}\n"
        f"  Dagster instance:      {os.environ['DAGSTER_HOME']}\n"
        "  Dagster UI:            lensline ui   (add --fiftyone for the FiftyOne App)\n",
        soft_wrap=True,
        highlight=False,
    )
    _print_edge_hint(storage, demo.videos, console)
    if getattr(args, "scenario", "baseline") == "drift":
        from demo.scenario import run_drift_scenario

        def again() -> int:
            return cmd_run(
                argparse.Namespace(
                    select=None, force=False, no_wait=False, defs=args.defs, full_refresh=full
                )
            )

        code = max(code, run_drift_scenario(args, again, console, home=home))
        _print_edge_hint(storage, demo.videos, console)
    return code


def _print_edge_hint(storage, videos: list, console) -> None:
    """The champion's edge bundle and the command that runs it on a demo video."""
    import polars as pl

    bundles = storage.read_table("edge_bundles")
    champion = storage.registry().champion()
    if bundles is None or champion is None or not videos:
        return
    row = bundles.filter(pl.col("model_version") == champion.model_version)
    if row.is_empty():
        console.print(f"[yellow]no edge bundle for the champion {champion.model_version} yet[/]")
        return
    console.print(
        f"Edge bundle of the champion {champion.model_version}: {row['uri'][0]}\n"
        f"  try it:  lensline-edge run {row['uri'][0]} {videos[0]} --out /tmp/predictions.jsonl\n",
        soft_wrap=True,
        highlight=False,
    )


def main(argv: list[str] | None = None, *, defs: dg.Definitions | None = None) -> int:
    """Parse ``argv`` and run the command; its exit code.

    ``defs``: the Dagster definitions ``run`` and ``demo`` execute; by default
    ``orchestration.definitions.defs`` (tests pass a smaller graph).
    """
    parser = argparse.ArgumentParser(prog="lensline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process everything new in the landing zone now")
    run.add_argument(
        "--select", help="Dagster asset selection, e.g. 'key:raw_video+' or 'group:ingest'"
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="re-ingest every video and rematerialise downstream assets even if up to date",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="retrain embeddings and model on all labelled frames (no incremental refresh)",
    )
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="exit (code 1) instead of waiting when another lensline run holds this home",
    )
    run.set_defaults(func=cmd_run)

    ui = sub.add_parser(
        "ui", help="start the Dagster UI (and FiftyOne App) for this home on 127.0.0.1"
    )
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--fiftyone", action="store_true", help="also open the FiftyOne App")
    ui.add_argument("--dry-run", action="store_true", help="print the commands, start nothing")
    ui.set_defaults(func=cmd_ui)

    demo = sub.add_parser("demo", help="generate the demo set and run the whole graph on it")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--full-refresh",
        action="store_true",
        help="every retraining on all labelled frames (no incremental refresh)",
    )
    demo.add_argument("--cameras", type=int, default=3)
    demo.add_argument("--videos-per-camera", type=int, default=2)
    demo.add_argument("--seconds", type=float, default=60.0)
    demo.add_argument(
        "--conditions",
        default="nominal",
        help="nominal, dark, gray_gloves, moved_camera, dirty_lens",
    )
    demo.add_argument(
        "--scenario",
        choices=["baseline", "drift"],
        default="baseline",
        help="drift: after the baseline, shift the line (gray gloves and dimmer light on cam1, "
        "a moved cam2, cam3 unchanged), detect, label the queued frames, retrain, rebuild the bundle",
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
    promote.add_argument(
        "--deploy",
        action="append",
        metavar="BOX",
        help="also run it as champion on BOX and publish (repeatable; default: no box changes)",
    )
    rollback = models_sub.add_parser("rollback", help="reinstate the previous champion")
    rollback.add_argument("--reason")
    models.set_defaults(func=cmd_models)

    deploy = sub.add_parser(
        "deploy", help="run a model version on a box (desired state, published for the box)"
    )
    deploy.add_argument("version", nargs="?", metavar="MODEL_VERSION")
    deploy.add_argument("--box", help="the box's id (its service config's `box:`)")
    deploy.add_argument("--camera", help="only this camera of the box (default: every camera)")
    deploy.add_argument(
        "--shadow", action="store_true", help="run beside the champion: same frames, no alarms"
    )
    deploy.add_argument("--reason")
    deploy.add_argument(
        "--rollback", action="store_true", help="back to the previous deployment of the box"
    )
    deploy.add_argument("--list", action="store_true", help="the deployment history")
    deploy.set_defaults(func=cmd_deploy)

    from orchestration.profiles import add_init_parser

    add_init_parser(sub)  # lensline init --profile embedded|production

    from orchestration.cli_line import add_line_parser

    add_line_parser(sub)  # lensline line validate|apply|show

    from orchestration.cli_capture import add_capture_parser

    add_capture_parser(sub)  # lensline capture request|list|cancel

    from orchestration.cli_lake import add_lake_parser

    add_lake_parser(sub)  # lensline lake maintain

    args = parser.parse_args(argv)
    args.defs = defs
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

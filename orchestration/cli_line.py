"""``lensline line``: a line's configuration as data (:mod:`lake.line_config`).

    lensline line validate FILE                 # 0 valid; 3 with every problem, one a line
    lensline line apply FILE [--by NAME]        # validate, then a new version in line_configs
    lensline line show [LINE] [--version N] [--json]

Exit codes as ``lensline``: 0 ok, 2 usage (an unknown line or version), 3 input rejected (the
file is invalid: nothing is written).
"""

from __future__ import annotations

import argparse
import getpass
import json

from rich.markup import escape

from orchestration.cli_common import console as _console


def add_line_parser(sub) -> None:
    """Register ``lensline line`` on the top-level subparsers ``sub``."""
    line = sub.add_parser("line", help="a line's configuration: validate, apply, show")
    line_sub = line.add_subparsers(dest="action", required=True)
    validate = line_sub.add_parser("validate", help="check a line YAML (exit 3 listing problems)")
    validate.add_argument("file")
    apply = line_sub.add_parser(
        "apply", help="validate, then make FILE the line's configuration in force"
    )
    apply.add_argument("file")
    apply.add_argument("--by", help="who applies it (default: the OS user)")
    show = line_sub.add_parser("show", help="the configuration in force (of every line, or LINE)")
    show.add_argument("line", nargs="?")
    show.add_argument("--version", type=int, help="an earlier version of LINE")
    show.add_argument("--json", action="store_true", help="the configuration as JSON")
    line.set_defaults(func=cmd_line)


def cmd_line(args: argparse.Namespace) -> int:
    from lake.line_config import LineConfigError

    console = _console()
    try:
        if args.action == "validate":
            return _validate(args, console)
        if args.action == "apply":
            return _apply(args, console)
        return _show(args, console)
    except LineConfigError as e:
        console.print(
            f"[red]rejected[/]: {escape(e.path)} ({len(e.problems)} problem(s))",
            soft_wrap=True,
            highlight=False,
        )
        for problem in e.problems:
            console.print(escape(str(problem)), soft_wrap=True, highlight=False)
        return 3


def _validate(args: argparse.Namespace, console) -> int:
    from lake.line_config import load

    config, _ = load(args.file)
    console.print(
        f"{escape(args.file)}: valid (line {config.line}: {len(config.cameras)} camera(s) on "
        f"{', '.join(config.boxes())}, {len(config.classes)} class(es); sha256 "
        f"{config.sha256()[:12]})",
        soft_wrap=True,
        highlight=False,
    )
    return 0


def _apply(args: argparse.Namespace, console) -> int:
    from edge_export.bundle import load_signing_key
    from lake.line_config import apply
    from lake.storage import LensStorage

    storage = LensStorage()
    result = apply(
        storage, args.file, by=args.by or getpass.getuser(), signing_key=load_signing_key()
    )
    if result.changed:
        console.print(
            f"line {result.line}: version {result.version} applied ({result.sha256[:12]})"
        )
    else:
        console.print(
            f"line {result.line}: unchanged, version {result.version} is already this "
            "configuration (nothing written)"
        )
    _report(storage)
    for uri in result.published:
        signed = "signed" if result.signed else "UNSIGNED (set LENSLINE_SIGNING_KEY)"
        console.print(f"published {escape(uri)} ({signed})", soft_wrap=True, highlight=False)
    return 0


def _report(storage) -> None:
    """Report the new observations of the ``line_config_*`` assets to this home's Dagster
    instance, so the next ``lensline run`` (whose automation tick sees their data versions)
    rematerialises exactly what depends on the changed sections."""
    import dagster as dg

    from assets.line_config import observation_events
    from orchestration.instance_home import prepare_instance_home

    prepare_instance_home()
    with dg.DagsterInstance.get() as instance:
        for event in observation_events(storage):
            instance.report_runless_asset_event(event)


def _show(args: argparse.Namespace, console) -> int:
    from lake.line_config import active_all, history, markdown
    from lake.storage import LensStorage

    storage = LensStorage()
    if args.version is not None and not args.line:
        console.print("[red]error:[/] --version needs a LINE")
        return 2
    if args.line:
        versions = history(storage, args.line)
        if args.version is not None:
            versions = [v for v in versions if v.version == args.version]
        if not versions:
            what = f"version {args.version} of " if args.version is not None else ""
            console.print(f"[red]error:[/] no {what}line {escape(args.line)} applied")
            return 2
        chosen = versions[:1]
    else:
        chosen = active_all(storage)
    if args.json:
        out = [
            {"line": v.line, "version": v.version, "sha256": v.sha256,
             "applied_at": v.applied_at.isoformat(), "applied_by": v.applied_by,
             "config": v.config.model_dump(mode="json")}
            for v in chosen
        ]  # fmt: skip
        print(json.dumps(out if not args.line else out[0], indent=2, sort_keys=True))
        return 0
    if not chosen:
        console.print("no line configuration applied yet (lensline line apply FILE)")
        return 0
    for v in chosen:
        console.print(
            f"[bold]line {escape(v.line)}[/] version {v.version} ({v.sha256[:12]}), applied "
            f"{v.applied_at:%Y-%m-%d %H:%M} by {escape(v.applied_by)} from {escape(v.source)}",
            soft_wrap=True,
            highlight=False,
        )
        console.print(escape(markdown(v.config)), soft_wrap=True, highlight=False)
    return 0

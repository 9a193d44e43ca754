"""``lensline models`` and ``lensline deploy``: the model registry and what runs on the boxes.

Exit codes as ``lensline``: 0 ok, 2 usage error, 3 refused (a deployment the lake refuses, e.g.
a model version without an edge bundle; a signing key that cannot be read).
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from orchestration.cli_common import console as _console


def _shadow_evidence(storage, version: str, console) -> None:
    """What the edge runners saw of ``version`` running in shadow beside the champion."""
    import polars as pl

    shadow = storage.read_table("shadow_results")
    rows = shadow.filter(pl.col("shadow_model_version") == version) if shadow is not None else None
    if rows is None or rows.is_empty():
        console.print(
            f"[yellow]no shadow evidence for {version}[/]: run it on the line with "
            "`lensline-edge run CHAMPION_BUNDLE INPUT --shadow ITS_BUNDLE` and drop the JSONL in "
            f"{storage.uri('landing', 'shadow')}"
        )
        return
    agree = rows.filter(pl.col("label") == pl.col("shadow_label")).height
    console.print(
        f"shadow evidence: {rows.height} frames on the line beside "
        f"{', '.join(sorted(rows['model_version'].unique().to_list()))}; "
        f"agreement {agree / rows.height:.1%}, {rows.height - agree} disagreements "
        "(FiftyOne view shadow_disagreements)"
    )


def cmd_models(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    from lake.storage import LensStorage
    from training.registry import RegistryError

    storage = LensStorage()
    registry = storage.registry()
    console = _console()
    try:
        if args.action == "promote":
            reason = args.reason or "promoted by hand (lensline models promote)"
            key = _signing_key(console) if args.deploy else None  # refused before promoting
            if key is False:
                return 3
            registry.promote(args.version, reason=reason)
            console.print(f"{args.version} is now the champion")
            _shadow_evidence(storage, args.version, console)
            boxes = args.deploy or []
            if boxes and not _deploy_promoted(storage, args.version, boxes, reason, key):
                return 3
        elif args.action == "rollback":
            restored = registry.rollback(
                reason=args.reason or "rolled back by hand (lensline models rollback)"
            )
            console.print(f"rolled back: {restored} is the champion again")
    except RegistryError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
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


def _signing_key(console) -> bytes | None | bool:
    """The signing key from the environment (None: unsigned); False, with the reason printed,
    when it is set but unusable."""
    from edge_export.bundle import SigningKeyError, load_signing_key

    try:
        return load_signing_key()
    except SigningKeyError as exc:
        console.print(f"[red]rejected:[/] {escape(str(exc))}", soft_wrap=True)
        return False


def _deploy_promoted(storage, version: str, boxes: list[str], reason: str, key) -> bool:
    """``models promote --deploy BOX``: the new champion on each box, published; False when a
    box refused it (the promotion stands; the boxes before it changed, the rest did not)."""
    from lake.deployments import DeploymentError, deploy, publish

    console = _console()
    for box in boxes:
        try:
            row = deploy(storage, version, box=box, by=_user(), reason=f"promoted: {reason}")
            done = publish(storage, box, signing_key=key)
        except DeploymentError as exc:
            console.print(f"[red]not deployed on {box}:[/] {escape(str(exc))}", soft_wrap=True)
            return False
        signed = "signed" if done.signed else "[yellow]UNSIGNED[/] (set LENSLINE_SIGNING_KEY)"
        console.print(
            f"{version} is the champion on {row.where} (change {row.seq}); desired state at "
            f"{done.uri}, {signed}",
            soft_wrap=True,
            highlight=False,
        )
    return True


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cmd_deploy(args: argparse.Namespace) -> int:
    """``lensline deploy``: change what runs where (the lake's desired state) and publish it."""
    import getpass

    from rich.table import Table

    from edge_export.bundle import SigningKeyError, load_signing_key
    from lake.deployments import DeploymentError, deploy, history, publish, rollback
    from lake.storage import LensStorage

    console = _console()
    if args.list:
        if args.version or args.rollback or args.camera or args.shadow:
            return _usage(console, "--list takes only --box")
    elif not args.box:
        return _usage(console, "--box BOX is required (which box runs it)")
    elif bool(args.version) == bool(args.rollback):
        return _usage(console, "give MODEL_VERSION to deploy, or --rollback (not both)")
    storage = LensStorage()
    if args.list:
        table = Table("seq", "box/camera", "role", "action", "model", "live", "when (UTC)", "by",
                      "reason")  # fmt: skip
        rows = history(storage, args.box)
        for d, live in rows:
            table.add_row(
                str(d.seq), f"{d.box}/{d.camera or '*'}", d.role, d.action,
                d.model_version or "(none)", "[bold green]yes[/]" if live else "",
                d.created_at.strftime("%Y-%m-%d %H:%M"), escape(d.by), escape(d.reason),
            )  # fmt: skip
        console.print(table if rows else "no deployments yet")
        return 0
    try:
        by = getpass.getuser()
    except (KeyError, OSError):
        by = "unknown"
    role = "shadow" if args.shadow else "champion"
    try:
        key = load_signing_key()
        if args.rollback:
            row = rollback(
                storage, box=args.box, camera=args.camera, role=role, by=by,
                reason=args.reason or "rolled back by hand (lensline deploy --rollback)",
            )  # fmt: skip
            now = row.model_version or ("no shadow" if args.shadow else "the box's champion")
            console.print(f"rolled back {role} on {row.where}: {now} (change {row.seq})")
        else:
            row = deploy(
                storage, args.version, box=args.box, camera=args.camera, role=role, by=by,
                reason=args.reason or "deployed by hand (lensline deploy)",
            )  # fmt: skip
            console.print(f"{row.model_version} is the {role} on {row.where} (change {row.seq})")
        done = publish(storage, args.box, signing_key=key)
    except (DeploymentError, SigningKeyError) as exc:
        console.print(f"[red]rejected:[/] {escape(str(exc))}", soft_wrap=True)
        return 3
    signed = "signed" if done.signed else "[yellow]UNSIGNED[/] (set LENSLINE_SIGNING_KEY)"
    state = "published" if done.changed else "unchanged at"
    console.print(f"desired state {state} {done.uri}, {signed}", soft_wrap=True, highlight=False)
    return 0


def _usage(console, problem: str) -> int:
    console.print(
        f"[red]usage:[/] {problem}\n  lensline deploy MODEL_VERSION --box BOX [--camera ID] "
        "[--shadow] [--reason TEXT]\n  lensline deploy --rollback --box BOX [--camera ID] "
        "[--shadow]\n  lensline deploy --list [--box BOX]",
        soft_wrap=True,
        highlight=False,
    )
    return 2

"""``lensline capture``: ask the boxes for frames (capture requests), list them, cancel them.

Every change is one commit to ``capture_requests`` and republishes the signed
``capture_requests.json`` (:mod:`lake.capture_requests`). Exit codes as ``lensline``: 0 ok,
2 usage error, 3 input rejected (one line naming the option at fault; an unknown request id; a
signing key that cannot be read).
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from orchestration.cli_common import console as _console

__all__ = ["add_capture_parser", "cmd_capture"]

#: the request's field -> the option that sets it (errors name what the user typed)
_OPTION = {"camera": "--camera", "policy": "--policy", "margin": "--margin",
           "every_n": "--every-n", "before_s": "--before", "after_s": "--after",
           "per_hour": "--per-hour", "max_bytes": "--max-mb", "expires": "--expires",
           "reason": "--reason", "request_id": "ID"}  # fmt: skip


def add_capture_parser(sub) -> None:
    """``lensline capture request|list|cancel`` on the ``lensline`` subparsers."""
    from lake.capture_requests import POLICIES

    capture = sub.add_parser(
        "capture", help="ask the boxes for frames from the line (capture requests)"
    )
    actions = capture.add_subparsers(dest="action", required=True)
    req = actions.add_parser("request", help="ask a camera's box for frames, within a budget")
    req.add_argument("--camera", required=True, help="the camera id")
    req.add_argument("--policy", required=True, help=f"one of {', '.join(POLICIES)}")
    req.add_argument("--margin", type=float, help="uncertain: top-1 minus top-2 below this")
    req.add_argument("--every-n", type=int, help="random: 1 frame in N")
    req.add_argument("--before", type=float, help="alarm_clip: seconds kept before the alarm")
    req.add_argument("--after", type=float, help="alarm_clip: seconds recorded after it")
    req.add_argument("--per-hour", type=int, default=60, help="frames (clips) per hour")
    req.add_argument("--max-mb", type=float, default=50.0, help="megabytes in all (10^6 bytes)")
    req.add_argument("--expires", default="24h", help="how long it runs: 90m, 24h, 2d")
    req.add_argument("--reason", default="asked by hand (lensline capture request)")
    listing = actions.add_parser("list", help="capture requests and what the boxes sent")
    listing.add_argument("--all", action="store_true", help="also cancelled and expired ones")
    cancel = actions.add_parser("cancel", help="stop a capture request")
    cancel.add_argument("request_id", metavar="ID")
    capture.set_defaults(func=cmd_capture)


def cmd_capture(args: argparse.Namespace) -> int:
    """Run ``lensline capture <action>``; its exit code."""
    from edge_export.bundle import SigningKeyError, load_signing_key
    from lake import capture_requests as cr
    from lake.storage import LensStorage

    console = _console()
    storage = LensStorage()
    if args.action == "list":
        return _list(storage, show_all=args.all)
    try:
        if args.action == "request":
            try:
                expires = cr.parse_duration(args.expires)
            except ValueError as exc:
                raise cr.CaptureRequestError("expires", str(exc)) from None
            key = load_signing_key()  # refused before anything is written
            row, created = cr.request(
                storage, camera=args.camera, policy=args.policy, margin=args.margin,
                every_n=args.every_n, before_s=args.before, after_s=args.after,
                per_hour=args.per_hour, max_bytes=int(args.max_mb * 1_000_000),
                expires_in=expires, reason=args.reason, created_by=_user(),
            )  # fmt: skip
            what = "requested" if created else "already active:"
            console.print(f"{what} {row.request_id} on {row.camera} ({_policy(row)}), until "
                          f"{row.expires_at:%Y-%m-%d %H:%M} UTC", highlight=False)  # fmt: skip
        else:
            key = load_signing_key()
            row, changed = cr.cancel(storage, args.request_id)
            state = (
                "cancelled" if changed else f"not active ({cr.effective_status(row, _utcnow())})"
            )
            console.print(f"{row.request_id} {state}", highlight=False)
        done = cr.publish(storage, signing_key=key)
    except cr.CaptureRequestError as exc:
        option = _OPTION.get(exc.field, exc.field)
        message = str(exc).split(": ", 1)[-1]
        console.print(f"[red]rejected:[/] {option}: {escape(message)}", soft_wrap=True)
        return 3
    except SigningKeyError as exc:
        console.print(f"[red]rejected:[/] {escape(str(exc))}", soft_wrap=True)
        return 3
    signed = "signed" if done.signed else "[yellow]UNSIGNED[/] (set LENSLINE_SIGNING_KEY)"
    state = "published" if done.changed else "unchanged at"
    console.print(
        f"{done.requests} active request(s) {state} {done.uri}, {signed}",
        soft_wrap=True,
        highlight=False,
    )
    return 0


def _list(storage, *, show_all: bool) -> int:
    from rich.table import Table

    from lake import capture_requests as cr

    console = _console()
    sent = cr.sent(storage)
    table = Table("id", "camera", "policy", "per hour", "budget", "expires (UTC)", "status",
                  "sent", "skipped (budget)", "reason")  # fmt: skip
    rows = [(r, s) for r, s in cr.history(storage) if show_all or s == "active"]
    for r, status in rows:
        got = sent.get(r.request_id, {})
        table.add_row(
            r.request_id, r.camera, _policy(r), str(r.per_hour), _mb(r.max_bytes),
            f"{r.expires_at:%Y-%m-%d %H:%M}", status,
            f"{got.get('frames', 0)} frames, {_mb(got.get('bytes', 0))}",
            str(got.get("skipped_budget", 0)), escape(r.reason),
        )  # fmt: skip
    console.print(table if rows else "no capture requests" + ("" if show_all else " active"))
    return 0


def _policy(r) -> str:
    return {"uncertain": f"uncertain < {r.margin}", "random": f"1 in {r.every_n}",
            "alarm_clip": f"alarm_clip -{r.before_s}s/+{r.after_s}s"}.get(r.policy, r.policy)  # fmt: skip


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _utcnow():
    from datetime import UTC, datetime

    return datetime.now(UTC)

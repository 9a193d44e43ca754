"""``lensline-edge serve CONFIG.yaml``: wire the config, live sources, desired-state watcher and
plant signals into :class:`edge_export.service.serve.Service`, until SIGTERM/SIGINT.

Exit codes: 0 stopped cleanly; 2 usage; 3 the config is unusable (every bad field named) or the
trusted key cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "build",
    "main",
    "publish_capture",
    "publish_file",
    "publish_segment",
    "publish_telemetry",
]

ENV_TRUSTED = "LENSLINE_TRUSTED_KEY"


def _err(msg: str) -> None:
    print(f"lensline-edge serve: {msg}", file=sys.stderr, flush=True)


def publish_file(root: str, key: str, local: Path) -> str:
    """Copy a closed local file to ``<root>/<key>`` (a local folder or an ``s3://`` prefix),
    whole or not at all; returns its URI."""
    if root.startswith("s3://"):
        import boto3

        bucket, _, prefix = root[5:].partition("/")
        full = "/".join(p for p in (prefix.strip("/"), key) if p)
        boto3.client("s3").upload_file(str(local), bucket, full)
        return f"s3://{bucket}/{full}"
    from edge_export.fsutil import atomic_write

    target = Path(root) / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as fh:
        fh.write(local.read_bytes())
    return str(target)


def publish_segment(root: str, box: str, local: Path) -> str:
    """A closed shadow segment into the lake's ``landing/shadow/<box>/``, where
    ``shadow_sensor`` picks it up."""
    return publish_file(root, f"landing/shadow/{box}/{local.name}", local)


def publish_telemetry(root: str, box: str, local: Path) -> str:
    """A closed heartbeat segment into the lake's ``landing/telemetry/<box>/``, where
    ``fleet_sensor`` picks it up (:mod:`edge_export.service.telemetry`)."""
    return publish_file(root, f"landing/telemetry/{box}/{local.name}", local)


def publish_capture(root: str, box: str, video: Path, sidecar: Path) -> str:
    """A closed capture (shadow disagreements, or a capture request's video) into
    ``landing/videos/<camera>/`` (ingested like any video) and its sidecar into
    ``landing/captures/<box>/<camera>/``."""
    camera = video.parent.name
    publish_file(root, f"landing/captures/{box}/{camera}/{sidecar.name}", sidecar)
    return publish_file(root, f"landing/videos/{camera}/{video.name}", video)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lensline-edge serve",
        description="Inspect live cameras with the models deployed to this box until stopped.",
    )
    p.add_argument("config", type=Path, help="the box's YAML config (see docs/edge.md)")
    p.add_argument("--max-seconds", type=float, help="stop after this long (demos, tests)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lensline-edge serve``; returns the exit code."""
    from edge_export.service.config import ConfigError, load

    args = _parser().parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as e:
        _err(f"{e.path}: unusable config")
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 3
    try:
        service = build(config)
    except (ValueError, OSError) as e:
        _err(f"error: {e}")
        return 3
    service.install_signal_handlers()
    if args.max_seconds:
        threading.Timer(args.max_seconds, service.stop_event.set).start()
    _err(
        f"box {config.box}: {len(service.config.cameras)} camera(s)"
        + (" (from lines/<box>.json)" if config.line else "")
        + f", desired state in {config.deployments}"
    )
    code = service.run()
    frames = sum(r.frames for r in service.cameras.values())
    _err(f"stopped: {frames} frames inspected, {len(service.swaps)} swap(s), "
         f"{len(service.refusals)} refusal(s); results in {config.out / 'results'}")  # fmt: skip
    return code


def build(config: Any):
    """The :class:`Service` for ``config``: signals first (sources report their state to them)."""
    from edge_export.service.deploy import DesiredStateWatcher
    from edge_export.service.live import LiveSource
    from edge_export.service.serve import Service
    from edge_export.signals import build_signals

    key = config.trusted_key or os.environ.get(ENV_TRUSTED) or None
    out_lock = claim_out(config.out)  # one service per out: folder (ValueError: in use)
    watcher = DesiredStateWatcher(
        config.deployments, config.box, trusted_key=key, cache_dir=config.cache,
        poll_s=config.poll_s,
    )  # fmt: skip
    line = None
    if config.line:  # the cameras (and endpoints the YAML leaves out) from lines/<box>.json
        import dataclasses

        from edge_export.service.line import LineWatcher, camera_configs

        line = LineWatcher(
            lambda: watcher.read("lines", f"{config.box}.json"), box=config.box,
            trusted=watcher.trusted,
        )  # fmt: skip
        doc = line.load()  # ValueError (exit 3): none published, or it does not verify
        config = dataclasses.replace(
            config,
            cameras=camera_configs(doc),
            signals=config.signals or dict(doc.signals),
        )
    signals = (
        build_signals(config.signals, box=config.box, cameras=[c.id for c in config.cameras])
        if config.signals
        else None
    )

    def on_state(camera: str, state: str, info: dict) -> None:
        if signals is not None:
            plant = {"online": "online", "stalled": "stalled"}.get(state, "offline")
            signals.camera_state(camera, plant, detail=state, **info)

    def make_source(c: Any) -> LiveSource:
        return LiveSource(c.id, c.source, transport=c.transport, fps=c.fps, every=c.every,
                          queue_size=config.queue, stall_s=config.stall_s, loop=c.loop,
                          on_state=on_state)  # fmt: skip

    sources = {c.id: make_source(c) for c in config.cameras}
    service = Service(
        config,
        sources=sources,
        watcher=watcher,
        signals=signals,
        publish=lambda path: _publish(config, path),
        publish_capture=lambda video, sidecar: _publish_capture(config, video, sidecar),
        publish_telemetry=(lambda path: _publish_telemetry(config, path))
        if config.telemetry_publish
        else None,
        line=line,
        make_source=make_source,
        log=_err,
    )
    service.out_lock = out_lock  # released when run() ends
    if line is not None and line.current is not None:
        service.requested.limits = line.current.capture  # the line's caps on capture requests
    return service


def claim_out(out: Path) -> Any:
    """Hold ``<out>/.serve.lock`` for this process (an open file with an exclusive flock): a
    second service on the same ``out:`` would close and publish the first one's open segments
    as its own leftovers. ValueError naming the holder when it is taken."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    fh = (out / ".serve.lock").open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "pid unknown"
        fh.close()
        raise ValueError(
            f"out: {out} is in use by another lensline-edge serve ({holder}); "
            "give each service its own out: folder"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    return fh


def _publish_capture(config: Any, video: Path, sidecar: Path) -> None:
    try:
        _err(f"capture -> {publish_capture(config.deployments, config.box, video, sidecar)}")
    except (OSError, ValueError) as e:  # the line keeps running; the capture stays local
        _err(f"capture {video} not published: {e}")


def _publish_telemetry(config: Any, path: Path) -> None:
    try:
        publish_telemetry(config.deployments, config.box, path)
    except (OSError, ValueError) as e:  # the line keeps running; the segment stays local
        _err(f"telemetry segment {path} not published: {e}")


def _publish(config: Any, path: Path) -> None:
    try:
        _err(f"shadow segment -> {publish_segment(config.deployments, config.box, path)}")
    except (OSError, ValueError) as e:  # the line keeps running; the segment stays local
        _err(f"shadow segment {path} not published: {e}")

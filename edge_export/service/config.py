"""The configuration of ``lensline-edge serve``: one YAML file per box, validated at start.

Every problem names its field (``cameras[1].source: missing``) and the service exits 3 before it
touches a camera. An example lives in ``edge_export/service/example.yaml``::

    box: b1                         # this box's id
    deployments: /srv/lensline      # local path or s3:// prefix: deployments/<box>.json
    cameras:
      - id: cam1
        source: rtsp://10.0.0.5/stream1   # or tcp://, udp://, http(s)://, /dev/videoN, a file
    out: /var/lib/lensline          # result and shadow segments (JSONL)
    mqtt:
      url: mqtt://127.0.0.1:1883
      topic_prefix: lensline/line1  # <prefix>/<camera>/alarm|result|state|heartbeat

Secrets never live here: the trusted key's *path* may, MQTT credentials come from the
environment only (see :mod:`edge_export.signals`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_export.service.requests import CaptureSettings, parse_settings

__all__ = ["CameraConfig", "ConfigError", "ServiceConfig", "load", "parse"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SCHEMES = ("rtsp://", "rtsps://", "tcp://", "udp://", "http://", "https://", "file://")


class ConfigError(ValueError):
    """The service configuration is unusable; ``problems`` lists every field at fault."""

    def __init__(self, path: str, problems: list[str]):
        self.path, self.problems = path, problems
        super().__init__(f"{path}: " + "; ".join(problems))


@dataclass(frozen=True)
class CameraConfig:
    """One camera: its id, its stream and how often it is inspected."""

    id: str
    source: str
    transport: str = "tcp"  # RTSP transport: tcp or udp
    fps: float | None = None  # inspection rate cap (None: every decoded frame)
    every: int = 1  # inspect every Nth decoded frame
    loop: bool = False  # a file source loops (demos)


@dataclass(frozen=True)
class ServiceConfig:
    """What one box runs (see the module docstring for the YAML)."""

    box: str
    deployments: str
    cameras: tuple[CameraConfig, ...]
    out: Path
    target: str = "onnx"
    trusted_key: str | None = None
    poll_s: float = 10.0
    heartbeat_s: float = 10.0
    segment_s: float = 60.0
    batch: int = 8
    queue: int = 8
    stall_s: float = 5.0
    shadow_disagreements_per_hour: int = 120
    signals: dict[str, Any] = field(default_factory=dict)  # mqtt:, opcua: as written (validated)
    telemetry_segment_s: float = 30.0  # telemetry: segment_s (heartbeat segments' length)
    telemetry_publish: bool = True  # telemetry: publish (closed segments to landing/telemetry)
    capture_requests: CaptureSettings = field(default_factory=CaptureSettings)  # data on demand
    line: bool = False  # cameras (and endpoints) from lines/<box>.json: edge_export.service.line

    @property
    def cache(self) -> Path:
        return self.out / "cache"


_TOP = {
    "box", "deployments", "cameras", "out", "target", "trusted_key", "poll_s", "heartbeat_s",
    "segment_s", "batch", "queue", "stall_s", "shadow_disagreements_per_hour", "mqtt", "opcua",
    "telemetry", "capture_requests", "line",
}  # fmt: skip
_CAMERA = {"id", "source", "transport", "fps", "every", "loop"}


def _source_ok(source: str) -> bool:
    return (
        source.startswith(_SCHEMES)
        or source.startswith("/dev/video")
        or not re.match(r"^[a-z][a-z0-9+.-]*://", source)
    )


def _number(d: dict, key: str, where: str, problems: list[str], *, minimum: float, cast=float):
    if key not in d:
        return None
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        problems.append(f"{where}{key}: must be a number >= {minimum:g}, got {value!r}")
        return None
    if cast is int and int(value) != value:
        problems.append(f"{where}{key}: must be a whole number, got {value!r}")
        return None
    return cast(value)


def parse(data: Any, *, path: str = "<config>") -> ServiceConfig:
    """A :class:`ServiceConfig` from parsed YAML; :class:`ConfigError` naming every bad field."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(
            path, ["the file must hold a mapping (box:, deployments:, cameras:, out:)"]
        )
    problems += [
        f"{k}: unknown key (known: {', '.join(sorted(_TOP))})" for k in data if k not in _TOP
    ]
    for key in ("box", "deployments", "out"):
        if not isinstance(data.get(key), str) or not data.get(key):
            problems.append(f"{key}: missing (a non-empty string)")
    if isinstance(data.get("box"), str) and data["box"] and not _ID.match(data["box"]):
        problems.append(f"box: {data['box']!r} is not an id (letters, digits, . _ -)")
    cameras: list[CameraConfig] = []
    raw = data.get("cameras")
    line = data.get("line", False)
    if not isinstance(line, bool):
        problems.append(f"line: must be true or false, got {line!r}")
    elif line and raw is not None:
        problems.append(
            "cameras: not with line: true (the line's published lines/<box>.json names the "
            "cameras; drop one of the two)"
        )
        raw = []
    elif line:
        raw = []
    elif not isinstance(raw, list) or not raw:
        problems.append("cameras: missing (a list of {id, source}, or line: true)")
        raw = []
    seen: set[str] = set()
    for i, cam in enumerate(raw if isinstance(raw, list) else []):
        where = f"cameras[{i}]."
        if not isinstance(cam, dict):
            problems.append(f"cameras[{i}]: must be a mapping with id and source")
            continue
        problems += [
            f"{where}{k}: unknown key (known: {', '.join(sorted(_CAMERA))})"
            for k in cam
            if k not in _CAMERA
        ]
        cid, source = cam.get("id"), cam.get("source")
        if not isinstance(cid, str) or not _ID.match(cid):
            problems.append(
                f"{where}id: missing or not an id (letters, digits, . _ -), got {cid!r}"
            )
        elif cid in seen:
            problems.append(f"{where}id: {cid!r} is used twice")
        else:
            seen.add(cid)
        if not isinstance(source, str) or not source:
            problems.append(
                f"{where}source: missing (rtsp://, tcp://, udp://, http(s)://, /dev/videoN or a file)"
            )
        elif not _source_ok(source):
            problems.append(f"{where}source: unsupported scheme in {source!r}")
        transport = cam.get("transport", "tcp")
        if transport not in ("tcp", "udp"):
            problems.append(f"{where}transport: must be tcp or udp, got {transport!r}")
        fps = _number(cam, "fps", where, problems, minimum=0.1)
        every = _number(cam, "every", where, problems, minimum=1, cast=int)
        loop = cam.get("loop", False)
        if not isinstance(loop, bool):
            problems.append(f"{where}loop: must be true or false, got {loop!r}")
        if isinstance(cid, str) and isinstance(source, str):
            cameras.append(CameraConfig(cid, source, transport, fps, every or 1, bool(loop)))
    numbers = {
        k: _number(data, k, "", problems, minimum=m, cast=c)
        for k, m, c in (
            ("poll_s", 0.1, float), ("heartbeat_s", 0.1, float), ("segment_s", 0.1, float),
            ("batch", 1, int), ("queue", 1, int), ("stall_s", 0.1, float),
            ("shadow_disagreements_per_hour", 0, int),
        )
    }  # fmt: skip
    target = data.get("target", "onnx")
    if target not in ("onnx", "int8", "openvino", "openvino_int8"):
        problems.append(f"target: must be onnx, int8, openvino or openvino_int8, got {target!r}")
    trusted = data.get("trusted_key")
    if trusted is not None and not isinstance(trusted, str):
        problems.append(f"trusted_key: must be a path to a public key, got {trusted!r}")
    signals = _signals(data, problems)
    telemetry = _telemetry(data.get("telemetry"), problems)
    capture = parse_settings(data.get("capture_requests"), problems)
    if problems:
        raise ConfigError(path, problems)
    return ServiceConfig(
        box=data["box"],
        deployments=data["deployments"],
        cameras=tuple(cameras),
        out=Path(data["out"]),
        target=target,
        trusted_key=trusted,
        signals=signals,
        **telemetry,
        capture_requests=capture,
        line=line is True,
        **{k: v for k, v in numbers.items() if v is not None},
    )


def _telemetry(section: Any, problems: list[str]) -> dict[str, Any]:
    """``telemetry: {segment_s: 30, publish: true}`` (both optional) as ServiceConfig fields."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        problems.append("telemetry: must be a mapping (segment_s:, publish:)")
        return {}
    problems += [f"telemetry.{k}: unknown key (known: publish, segment_s)"
                 for k in section if k not in ("publish", "segment_s")]  # fmt: skip
    out: dict[str, Any] = {}
    seg = _number(section, "segment_s", "telemetry.", problems, minimum=0.1)
    if seg is not None:
        out["telemetry_segment_s"] = seg
    if "publish" in section:
        if not isinstance(section["publish"], bool):
            problems.append(f"telemetry.publish: must be true or false, got {section['publish']!r}")
        else:
            out["telemetry_publish"] = section["publish"]
    return out


def _signals(data: dict, problems: list[str]) -> dict[str, Any]:
    """The plant-signal sections (``mqtt:``, ``opcua:``), checked by their own config classes
    (:data:`edge_export.signals.REGISTRY`: one definition of their keys)."""
    from edge_export.signals import REGISTRY, SignalsConfigError

    out = {}
    for kind, cls in REGISTRY.items():
        section = data.get(kind)
        if section in (None, False):
            continue
        try:
            cls.config_class.from_mapping(section)
        except SignalsConfigError as e:
            problems.append(str(e))
            continue
        out[kind] = section
    return out


def load(path: str | os.PathLike) -> ServiceConfig:
    """Read and validate a YAML config file (:class:`ConfigError` names file and fields)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(str(p), [f"cannot be read ({e.strerror or e})"]) from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(str(p), [f"is not valid YAML ({e})"]) from e
    return parse(data, path=str(p))

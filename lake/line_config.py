"""A line's configuration as data: one validated YAML file per line, versioned in the lake.

The file (``examples/line.yaml`` is a commented example; ``docs/line-config.md`` the reference)::

    line: line1
    cameras:        [{id, box, source, transport, crop, fps, loop}, ...]
    classes:        [{name, role: ok | defect | ignore, display}, ...]
    alarm_rules:    {enabled, min_confidence, raise_after, clear_after, ignore_quality, ...}
    capture:        {uncertain_margin, shadow_disagreements, random_one_in, alarm_clip_s, ...}
    drift:          {severity: WARN | ERROR}
    label_budget:   60
    mqtt:           {url, topic_prefix, ...}      # edge_export.signals.MqttConfig
    opcua:          {endpoint, namespace, ...}    # edge_export.signals.OpcUaConfig

One schema, :class:`LineConfig` (pydantic, ``extra="forbid"``), reusing the validators of the
code that consumes each field: a camera source is checked by the edge service's own rule
(:mod:`edge_export.service.config`), a crop by :meth:`edge_export.preprocess.Crop.parse`, the
roles and the state machine's parameters by :class:`edge_export.postprocess.AlarmRules` (a rule
the bundle would refuse is refused here), ``mqtt:``/``opcua:`` by the signals' config classes.
Secrets are never accepted (credentials come from the environment, as on the box). Every
problem names the file, the line and the field: ``line.yaml:12: cameras[1].source: ...``.

``line_configs`` (Delta, append-only, one row per applied version; the source of truth):
    line, version (1, 2, ... per line), sha256 (of the canonical configuration JSON), yaml (the
    file as applied), config (canonical JSON), applied_at, applied_by, source (the file's path)

:func:`apply` validates, then appends one row in one Delta commit (a rejected file writes
nothing; the same configuration again commits nothing and says so), then publishes, per box the
cameras name, ``lines/<box>.json`` under the storage root, signed like ``deployments/<box>.json``
(:func:`edge_export.service.deploy.sign_document`, format :data:`DOC_FORMAT`; read on the box by
:mod:`edge_export.service.line_doc`). A box the previous version named and this one does not gets
a document with no cameras. A crash between the commit and the publication leaves the table ahead
of the box documents; applying the same file again commits nothing and republishes them. Safe for
one writer at a time (two concurrent applies could both take version N+1).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from edge_export.service.line_doc import FORMAT as LINE_DOC_FORMAT

if TYPE_CHECKING:
    import polars as pl

    from lake.storage import LensStorage

__all__ = [
    "DOC_FORMAT",
    "SECTIONS",
    "AlarmRulesConfig",
    "Applied",
    "CameraConfig",
    "CaptureConfig",
    "ClassConfig",
    "DriftPolicy",
    "LineConfig",
    "LineConfigError",
    "Problem",
    "active",
    "active_all",
    "apply",
    "box_document",
    "history",
    "load",
    "markdown",
    "parse",
    "section",
    "section_sha",
    "Version",
]

TABLE = "line_configs"
DOC_FORMAT = LINE_DOC_FORMAT  # edge_export.service.line_doc reads it on the box
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Id = Annotated[str, Field(pattern=_ID, description="1-64 letters, digits, '_', '.' or '-'")]
#: Keys that would hold a secret; refused anywhere in the file (credentials come from the env).
_SECRET = re.compile(r"(pass(word|wd)?|secret|token|api_?key|private_?key|credentials?|username)$")
_SECRET_HINT = (
    "secrets are never accepted in a line config: set LENSLINE_MQTT_USERNAME / "
    "LENSLINE_MQTT_PASSWORD (and the key files) in the box's environment"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(_Model):
    """One camera on the line: where its frames come from and how they are inspected."""

    id: Id = Field(description="Camera id (the lake's camera_id and the box's camera).")
    box: Id = Field(description="The edge box that reads this camera.")
    source: str = Field(
        description="rtsp(s)://, tcp://, udp://, http(s)://, file://, /dev/videoN or a file path."
    )
    transport: Literal["tcp", "udp"] = Field(default="tcp", description="RTSP transport.")
    crop: str = Field(default="item:112", description="item[:side], fixed:x,y,w,h or full.")
    fps: float | None = Field(
        default=None, gt=0, description="Inspection rate cap (unset: every frame)."
    )
    loop: bool = Field(default=False, description="A file source loops (demos).")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        from edge_export.service.config import _source_ok  # the service's own rule

        if not value:
            raise ValueError("missing (rtsp://, tcp://, udp://, http(s)://, /dev/videoN or a file)")
        if not _source_ok(value):
            raise ValueError(
                f"unsupported scheme in {value!r} (rtsp(s)://, tcp://, udp://, http(s)://, "
                "file://, /dev/videoN or a file path)"
            )
        return value

    @field_validator("crop")
    @classmethod
    def _crop(cls, value: str) -> str:
        from edge_export.preprocess import Crop, PreprocessError

        try:
            Crop.parse(value)
        except PreprocessError as e:
            raise ValueError(str(e)) from None
        return value


class ClassConfig(_Model):
    """One class of the model: its role in the alarm and the name operators see."""

    name: str = Field(min_length=1, description="The label as the model and the lake spell it.")
    role: Literal["ok", "defect", "ignore"] = Field(
        description="ok clears an alarm, defect raises it, ignore carries no vote."
    )
    display: str | None = Field(
        default=None, description="Name shown to operators (default: name)."
    )


class AlarmRulesConfig(_Model):
    """The alarm state machine's parameters (:class:`edge_export.postprocess.AlarmRules`)."""

    enabled: bool = True
    min_confidence: float = Field(default=0.6, ge=0, le=1)
    raise_after: int = Field(default=3, ge=1)
    clear_after: int = Field(default=5, ge=1)
    ignore_quality: bool = True
    min_brightness: float | None = Field(default=None, ge=0)
    min_sharpness: float | None = Field(default=None, ge=0)


class CaptureConfig(_Model):
    """What a box may send back when asked (the caps bound every capture request)."""

    uncertain_margin: float | None = Field(default=None, gt=0, le=1)
    shadow_disagreements: bool = False
    random_one_in: int | None = Field(default=None, ge=1)
    alarm_clip_s: float | None = Field(default=None, gt=0, le=60)
    max_per_hour: int = Field(default=120, ge=0)
    max_mb_per_hour: float = Field(default=200.0, ge=0)
    format: Literal["jpeg", "video"] = "jpeg"


class DriftPolicy(_Model):
    severity: Literal["WARN", "ERROR"] = "WARN"


class LineConfig(_Model):
    """One line's configuration (see the module docstring)."""

    line: Id
    cameras: list[CameraConfig] = Field(min_length=1)
    classes: list[ClassConfig] = Field(min_length=1)
    alarm_rules: AlarmRulesConfig = Field(default_factory=AlarmRulesConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    label_budget: int = Field(default=60, ge=0)
    mqtt: dict[str, Any] | None = None
    opcua: dict[str, Any] | None = None

    @field_validator("mqtt", "opcua")
    @classmethod
    def _signals(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        from edge_export.signals import REGISTRY, SignalsConfigError

        if value is not None:
            try:
                REGISTRY[str(info.field_name)].config_class.from_mapping(value)
            except (SignalsConfigError, TypeError) as e:
                raise ValueError(str(e)) from None
        return value

    # -- what the consumers read -----------------------------------------------------------
    def boxes(self) -> list[str]:
        return sorted({c.box for c in self.cameras})

    def crops(self) -> dict[str, str]:
        """``camera_id -> crop`` (the :class:`lake.resources.PreprocessResource` form)."""
        return {c.id: c.crop for c in self.cameras}

    def roles(self) -> dict[str, list[str]]:
        """``ok_classes``, ``defect_classes``, ``ignore_classes`` as the bundle's rules take them."""
        return {
            f"{role}_classes": [c.name for c in self.classes if c.role == role]
            for role in ("ok", "defect", "ignore")
        }

    def alarm_rules_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`edge_export.postprocess.AlarmRules` (roles included)."""
        rules = {k: v for k, v in self.alarm_rules.model_dump().items() if v is not None}
        roles = self.roles()
        return {
            **rules,
            "ok_classes": tuple(roles["ok_classes"]),
            "defect_classes": tuple(roles["defect_classes"]),
            "ignore_classes": tuple(roles["ignore_classes"]),
        }

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()


#: The sections the graph reads, and what each carries (``section_sha``: its data version).
SECTIONS: dict[str, tuple[str, ...]] = {
    "crop": ("cameras.crop",),
    "classes": ("classes", "alarm_rules"),
    "drift_policy": ("drift", "label_budget"),
    "capture": ("capture",),
}


def section(config: LineConfig, name: str) -> dict[str, Any]:
    """The part of ``config`` that section ``name`` of :data:`SECTIONS` carries."""
    if name == "crop":
        return {"crops": config.crops()}
    if name == "classes":
        return {
            "classes": [c.model_dump() for c in config.classes],
            "alarm_rules": config.alarm_rules.model_dump(),
        }
    if name == "drift_policy":
        return {"severity": config.drift.severity, "label_budget": config.label_budget}
    if name == "capture":
        return config.capture.model_dump()
    raise KeyError(f"unknown section {name!r} (known: {', '.join(SECTIONS)})")


def section_sha(configs: Iterable[LineConfig], name: str) -> str:
    """A digest of section ``name`` over ``configs`` (every line; ``none`` when there is none)."""
    parts = {c.line: section(c, name) for c in configs}
    if not parts:
        return "none"
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ---- validation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One problem of a file: its line (None: the file as a whole), the field and what is wrong."""

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class LineConfigError(ValueError):
    """A line configuration that is refused; ``problems`` lists every one."""

    def __init__(self, path: str, problems: Sequence[Problem]):
        self.path, self.problems = path, list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _field(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _lines(text: str) -> tuple[dict[tuple, int], list[tuple[tuple, int]]]:
    """``field path -> 1-based line`` of every node of the YAML document, and the keys that
    appear twice in one mapping (YAML would keep the last one silently)."""
    import yaml

    lines: dict[tuple, int] = {}
    duplicates: list[tuple[tuple, int]] = []

    def walk(node: Any, path: tuple) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = key.value
                if name in seen:
                    duplicates.append(((*path, name), key.start_mark.line + 1))
                seen.add(name)
                lines[(*path, name)] = key.start_mark.line + 1
                walk(value, (*path, name))
                lines[(*path, name)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines, duplicates


def _line_of(lines: Mapping[tuple, int], loc: Sequence[str | int]) -> int | None:
    """The line of ``loc``, or of its nearest ancestor present in the file (a missing field)."""
    loc = tuple(loc)
    while loc not in lines and loc:
        loc = loc[:-1]
    return lines.get(loc)


def _secrets(data: Any, loc: tuple = ()) -> list[tuple[tuple, str]]:
    out: list[tuple[tuple, str]] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and _SECRET.search(key.lower()):
                out.append(((*loc, key), _SECRET_HINT))
            else:
                out += _secrets(value, (*loc, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _secrets(value, (*loc, i))
    return out


def _cross_checks(data: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    """What the field types cannot see: duplicate ids and names, roles the bundle would refuse."""
    from edge_export.postprocess import AlarmRules, RulesError

    out: list[tuple[tuple, str]] = []
    cameras: list = data["cameras"] if isinstance(data.get("cameras"), list) else []
    seen: dict[str, int] = {}
    for i, cam in enumerate(cameras):
        cid = cam.get("id") if isinstance(cam, Mapping) else None
        if isinstance(cid, str) and cid in seen:
            out.append((("cameras", i, "id"), f"{cid!r} is used twice (cameras[{seen[cid]}])"))
        elif isinstance(cid, str):
            seen[cid] = i
    classes: list = data["classes"] if isinstance(data.get("classes"), list) else []
    names: dict[str, int] = {}
    roles: dict[str, list[str]] = {"ok": [], "defect": [], "ignore": []}
    for i, cls in enumerate(classes):
        name = cls.get("name") if isinstance(cls, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in names:
            out.append(
                (("classes", i, "name"), f"{name!r} is listed twice (classes[{names[name]}])")
            )
            continue
        names[name] = i
        if cls.get("role") in roles:
            roles[cls["role"]].append(name)
    rules: Mapping = data["alarm_rules"] if isinstance(data.get("alarm_rules"), Mapping) else {}
    if names and len(names) == len(classes) and sum(map(len, roles.values())) == len(classes):
        try:
            AlarmRules(
                ok_classes=tuple(roles["ok"]),
                defect_classes=tuple(roles["defect"]),
                ignore_classes=tuple(roles["ignore"]),
                enabled=rules.get("enabled", True) is not False,
            ).validate(list(names))
        except RulesError as e:
            out.append((("classes",), f"the bundle would refuse these roles: {e}"))
    return out


def parse(text: str, *, path: str = "<line config>") -> LineConfig:
    """The :class:`LineConfig` of YAML ``text``; :class:`LineConfigError` listing every problem,
    each with its line and field."""
    import yaml

    try:
        data = yaml.safe_load(text)
        lines, duplicates = _lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        detail = " ".join(str(getattr(e, "problem", None) or e).split())
        raise LineConfigError(
            path, [Problem(path, mark.line + 1 if mark else None, "", f"not valid YAML: {detail}")]
        ) from None
    if not isinstance(data, dict):
        raise LineConfigError(
            path, [Problem(path, 1, "", "the file must hold a mapping (line:, cameras:, classes:)")]
        )
    found: list[tuple[tuple, str]] = [
        (loc, "appears twice in the same mapping") for loc, _ in duplicates
    ]
    secrets = _secrets(data)
    found += secrets
    secret_locs = {loc for loc, _ in secrets}
    config: LineConfig | None = None
    try:
        config = LineConfig.model_validate(_without(data, secret_locs))
    except ValidationError as e:
        for err in e.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            elif err["type"] == "missing":
                message = "missing (required)"
            elif not err["type"].startswith("value_error") and _scalar(err.get("input")):
                message = f"{message}, got {err['input']!r}"
            elif loc and loc[-1] in ("mqtt", "opcua") and re.match(r"^\w+\.\w+: ", message):
                sub, _, message = message.partition(": ")  # "mqtt.qos: must be ..."
                loc = (*loc, sub.split(".", 1)[1])
            found.append((loc, message))
    found += _cross_checks(data)
    if found:
        problems = [Problem(path, _line_of(lines, loc), _field(loc), msg) for loc, msg in found]
        problems.sort(key=lambda p: (p.line or 0, p.field))
        raise LineConfigError(path, problems)
    assert config is not None
    return config


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _without(data: Any, locs: set[tuple], loc: tuple = ()) -> Any:
    """``data`` without the keys at ``locs`` (reported once, as secrets, not again as unknown)."""
    if isinstance(data, Mapping):
        return {k: _without(v, locs, (*loc, k)) for k, v in data.items() if (*loc, k) not in locs}
    if isinstance(data, list):
        return [_without(v, locs, (*loc, i)) for i, v in enumerate(data)]
    return data


def load(path: str | Path) -> tuple[LineConfig, str]:
    """Read and validate the file at ``path``: its :class:`LineConfig` and its text."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LineConfigError(str(p), [Problem(str(p), None, "", f"cannot be read ({e})")]) from e
    return parse(text, path=str(p)), text


# ---- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Applied:
    """What :func:`apply` did: the version in force, whether it is new, the box documents."""

    line: str
    version: int
    sha256: str
    changed: bool
    published: list[str]
    signed: bool


@dataclass(frozen=True)
class Version:
    """One ``line_configs`` row, parsed."""

    line: str
    version: int
    sha256: str
    config: LineConfig
    yaml: str
    applied_at: datetime
    applied_by: str
    source: str


def _rows(storage: LensStorage) -> pl.DataFrame | None:
    return storage.read_table(TABLE)


def _version(row: Mapping[str, Any]) -> Version:
    return Version(
        line=row["line"],
        version=int(row["version"]),
        sha256=row["sha256"],
        config=LineConfig.model_validate_json(row["config"]),
        yaml=row["yaml"],
        applied_at=row["applied_at"],
        applied_by=row["applied_by"],
        source=row["source"],
    )


def history(storage: LensStorage, line: str | None = None) -> list[Version]:
    """Every applied version (of ``line``), newest first."""
    df = _rows(storage)
    if df is None:
        return []
    rows = [_version(r) for r in df.iter_rows(named=True) if line is None or r["line"] == line]
    return sorted(rows, key=lambda v: (v.line, -v.version))


def active(storage: LensStorage, line: str) -> Version | None:
    """The version of ``line`` in force (the newest applied), or None."""
    versions = history(storage, line)
    return versions[0] if versions else None


def active_all(storage: LensStorage) -> list[Version]:
    """The version in force of every line, by line name."""
    out: dict[str, Version] = {}
    for v in history(storage):
        out.setdefault(v.line, v)
    return [out[k] for k in sorted(out)]


def apply(
    storage: LensStorage,
    path: str | Path,
    *,
    by: str,
    signing_key: bytes | None = None,
) -> Applied:
    """Validate the file at ``path`` and make it the line's version in force (see the module
    docstring); :class:`LineConfigError` (nothing written) when it is refused."""
    from lake.tables import table_schema

    config, text = load(path)
    sha = config.sha256()
    before = active(storage, config.line)
    if before is not None and before.sha256 == sha:
        published = _publish(storage, config, before.version, before.config, signing_key)
        return Applied(config.line, before.version, sha, False, published, signing_key is not None)
    version = (before.version if before else 0) + 1
    row = {
        "line": config.line,
        "version": version,
        "sha256": sha,
        "yaml": text,
        "config": config.canonical(),
        "applied_at": datetime.now(UTC).replace(microsecond=0),
        "applied_by": by,
        "source": str(Path(path).resolve()),
    }
    storage.write_table(table_schema(TABLE).conform([row]), TABLE, mode="append")
    prior = before.config if before else None
    published = _publish(storage, config, version, prior, signing_key)
    return Applied(config.line, version, sha, True, published, signing_key is not None)


# ---- the box documents -------------------------------------------------------------------------
def box_document(config: LineConfig, version: int, box: str) -> dict[str, Any]:
    """The payload of ``lines/<box>.json``: what ``box`` runs for this line."""
    return {
        "line": config.line,
        "version": version,
        "sha256": config.sha256(),
        "box": box,
        "cameras": [
            {
                "id": c.id,
                "source": c.source,
                "transport": c.transport,
                "crop": c.crop,
                "fps": c.fps,
                "loop": c.loop,
            }
            for c in config.cameras
            if c.box == box
        ],  # fmt: skip
        "classes": [
            {"name": c.name, "role": c.role, "display": c.display or c.name} for c in config.classes
        ],
        "capture": config.capture.model_dump(),
        "signals": {k: v for k, v in (("mqtt", config.mqtt), ("opcua", config.opcua)) if v},
    }


def _publish(
    storage: LensStorage,
    config: LineConfig,
    version: int,
    prior: LineConfig | None,
    signing_key: bytes | None,
) -> list[str]:
    """Write ``lines/<box>.json`` for every box of ``config`` (and an empty one for each box only
    ``prior`` named); unchanged bytes are not rewritten. The URIs written."""
    from edge_export.service.deploy import sign_document
    from lake.deployments import _read_or_none

    boxes = set(config.boxes()) | set(prior.boxes() if prior else ())
    written = []
    for box in sorted(boxes):
        data = sign_document(box_document(config, version, box), signing_key, format=DOC_FORMAT)
        uri = storage.uri("lines", f"{box}.json")
        if _read_or_none(storage, uri) != data:
            storage.write_bytes(uri, data)
            written.append(uri)
    return written


def markdown(config: LineConfig) -> str:
    """Cameras, classes and alarm rules of ``config`` as Markdown tables (the UI and the CLI)."""

    def table(header: list[str], rows: list[list[Any]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in rows]
        return "\n".join(lines)

    rules = config.alarm_rules
    return "\n\n".join(
        [
            table(
                ["camera", "box", "source", "crop", "fps"],
                [[c.id, c.box, c.source, c.crop, c.fps or "every frame"] for c in config.cameras],
            ),
            table(
                ["class", "role", "display"],
                [[c.name, c.role, c.display or c.name] for c in config.classes],
            ),
            table(
                ["alarms", "min_confidence", "raise_after", "clear_after", "ignore_quality"],
                [
                    [
                        "on" if rules.enabled else "off",
                        rules.min_confidence,
                        rules.raise_after,
                        rules.clear_after,
                        rules.ignore_quality,
                    ]
                ],
            ),  # fmt: skip
            f"drift severity **{config.drift.severity}**, label budget {config.label_budget}, "
            f"signals: {', '.join(k for k in ('mqtt', 'opcua') if getattr(config, k)) or 'none'}",
        ]
    )

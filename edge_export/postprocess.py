"""Post-processing rules: from per-frame predictions to alarms, as a small finite-state machine.

The rules are declarative, versioned JSON shipped in every edge bundle (``postprocess.json``),
so what raises an alarm on the line is under configuration management like the model itself:

.. code-block:: json

    {"format": "lensline.postprocess/2", "version": "1",
     "defect_classes": ["scratch", "dent"], "ok_classes": ["good"], "ignore_classes": [],
     "enabled": true, "disabled_reason": "", "min_confidence": 0.6,
     "raise_after": 3, "clear_after": 5,
     "ignore_quality": true, "min_brightness": 20.0, "min_sharpness": 5.0}

Per stream (one video, one camera) :class:`AlarmStateMachine` reads one frame at a time:

- a frame flagged dark or blurry (``quality_ok=False``) is ignored when ``ignore_quality``;
- a frame whose top-1 confidence is below ``min_confidence`` is ignored, whatever its label
  (an uncertain frame is evidence neither way: it neither extends nor breaks a run);
- a frame whose label has the *ignore* role carries no vote either;
- otherwise it is a *defect* vote (label in ``defect_classes``) or a *good* vote (``ok_classes``).

Which class has which role is configuration (``defect_classes``, ``ok_classes``,
``ignore_classes``); unset, the class names of :data:`KNOWN_OK_CLASSES` are ok and the rest
defects. A class map with no known ok class resolves to rules with alarms off
(``enabled: false`` and ``disabled_reason``) rather than to an error.

The alarm is raised on the ``raise_after``-th consecutive defect vote and cleared on the
``clear_after``-th consecutive good vote; a vote of the other kind resets the count. Ignored
frames do not reset anything. States: ``idle``, ``arming`` (defect votes counted, no alarm),
``alarm``, ``clearing`` (alarm on, good votes counted).

numpy + OpenCV only (no torch, no Dagster): the standalone edge runner imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from edge_export.quality import EDGE_BLURRY_SHARPNESS, EDGE_DARK_BRIGHTNESS, frame_stats

__all__ = [
    "FORMAT",
    "AlarmRules",
    "AlarmStateMachine",
    "Event",
    "KNOWN_OK_CLASSES",
    "RulesError",
    "frame_quality",
    "known_ok",
    "quality_of",
]

FORMAT = "lensline.postprocess/2"
READS = ("lensline.postprocess/1", FORMAT)  # /1: bundles before class roles (no ok/ignore)
#: Class names taken as "ok" (no defect) when no role is configured, compared case-insensitively
#: with spaces, dashes and underscores alike. A class map with none of them ships with alarms off.
KNOWN_OK_CLASSES = ("good", "ok", "pass", "passed", "normal", "no defect", "defect free")
State = Literal["idle", "arming", "alarm", "clearing"]
Vote = Literal["defect", "good", "ignored_quality", "ignored_confidence", "ignored_class", "off"]


class RulesError(ValueError):
    """Alarm rules that are malformed or do not fit the model's class map."""


def _norm(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def known_ok(classes: Sequence[str]) -> tuple[str, ...]:
    """The classes of ``classes`` whose name is one of :data:`KNOWN_OK_CLASSES`, in order."""
    known = {_norm(c) for c in KNOWN_OK_CLASSES}
    return tuple(c for c in classes if _norm(c) in known)


def _names(value: Any, field_name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise RulesError(f"{field_name} must be a list of class names, not a string")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class AlarmRules:
    """Declarative alarm rules (see the module docstring for the semantics).

    Every class of the model has one role: *ok* (clears an alarm), *defect* (raises it) or
    *ignore* (carries no vote, e.g. an empty belt or a hand). Roles are configuration: set
    ``defect_classes`` or ``ok_classes`` (the other role is the rest), or leave both unset to
    take :data:`KNOWN_OK_CLASSES` as ok and the rest as defects. When no role can be found
    (no known ok class, or nothing left to alarm on), :meth:`resolved` turns alarms off and
    says why in ``disabled_reason`` instead of failing: the bundle still ships.

    Parameters
    ----------
    version
        Revision of these rules, bumped by whoever edits them (recorded with every alarm).
    defect_classes
        Labels that raise alarms; ``None``: every class that is neither ok nor ignored.
    ok_classes
        Labels that clear alarms; ``None``: the known ok names (or, when ``defect_classes`` is
        set, every class that is neither a defect nor ignored).
    ignore_classes
        Labels that carry no vote either way.
    enabled
        False: no frame raises an alarm (``disabled_reason`` says why).
    disabled_reason
        Why alarms are off (empty when enabled).
    min_confidence
        Frames whose top-1 probability is below this carry no vote, in [0, 1].
    raise_after
        Consecutive defect votes that raise the alarm (>= 1).
    clear_after
        Consecutive good votes that clear it (>= 1).
    ignore_quality
        Skip frames that :func:`frame_quality` flags as dark or blurry.
    min_brightness
        A frame whose mean grey level (0-255) is below this is ``dark``
        (default :data:`edge_export.quality.EDGE_DARK_BRIGHTNESS`; why it differs from the
        lake's limit: :mod:`edge_export.quality`).
    min_sharpness
        A frame whose variance of the Laplacian is below this is ``blurry`` (0 disables;
        default :data:`edge_export.quality.EDGE_BLURRY_SHARPNESS`).
    """

    version: str = "1"
    defect_classes: tuple[str, ...] | None = None
    ok_classes: tuple[str, ...] | None = None
    ignore_classes: tuple[str, ...] = ()
    enabled: bool = True
    disabled_reason: str = ""
    min_confidence: float = 0.5
    raise_after: int = 3
    clear_after: int = 3
    ignore_quality: bool = True
    min_brightness: float = EDGE_DARK_BRIGHTNESS
    min_sharpness: float = EDGE_BLURRY_SHARPNESS

    def __post_init__(self) -> None:
        for name in ("defect_classes", "ok_classes"):
            object.__setattr__(self, name, _names(getattr(self, name), name))
        object.__setattr__(
            self, "ignore_classes", _names(self.ignore_classes, "ignore_classes") or ()
        )
        if not str(self.version):
            raise RulesError("rules version must be a non-empty string")
        object.__setattr__(self, "version", str(self.version))
        for name in ("min_confidence", "min_brightness", "min_sharpness"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RulesError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("ignore_quality", "enabled"):
            if not isinstance(getattr(self, name), bool):
                raise RulesError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.min_confidence) <= 1.0:
            raise RulesError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        for name in ("raise_after", "clear_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RulesError(f"{name} must be an integer >= 1, got {value!r}")
        if float(self.min_brightness) < 0 or float(self.min_sharpness) < 0:
            raise RulesError("min_brightness and min_sharpness must be >= 0")
        roles = [
            (n, set(getattr(self, n) or ()))
            for n in ("defect_classes", "ok_classes", "ignore_classes")
        ]
        for i, (a, sa) in enumerate(roles):
            for b, sb in roles[i + 1 :]:
                if sa & sb:
                    raise RulesError(f"classes {sorted(sa & sb)} are in both {a} and {b}")

    # -- class map -------------------------------------------------------------------------
    def resolved(self, classes: Sequence[str]) -> AlarmRules:
        """These rules with every role spelled out for ``classes``, after :meth:`validate`;
        alarms off, with the reason, when no role is configured and none can be inferred."""
        self.validate(classes)
        known = list(classes)
        if not self.enabled:
            return replace(self, defect_classes=(), ok_classes=())
        if self.defect_classes is not None or self.ok_classes is not None:
            return self._spelled_out(known)
        ok = tuple(c for c in known_ok(known) if c not in self.ignore_classes)
        defect = tuple(c for c in known if c not in set(ok) | set(self.ignore_classes))
        how = "set ok_classes (or defect_classes) in the edge_bundle config to turn alarms on"
        if not ok:
            return self.disabled(
                f"no class in the class map {known} is a known ok class "
                f"({', '.join(KNOWN_OK_CLASSES)}): {how}"
            )
        if not defect:
            return self.disabled(f"every class in {known} is ok or ignored: {how}")
        return replace(self, defect_classes=defect, ok_classes=ok)

    def disabled(self, reason: str) -> AlarmRules:
        """These rules with alarms off for ``reason``."""
        return replace(
            self, enabled=False, disabled_reason=reason, defect_classes=(), ok_classes=()
        )

    def validate(self, classes: Sequence[str]) -> None:
        """Raise :class:`RulesError` unless these rules fit the class map ``classes``: every
        named class is in it and, when roles are configured, some class can raise an alarm and
        some can clear it."""
        known = list(classes)
        if not known or len(set(known)) != len(known):
            raise RulesError(f"class map must be non-empty and without duplicates, got {known}")
        for name in ("defect_classes", "ok_classes", "ignore_classes"):
            unknown = [c for c in getattr(self, name) or () if c not in known]
            if unknown:
                raise RulesError(f"{name} {unknown} are not in the model's class map {known}")
        if self.enabled and (self.defect_classes is not None or self.ok_classes is not None):
            self._spelled_out(known)

    def _spelled_out(self, known: list[str]) -> AlarmRules:
        """Configured roles completed (the unnamed role is the rest), refused when useless."""
        ignore = set(self.ignore_classes)
        defect, ok = self.defect_classes, self.ok_classes
        if defect is None:
            defect = tuple(c for c in known if c not in set(ok or ()) | ignore)
        if ok is None:
            ok = tuple(c for c in known if c not in set(defect) | ignore)
        if not defect:
            raise RulesError(
                f"defect_classes is empty for {known}: no frame could ever raise an alarm "
                "(name defect classes, or set enabled: false)"
            )
        if not ok:
            raise RulesError(
                f"every class of {known} is a defect or ignored: no frame could clear an alarm "
                "(name ok_classes)"
            )
        return replace(self, defect_classes=tuple(defect), ok_classes=tuple(ok))

    def role(self, label: str) -> str:
        """``"defect"``, ``"ok"`` or ``"ignore"`` for a label under these (resolved) rules."""
        if label in self.ignore_classes:
            return "ignore"
        if self.defect_classes is not None and self.ok_classes is not None:
            in_defect, in_ok = label in self.defect_classes, label in self.ok_classes
            return "defect" if in_defect else "ok" if in_ok else "ignore"
        if self.defect_classes is not None:
            return "defect" if label in self.defect_classes else "ok"
        if self.ok_classes is not None:
            return "ok" if label in self.ok_classes else "defect"
        return "ok" if known_ok([label]) else "defect"

    def is_defect(self, label: str) -> bool:
        return self.enabled and self.role(label) == "defect"

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("defect_classes", "ok_classes"):
            d[name] = list(d[name]) if d[name] is not None else None
        d["ignore_classes"] = list(self.ignore_classes)
        return {"format": FORMAT, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlarmRules:
        if d.get("format") not in READS:
            raise RulesError(
                f"unknown post-processing format {d.get('format')!r} (this code reads {READS})"
            )
        fields_ = set(cls.__dataclass_fields__)
        extra = sorted(set(d) - fields_ - {"format"})
        if extra:
            raise RulesError(f"unknown alarm rule fields {extra} (known: {sorted(fields_)})")
        try:
            return cls(**{k: v for k, v in d.items() if k != "format"})
        except TypeError as e:
            raise RulesError(f"unusable alarm rules ({e})") from e

    @classmethod
    def from_json(cls, text: str) -> AlarmRules:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise RulesError(f"alarm rules are not JSON ({e})") from e
        if not isinstance(d, dict):
            raise RulesError("alarm rules must be a JSON object")
        return cls.from_dict(d)


def frame_quality(bgr: np.ndarray, rules: AlarmRules) -> str:
    """``"ok"``, ``"dark"`` or ``"blurry"`` for one raw frame under ``rules``' thresholds.

    Parameters
    ----------
    bgr
        The decoded frame before any crop: shape (H, W, 3), uint8, BGR (or (H, W) grey).
    """
    return quality_of(frame_stats(bgr), rules)


def quality_of(stats: dict[str, float], rules: AlarmRules) -> str:
    """:func:`frame_quality` from a frame's :func:`edge_export.quality.frame_stats` already
    measured (the edge service keeps them for its telemetry)."""
    if stats["brightness"] < rules.min_brightness:
        return "dark"
    if rules.min_sharpness > 0 and stats["sharpness"] < rules.min_sharpness:
        return "blurry"
    return "ok"


@dataclass(frozen=True)
class Event:
    """What one frame did to a stream's alarm.

    ``alarm``: the alarm is on after this frame; ``raised`` / ``cleared``: it switched on / off
    on this frame; ``state``: the machine's state after it; ``vote``: how the frame counted.
    """

    alarm: bool
    raised: bool
    cleared: bool
    state: State
    vote: Vote


@dataclass
class AlarmStateMachine:
    """The alarm of one stream (one video or camera) under :class:`AlarmRules`."""

    rules: AlarmRules
    state: State = "idle"
    defect_run: int = 0
    good_run: int = 0
    raised_count: int = field(default=0)

    @property
    def alarm(self) -> bool:
        return self.state in ("alarm", "clearing")

    def step(self, label: str, confidence: float, quality_ok: bool = True) -> Event:
        """Feed one frame's top-1 ``label`` and ``confidence``; return what it did."""
        rules = self.rules
        vote: Vote
        if not rules.enabled:
            vote = "off"
        elif rules.ignore_quality and not quality_ok:
            vote = "ignored_quality"
        elif confidence < rules.min_confidence:
            vote = "ignored_confidence"
        elif (role := rules.role(label)) == "ignore":
            vote = "ignored_class"
        else:
            vote = "defect" if role == "defect" else "good"
        raised = cleared = False
        if vote == "defect":
            self.good_run = 0
            if self.alarm:
                self.state = "alarm"
            else:
                self.defect_run += 1
                if self.defect_run >= rules.raise_after:
                    self.state, self.defect_run, raised = "alarm", 0, True
                    self.raised_count += 1
                else:
                    self.state = "arming"
        elif vote == "good":
            self.defect_run = 0
            if self.alarm:
                self.good_run += 1
                if self.good_run >= rules.clear_after:
                    self.state, self.good_run, cleared = "idle", 0, True
                else:
                    self.state = "clearing"
            else:
                self.state = "idle"
        return Event(self.alarm, raised, cleared, self.state, vote)

"""Post-processing rules: from per-frame predictions to alarms, as a small finite-state machine.

The rules are declarative, versioned JSON shipped in every edge bundle (``postprocess.json``),
so what raises an alarm on the line is under configuration management like the model itself:

.. code-block:: json

    {"format": "lensline.postprocess/1", "version": "1",
     "defect_classes": ["scratch", "dent"], "min_confidence": 0.6,
     "raise_after": 3, "clear_after": 5,
     "ignore_quality": true, "min_brightness": 20.0, "min_sharpness": 5.0}

Per stream (one video, one camera) :class:`AlarmStateMachine` reads one frame at a time:

- a frame flagged dark or blurry (``quality_ok=False``) is ignored when ``ignore_quality``;
- a frame whose top-1 confidence is below ``min_confidence`` is ignored, whatever its label
  (an uncertain frame is evidence neither way: it neither extends nor breaks a run);
- otherwise it is a *defect* vote (label in ``defect_classes``) or a *good* vote.

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

__all__ = [
    "FORMAT",
    "AlarmRules",
    "AlarmStateMachine",
    "Event",
    "RulesError",
    "frame_quality",
]

FORMAT = "lensline.postprocess/1"
GOOD_CLASS = "good"
State = Literal["idle", "arming", "alarm", "clearing"]
Vote = Literal["defect", "good", "ignored_quality", "ignored_confidence"]


class RulesError(ValueError):
    """Alarm rules that are malformed or do not fit the model's class map."""


@dataclass(frozen=True)
class AlarmRules:
    """Declarative alarm rules (see the module docstring for the semantics).

    Parameters
    ----------
    version
        Revision of these rules, bumped by whoever edits them (recorded with every alarm).
    defect_classes
        Labels that count as defects; ``None`` means every class except ``good`` (resolved
        against a class map by :meth:`resolved`).
    min_confidence
        Frames whose top-1 probability is below this carry no vote, in [0, 1].
    raise_after
        Consecutive defect votes that raise the alarm (>= 1).
    clear_after
        Consecutive good votes that clear it (>= 1).
    ignore_quality
        Skip frames that :func:`frame_quality` flags as dark or blurry.
    min_brightness
        A frame whose mean grey level (0-255) is below this is ``dark``.
    min_sharpness
        A frame whose variance of the Laplacian is below this is ``blurry`` (0 disables).
    """

    version: str = "1"
    defect_classes: tuple[str, ...] | None = None
    min_confidence: float = 0.5
    raise_after: int = 3
    clear_after: int = 3
    ignore_quality: bool = True
    min_brightness: float = 20.0
    min_sharpness: float = 5.0

    def __post_init__(self) -> None:
        if self.defect_classes is not None:
            if isinstance(self.defect_classes, str):
                raise RulesError("defect_classes must be a list of class names, not a string")
            object.__setattr__(self, "defect_classes", tuple(self.defect_classes))
        if not str(self.version):
            raise RulesError("rules version must be a non-empty string")
        object.__setattr__(self, "version", str(self.version))
        for name in ("min_confidence", "min_brightness", "min_sharpness"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RulesError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.ignore_quality, bool):
            raise RulesError(f"ignore_quality must be true or false, got {self.ignore_quality!r}")
        if not 0.0 <= float(self.min_confidence) <= 1.0:
            raise RulesError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        for name in ("raise_after", "clear_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RulesError(f"{name} must be an integer >= 1, got {value!r}")
        if float(self.min_brightness) < 0 or float(self.min_sharpness) < 0:
            raise RulesError("min_brightness and min_sharpness must be >= 0")

    # -- class map -------------------------------------------------------------------------
    def resolved(self, classes: Sequence[str]) -> AlarmRules:
        """These rules with ``defect_classes`` spelled out for ``classes``, after :meth:`validate`."""
        self.validate(classes)
        if self.defect_classes is not None:
            return self
        return replace(self, defect_classes=tuple(c for c in classes if c != GOOD_CLASS))

    def validate(self, classes: Sequence[str]) -> None:
        """Raise :class:`RulesError` unless these rules fit the class map ``classes``."""
        known = list(classes)
        if not known or len(set(known)) != len(known):
            raise RulesError(f"class map must be non-empty and without duplicates, got {known}")
        if self.defect_classes is None:
            if not [c for c in known if c != GOOD_CLASS]:
                raise RulesError(f"class map {known} has no class other than 'good' to alarm on")
            return
        unknown = [c for c in self.defect_classes if c not in known]
        if unknown:
            raise RulesError(f"defect classes {unknown} are not in the model's class map {known}")
        if not self.defect_classes:
            raise RulesError("defect_classes is empty: no frame could ever raise an alarm")
        if len(set(self.defect_classes)) == len(known):
            raise RulesError(f"every class {known} is a defect: no frame could clear an alarm")

    def is_defect(self, label: str) -> bool:
        if self.defect_classes is None:
            return label != GOOD_CLASS
        return label in self.defect_classes

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["defect_classes"] = list(self.defect_classes) if self.defect_classes is not None else None
        return {"format": FORMAT, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlarmRules:
        if d.get("format") != FORMAT:
            raise RulesError(
                f"unknown post-processing format {d.get('format')!r} (this code reads {FORMAT})"
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
    from data_quality.frame_quality import frame_stats

    stats = frame_stats(bgr)
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
        if rules.ignore_quality and not quality_ok:
            vote = "ignored_quality"
        elif confidence < rules.min_confidence:
            vote = "ignored_confidence"
        else:
            vote = "defect" if rules.is_defect(label) else "good"
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

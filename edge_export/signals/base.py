"""The interface every plant-signal kind implements, the fan-out the service calls, and helpers.

``lensline-edge serve`` talks to the plant through one object: a :class:`Fanout` over the kinds
configured for the box (:data:`edge_export.signals.REGISTRY`). Every method is called from an
inspection or decode thread and must return at once: a kind queues what it is given (bounded)
and sends it from its own thread. A kind raises only for a caller's mistake (an unknown camera
state, a bad camera id), never for an outage of the system it talks to -- that is counted in
:meth:`PlantSignals.stats`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "ALARM_STATES",
    "CAMERA_STATES",
    "Fanout",
    "PlantSignals",
    "RecordingSignals",
    "SignalsConfigError",
    "check_name",
    "to_json",
    "utc_now",
]

CAMERA_STATES = ("online", "stalled", "offline")
ALARM_STATES = ("raised", "cleared")


class SignalsConfigError(ValueError):
    """A plant-signals setting is invalid; the message starts with the field (``mqtt.qos: ...``)."""


@runtime_checkable
class PlantSignals(Protocol):
    """What the edge service sends to the plant. Every method returns at once (never blocks)."""

    kind: ClassVar[str]

    def camera_state(self, camera: str, state: str, **info: Any) -> None:
        """``state`` is one of :data:`CAMERA_STATES`; ``info`` (e.g. ``reason``, ``gap_s``) goes along."""

    def result(self, camera: str, record: Mapping[str, Any]) -> None:
        """One inspected frame (the fields of a ``lensline-edge run`` JSONL line)."""

    def alarm(self, camera: str, event: Mapping[str, Any]) -> None:
        """An alarm transition: ``state`` (raised/cleared), ``class``, ``confidence``,
        ``frame_time``, ``model_version`` and whatever else the service adds."""

    def heartbeat(self, name: str, payload: Mapping[str, Any]) -> None:
        """A periodic heartbeat of a camera or of the box (``name`` is then the box id)."""

    def stats(self) -> dict[str, Any]:
        """Counters for the service's heartbeats (outages, buffered, dropped ...)."""

    def close(self) -> None:
        """Flush what is queued (bounded wait), say ``offline`` and stop the kind's threads."""


class Fanout:
    """Sends every signal to each of ``sinks``, in order; the one object the service calls.

    ``stats()`` is ``{kind: sink.stats()}``; ``close()`` closes every sink even if one raises.
    """

    kind: ClassVar[str] = "fanout"

    def __init__(self, sinks: Sequence[PlantSignals]) -> None:
        self.sinks = list(sinks)

    def camera_state(self, camera: str, state: str, **info: Any) -> None:
        for sink in self.sinks:
            sink.camera_state(camera, state, **info)

    def result(self, camera: str, record: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.result(camera, record)

    def alarm(self, camera: str, event: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.alarm(camera, event)

    def heartbeat(self, name: str, payload: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.heartbeat(name, payload)

    def stats(self) -> dict[str, Any]:
        return {sink.kind: sink.stats() for sink in self.sinks}

    def close(self) -> None:
        errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:  # close the others first, then report
                errors.append(e)
        if errors:
            raise errors[0]


class RecordingSignals:
    """Keeps every call in :attr:`calls` as ``(method, name, payload)``: for the service's tests."""

    kind: ClassVar[str] = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.closed = False

    def camera_state(self, camera: str, state: str, **info: Any) -> None:
        check_state(state)
        self.calls.append(("camera_state", camera, {"state": state, **info}))

    def result(self, camera: str, record: Mapping[str, Any]) -> None:
        self.calls.append(("result", camera, dict(record)))

    def alarm(self, camera: str, event: Mapping[str, Any]) -> None:
        check_alarm(event)
        self.calls.append(("alarm", camera, dict(event)))

    def heartbeat(self, name: str, payload: Mapping[str, Any]) -> None:
        self.calls.append(("heartbeat", name, dict(payload)))

    def stats(self) -> dict[str, Any]:
        return {"calls": len(self.calls)}

    def close(self) -> None:
        self.closed = True


def check_name(name: str, *, what: str = "camera") -> str:
    """A camera or box id usable as one MQTT topic level and an OPC UA browse name."""
    if (
        not isinstance(name, str)
        or not name
        or any(c in name for c in "/+#\0")
        or name != name.strip()
    ):
        raise ValueError(
            f"{what} id {name!r}: must be a non-empty string without / + # or spaces around it"
        )
    return name


def check_state(state: str) -> str:
    if state not in CAMERA_STATES:
        raise ValueError(f"camera state {state!r}: must be one of {', '.join(CAMERA_STATES)}")
    return state


def check_alarm(event: Mapping[str, Any]) -> Mapping[str, Any]:
    if event.get("state") not in ALARM_STATES:
        raise ValueError(
            f"alarm state {event.get('state')!r}: must be one of {', '.join(ALARM_STATES)}"
        )
    return event


def utc_now(now: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.123Z``."""
    t = time.time() if now is None else now
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """JSON fallback: numpy scalars (``.item()``), paths and the rest as strings."""
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    return str(value)


def to_json(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN/inf become null (JSON has no such numbers)."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in payload.items()
    }
    return json.dumps(clean, default=_plain, separators=(",", ":"), allow_nan=False).encode()

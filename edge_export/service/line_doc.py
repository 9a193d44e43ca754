"""The box side of a line's configuration: read and verify ``lines/<box>.json``.

``lensline line apply`` (:mod:`lake.line_config`) publishes, per box its cameras name, a document
under the storage root signed exactly like ``deployments/<box>.json``
(:func:`edge_export.service.deploy.sign_document`, format :data:`FORMAT`)::

    {"format": "lensline.line/1",
     "payload": {"line": "line1", "version": 3, "sha256": HEX, "box": "b1",
                 "cameras": [{"id", "source", "transport", "crop", "fps", "loop"}, ...],
                 "classes": [{"name", "role", "display"}, ...],
                 "capture": {uncertain_margin, shadow_disagreements, random_one_in,
                             alarm_clip_s, max_per_hour, max_mb_per_hour, format},
                 "signals": {"mqtt": {...}, "opcua": {...}}},      # as edge_export.signals takes
     "signature": {...}}

:func:`read_line_document` verifies the signature against the trusted key (the rules of
:func:`edge_export.service.deploy.read_document`: with a pinned key, unsigned or foreign-signed
is refused) and parses the payload into plain frozen dataclasses; anything malformed raises
:class:`edge_export.service.deploy.DocumentError` naming the field. A document with no cameras
means the box is no longer on that line.

Standard library, :mod:`edge_export.service.deploy` and ``cryptography`` only (no pydantic,
Dagster or polars: the edge install).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_export.bundle import TrustedKey
from edge_export.service.deploy import DocumentError, verified_payload

__all__ = [
    "FORMAT",
    "CaptureLimits",
    "LineCamera",
    "LineClass",
    "LineDocument",
    "parse_line_payload",
    "read_line_document",
]

FORMAT = "lensline.line/1"


@dataclass(frozen=True)
class LineCamera:
    """One camera this box reads (``crop``: :meth:`edge_export.preprocess.Crop.parse` form)."""

    id: str
    source: str
    transport: str = "tcp"
    crop: str = "item:112"
    fps: float | None = None
    loop: bool = False


@dataclass(frozen=True)
class LineClass:
    """One class of the line: its role (ok / defect / ignore) and the name operators see."""

    name: str
    role: str
    display: str


@dataclass(frozen=True)
class CaptureLimits:
    """What the box may send back when a capture request asks, and the caps on it."""

    uncertain_margin: float | None = None
    shadow_disagreements: bool = False
    random_one_in: int | None = None
    alarm_clip_s: float | None = None
    max_per_hour: int = 120
    max_mb_per_hour: float = 200.0
    format: str = "jpeg"


@dataclass(frozen=True)
class LineDocument:
    """A verified ``lines/<box>.json``: what ``box`` runs for ``line`` at ``version``."""

    line: str
    version: int
    sha256: str
    box: str
    cameras: tuple[LineCamera, ...]
    classes: tuple[LineClass, ...]
    capture: CaptureLimits
    signals: Mapping[str, Any]  # {"mqtt": {...}, "opcua": {...}}: edge_export.signals sections

    def camera(self, camera_id: str) -> LineCamera | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    def display_names(self) -> dict[str, str]:
        return {c.name: c.display for c in self.classes}


def read_line_document(
    data: bytes, *, trusted: TrustedKey | None, where: str = "line document"
) -> LineDocument:
    """The verified, parsed document; :class:`DocumentError` when it must not be used."""
    return parse_line_payload(verified_payload(data, trusted=trusted, where=where, format=FORMAT))


def parse_line_payload(payload: Mapping[str, Any], *, where: str = "line document") -> LineDocument:
    """A :class:`LineDocument` from a payload (already verified)."""

    def need(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], at: str) -> Any:
        value = d.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise DocumentError(f"{where}: {at}{key} is missing or malformed ({value!r})")
        return value

    cameras, classes = [], []
    for i, cam in enumerate(need(payload, "cameras", list, "")):
        at = f"cameras[{i}]."
        if not isinstance(cam, Mapping):
            raise DocumentError(f"{where}: cameras[{i}] must be an object")
        fps = cam.get("fps")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int | float)):
            raise DocumentError(f"{where}: {at}fps must be a number or null ({fps!r})")
        cameras.append(
            LineCamera(
                id=need(cam, "id", str, at),
                source=need(cam, "source", str, at),
                transport=need(cam, "transport", str, at),
                crop=need(cam, "crop", str, at),
                fps=None if fps is None else float(fps),
                loop=need(cam, "loop", bool, at),
            )
        )
    for i, cls in enumerate(need(payload, "classes", list, "")):
        at = f"classes[{i}]."
        if not isinstance(cls, Mapping):
            raise DocumentError(f"{where}: classes[{i}] must be an object")
        classes.append(
            LineClass(need(cls, "name", str, at), need(cls, "role", str, at),
                      need(cls, "display", str, at))
        )  # fmt: skip
    capture = need(payload, "capture", Mapping, "")
    known = set(CaptureLimits.__dataclass_fields__)
    try:
        limits = CaptureLimits(**{k: v for k, v in capture.items() if k in known})
    except TypeError as e:
        raise DocumentError(f"{where}: capture is malformed ({e})") from None
    return LineDocument(
        line=need(payload, "line", str, ""),
        version=need(payload, "version", int, ""),
        sha256=need(payload, "sha256", str, ""),
        box=need(payload, "box", str, ""),
        cameras=tuple(cameras),
        classes=tuple(classes),
        capture=limits,
        signals=dict(need(payload, "signals", Mapping, "")),
    )

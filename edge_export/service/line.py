"""The box follows its line's configuration: ``lines/<box>.json`` -> the cameras it reads.

``lensline line apply`` publishes, per box, a signed document (:mod:`edge_export.service.line_doc`)
with the cameras that box reads (id, source, RTSP transport, inspection fps, loop) and the plant
endpoints. With ``line: true`` in its YAML, ``lensline-edge serve`` takes its cameras (and, when
the YAML names none, its MQTT / OPC UA endpoints) from that document, and keeps following it:
:class:`LineWatcher` polls it beside the desired state, and the serve loop reconciles between two
batches — a camera added to the line is opened, one removed is closed (its segments closed, its
state ``offline`` on the plant signals), one whose source changed is reopened; the others never
stop. A document that does not verify, or is older than the one in force (a replay), is refused
and reported; the cameras in force keep running.

Standard library, :mod:`edge_export.service.deploy` and ``cryptography`` only (the edge install).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edge_export.service.config import CameraConfig
from edge_export.service.line_doc import LineDocument, read_line_document

__all__ = ["CameraDiff", "LineWatcher", "camera_configs", "diff_cameras"]


def camera_configs(doc: LineDocument) -> tuple[CameraConfig, ...]:
    """The service's camera configs from a line document (crop is the graph's: bundles carry it)."""
    return tuple(
        CameraConfig(id=c.id, source=c.source, transport=c.transport, fps=c.fps, loop=c.loop)
        for c in doc.cameras
    )


@dataclass(frozen=True)
class CameraDiff:
    """What a new camera list changes: ids to open, to close and to reopen (source changed)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [
            f"{what} {', '.join(ids)}"
            for what, ids in (("added", self.added), ("removed", self.removed),
                              ("reopened", self.changed))
            if ids
        ]  # fmt: skip
        return "; ".join(parts) or "no camera changed"


def diff_cameras(before: Iterable[CameraConfig], after: Iterable[CameraConfig]) -> CameraDiff:
    """Which cameras a change of the list opens, closes or reopens (any field of a kept camera
    that changed means reopening its stream)."""
    old, new = {c.id: c for c in before}, {c.id: c for c in after}
    return CameraDiff(
        added=tuple(i for i in new if i not in old),
        removed=tuple(i for i in old if i not in new),
        changed=tuple(i for i in new if i in old and new[i] != old[i]),
    )


class LineWatcher:
    """Poll ``lines/<box>.json`` and hand over a verified document when it changed.

    ``read()`` returns the document's bytes (FileNotFoundError: none published); ``trusted`` is
    the pinned signer (:class:`edge_export.bundle.TrustedKey`) or None (unsigned accepted).
    """

    def __init__(
        self, read: Callable[[], bytes], *, box: str, trusted: Any, where: str | None = None
    ):
        self.read, self.box, self.trusted = read, box, trusted
        self.where = where or f"lines/{box}.json"
        self.current: LineDocument | None = None
        self.problems: list[str] = []
        self._seen: bytes | None = None

    def load(self) -> LineDocument:
        """The document at start: it must exist and verify (raises ValueError naming why)."""
        try:
            data = self.read()
        except FileNotFoundError:
            raise ValueError(
                f"line: true, but no {self.where} is published under the deployments root "
                "(run `lensline line apply LINE.yaml` for a line naming this box)"
            ) from None
        doc = self._verify(data)
        self._seen, self.current = hashlib.sha256(data).digest(), doc
        return doc

    def poll(self) -> LineDocument | None:
        """A new verified document, or None (unchanged, absent, or refused: see ``problems``)."""
        try:
            data = self.read()
        except FileNotFoundError:
            return None  # withdrawn: the cameras in force keep running until a new version
        except Exception as e:  # noqa: BLE001 - a source outage keeps the cameras in force
            self._refuse(f"cannot read {self.where}: {e}", None)
            return None
        digest = hashlib.sha256(data).digest()
        if digest == self._seen:
            return None
        try:
            doc = self._verify(data)
        except ValueError as e:
            self._refuse(str(e), digest)
            return None
        self._seen, self.current = digest, doc
        return doc

    def _verify(self, data: bytes) -> LineDocument:
        doc = read_line_document(data, trusted=self.trusted, where=self.where)
        if doc.box != self.box:
            raise ValueError(f"{self.where}: written for box {doc.box!r}, this box is {self.box!r}")
        current = self.current
        if current is not None and doc.line == current.line and doc.version < current.version:
            raise ValueError(
                f"{self.where}: version {doc.version} of line {doc.line} is older than the one "
                f"in force ({current.version}): refused (replayed or stale document)"
            )
        return doc

    def _refuse(self, problem: str, digest: bytes | None) -> None:
        if digest is not None:
            self._seen = digest  # reported once per distinct document
        self.problems.append(problem)
        del self.problems[:-10]

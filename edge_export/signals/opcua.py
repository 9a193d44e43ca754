"""OPC UA plant signals (asyncua): a small server on the box that PLCs and SCADA read or subscribe to.

Address space, in namespace ``namespace`` (index ``ns``, usually 2):

``Objects/Lensline`` (``ns=<ns>;s=Lensline``), and per camera C an object
``Objects/Lensline/C`` (``ns=<ns>;s=Lensline.C``) holding read-only variables
``ns=<ns>;s=Lensline.C.<name>``:

=================  ==========  ==================================================
name               type        set by
=================  ==========  ==================================================
``state``          String      :meth:`camera_state` (online / stalled / offline)
``last_label``     String      :meth:`result` (``label``)
``confidence``     Double      :meth:`result` (``confidence``)
``alarm``          Boolean     :meth:`alarm` (true while raised)
``alarm_class``    String      :meth:`alarm` (``class`` of the last transition)
``model_version``  String      :meth:`result` / :meth:`alarm` (``model_version``)
``fps``            Double      :meth:`heartbeat` of the camera (``fps``)
=================  ==========  ==================================================

The server runs in its own thread with its own asyncio loop; :meth:`OpcUaSignals.update`
queues the values (bounded, drops counted) and wakes that loop, so the inspection thread never
waits on OPC UA. Updates are applied in order: a subscriber sees an alarm raised then cleared,
not only the last value. asyncua is imported in that thread, only when OPC UA is configured.
The endpoint binds 127.0.0.1 unless configured otherwise; security policy None (a plant network
behind the line's firewall), anonymous, read-only variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar
from urllib.parse import urlsplit

from edge_export.signals.base import SignalsConfigError, check_alarm, check_name, check_state

__all__ = ["VARIABLES", "OpcUaConfig", "OpcUaSignals"]

log = logging.getLogger(__name__)

# name -> (asyncua VariantType name, initial value); the type of each value never changes.
VARIABLES: dict[str, tuple[str, Any]] = {
    "state": ("String", ""),
    "last_label": ("String", ""),
    "confidence": ("Double", 0.0),
    "alarm": ("Boolean", False),
    "alarm_class": ("String", ""),
    "model_version": ("String", ""),
    "fps": ("Double", 0.0),
}
_COERCE = {"String": str, "Double": float, "Boolean": bool}


@dataclass(frozen=True)
class OpcUaConfig:
    """The ``opcua:`` section of the service's config."""

    endpoint: str = "opc.tcp://127.0.0.1:4840/lensline/"
    namespace: str = "urn:lensline:edge"
    queue: int = 10_000  # updates waiting for the server's loop
    start_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        url = urlsplit(self.endpoint) if isinstance(self.endpoint, str) else None
        if url is None or url.scheme != "opc.tcp" or not url.hostname:
            raise SignalsConfigError(
                f"opcua.endpoint: {self.endpoint!r} is not opc.tcp://host:port/path"
            )
        try:
            url.port  # noqa: B018 (raises on a bad port)
        except ValueError as e:
            raise SignalsConfigError(f"opcua.endpoint: {e}") from None
        if not isinstance(self.namespace, str) or not self.namespace:
            raise SignalsConfigError(
                f"opcua.namespace: must be a non-empty string, got {self.namespace!r}"
            )
        if not isinstance(self.queue, int) or isinstance(self.queue, bool) or self.queue < 1:
            raise SignalsConfigError(f"opcua.queue: must be an integer >= 1, got {self.queue!r}")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> OpcUaConfig:
        section = {} if section is None or section is True else section
        if not isinstance(section, Mapping):
            raise SignalsConfigError(f"opcua: must be a mapping, got {type(section).__name__}")
        known = {f.name for f in fields(cls)}
        for key in section:
            if key not in known:
                raise SignalsConfigError(
                    f"opcua.{key}: unknown key (known: {', '.join(sorted(known))})"
                )
        return cls(**section)


class OpcUaSignals:
    """An OPC UA server exposing per-camera variables; see the module docstring for the nodes.

    Starting waits (up to ``start_timeout_s``) until the endpoint listens and raises
    ``RuntimeError`` if it cannot (port taken, bad host); every call after that returns at once.
    """

    kind: ClassVar[str] = "opcua"
    config_class: ClassVar[type[OpcUaConfig]] = OpcUaConfig

    def __init__(self, config: OpcUaConfig, *, box: str, cameras: Sequence[str] = ()) -> None:
        self.config = config
        self.box = check_name(box, what="box")
        self._cameras = [check_name(c) for c in cameras]
        self._pending: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._updates = 0
        self._dropped = 0
        self._stopping = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.namespace_index: int | None = None
        self._thread = threading.Thread(target=self._run, name="lensline-opcua", daemon=True)
        self._thread.start()
        if not self._ready.wait(config.start_timeout_s):
            self.close()
            raise RuntimeError(
                f"OPC UA server at {config.endpoint} did not start in {config.start_timeout_s} s"
            )
        if self._error is not None:
            self._thread.join(timeout=5)
            raise RuntimeError(
                f"OPC UA server at {config.endpoint} could not start: {self._error}"
            ) from self._error

    @classmethod
    def from_config(
        cls, section: Mapping[str, Any] | None, *, box: str, cameras: Sequence[str] = ()
    ) -> OpcUaSignals:
        return cls(OpcUaConfig.from_mapping(section), box=box, cameras=cameras)

    def __repr__(self) -> str:
        return f"OpcUaSignals(endpoint={self.config.endpoint!r}, box={self.box!r})"

    # -- the PlantSignals interface ------------------------------------------------------------------

    def _wake_loop(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed (close() raced us)
                loop.call_soon_threadsafe(wake.set)

    def update(self, camera: str, **values: Any) -> None:
        """Queue new values of ``camera``'s variables (names from :data:`VARIABLES`); returns at once."""
        check_name(camera)
        for name in values:
            if name not in VARIABLES:
                raise ValueError(
                    f"OPC UA variable {name!r}: unknown (known: {', '.join(VARIABLES)})"
                )
        with self._lock:
            if len(self._pending) >= self.config.queue:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append((camera, values))
        if not self._stopping:
            self._wake_loop()

    def camera_state(self, camera: str, state: str, **info: Any) -> None:
        self.update(camera, state=check_state(state))

    def result(self, camera: str, record: Mapping[str, Any]) -> None:
        values = {
            k: record[k] for k in ("confidence", "model_version") if record.get(k) is not None
        }
        if record.get("label") is not None:
            values["last_label"] = record["label"]
        self.update(camera, **values)

    def alarm(self, camera: str, event: Mapping[str, Any]) -> None:
        check_alarm(event)
        values: dict[str, Any] = {"alarm": event["state"] == "raised"}
        if event.get("class") is not None:
            values["alarm_class"] = event["class"]
        if event.get("model_version") is not None:
            values["model_version"] = event["model_version"]
        self.update(camera, **values)

    def heartbeat(self, name: str, payload: Mapping[str, Any]) -> None:
        if name != self.box and isinstance(payload.get("fps"), int | float):
            self.update(name, fps=payload["fps"])

    def stats(self) -> dict[str, Any]:
        """``running``, ``endpoint``, ``updates`` (applied), ``pending``, ``dropped``."""
        with self._lock:
            return {
                "running": self._thread.is_alive() and self._ready.is_set() and self._error is None,
                "endpoint": self.config.endpoint,
                "updates": self._updates,
                "pending": len(self._pending),
                "dropped": self._dropped,
            }

    def close(self) -> None:
        """Apply what is queued, stop the server and its thread."""
        self._stopping = True
        self._wake_loop()
        self._thread.join(timeout=10)

    # -- the server's thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported to the constructor, or logged if it dies later
            if self._ready.is_set():
                log.error("OPC UA server at %s stopped: %s", self.config.endpoint, e)
            self._error = e
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(self.config.endpoint)
        server.set_server_name(f"Lensline edge {self.box}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(self.config.namespace)
        self.namespace_index = ns
        root = await server.nodes.objects.add_object(
            ua.NodeId(ua.String("Lensline"), ua.Int16(ns)), ua.QualifiedName("Lensline", ns)
        )
        nodes: dict[tuple[str, str], Any] = {}

        async def add_camera(camera: str) -> None:
            obj = await root.add_object(
                ua.NodeId(ua.String(f"Lensline.{camera}"), ua.Int16(ns)),
                ua.QualifiedName(camera, ns),
            )
            for name, (vtype, initial) in VARIABLES.items():
                variant = ua.Variant(initial, getattr(ua.VariantType, vtype))
                nodes[camera, name] = await obj.add_variable(
                    ua.NodeId(ua.String(f"Lensline.{camera}.{name}"), ua.Int16(ns)),
                    ua.QualifiedName(name, ns),
                    variant,
                )

        for camera in self._cameras:
            await add_camera(camera)
        self._wake = asyncio.Event()
        async with server:
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            while True:
                stopping = self._stopping
                while True:
                    with self._lock:
                        item = self._pending.popleft() if self._pending else None
                    if item is None:
                        break
                    camera, values = item
                    if (camera, "state") not in nodes:
                        await add_camera(camera)
                    for name, value in values.items():
                        vtype = VARIABLES[name][0]
                        variant = ua.Variant(_COERCE[vtype](value), getattr(ua.VariantType, vtype))
                        await nodes[camera, name].write_value(ua.DataValue(variant))
                    with self._lock:
                        self._updates += 1
                if stopping:
                    break
                await self._wake.wait()
                self._wake.clear()

"""MQTT plant signals (paho-mqtt): alarms, results, camera states and heartbeats per camera.

(Over 400 lines: one class, the MQTT connection per camera, its sender thread and outage bookkeeping, which share one state.)

Topics, for ``topic_prefix`` P and a camera (or the box) C:

=================  ===========  ========  ===================================================
topic              QoS          retained  payload (JSON)
=================  ===========  ========  ===================================================
``P/C/alarm``      ``qos``      yes       the alarm event (``state`` raised/cleared, ``class``,
                                          ``confidence``, ``frame_time``, ``model_version``)
``P/C/state``      ``qos``      yes       ``state`` online/stalled/offline, ``at`` (+ info);
                                          ``offline`` is also C's MQTT last will
``P/C/result``     result_qos   no        one inspected frame (only with ``results: true``)
``P/C/heartbeat``  result_qos   no        what the service reports
=================  ===========  ========  ===================================================

Every payload also carries ``camera`` (C) and ``box``. Each camera (and the box, when it sends
a heartbeat or a state) has its own MQTT connection, because a connection has one last will and
each camera's ``state`` must turn ``offline`` when the box dies.

Nothing here blocks the caller: a call puts the message in the camera's :class:`Outbox`
(bounded, alarms and states dropped last) and wakes the sender thread, which hands messages to
paho (whose network thread writes them) only while connected. After a reconnect the sender waits
for paho to resend what was unacknowledged, republishes the last state, then drains the outbox
in order. Outages (the broker lost, from any connection, until all are back) and drops are
counted in :meth:`MqttSignals.stats`.

Credentials and TLS come from the environment only and are never logged:
``LENSLINE_MQTT_USERNAME``, ``LENSLINE_MQTT_PASSWORD``, ``LENSLINE_MQTT_CA`` (CA file; implies
TLS), ``LENSLINE_MQTT_CERT`` / ``LENSLINE_MQTT_KEY`` (client certificate). ``mqtts://`` turns
TLS on with the system's CAs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from edge_export.signals.base import (
    SignalsConfigError,
    check_alarm,
    check_name,
    check_state,
    to_json,
    utc_now,
)
from edge_export.signals.outbox import Message, Outbox

__all__ = ["MqttConfig", "MqttCredentials", "MqttSignals"]

log = logging.getLogger(__name__)

# Messages handed to paho and not yet acknowledged, per connection; the rest waits in the outbox
# where the drop policy applies.
_WINDOW = 64


@dataclass(frozen=True)
class MqttConfig:
    """The ``mqtt:`` section of the service's config (no secrets: see :class:`MqttCredentials`)."""

    url: str  # mqtt://host[:1883] or mqtts://host[:8883]
    topic_prefix: str = "lensline"
    qos: int = 1  # alarms and states
    result_qos: int = 0  # results and heartbeats
    results: bool = False  # publish every inspected frame on P/C/result
    buffer: int = 1000  # messages held per connection while the broker is away
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    close_timeout_s: float = 2.0  # how long close() waits for the outbox to drain

    def __post_init__(self) -> None:
        url = urlsplit(self.url) if isinstance(self.url, str) else None
        if url is None or url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise SignalsConfigError(
                f"mqtt.url: {self.url!r} is not mqtt://host[:port] or mqtts://host[:port]"
            )
        if url.username or url.password:
            raise SignalsConfigError(
                "mqtt.url: must not hold credentials; set LENSLINE_MQTT_USERNAME / LENSLINE_MQTT_PASSWORD"
            )
        try:
            url.port  # noqa: B018 (raises on a bad port)
        except ValueError as e:
            raise SignalsConfigError(f"mqtt.url: {e}") from None
        prefix = self.topic_prefix
        if (
            not isinstance(prefix, str)
            or not prefix
            or prefix.startswith("/")
            or prefix.endswith("/")
            or any(c in prefix for c in "+#\0")
        ):
            raise SignalsConfigError(
                f"mqtt.topic_prefix: {prefix!r} must be a topic without wildcards or a leading/trailing /"
            )
        for name in ("qos", "result_qos"):
            if getattr(self, name) not in (0, 1, 2) or isinstance(getattr(self, name), bool):
                raise SignalsConfigError(
                    f"mqtt.{name}: must be 0, 1 or 2, got {getattr(self, name)!r}"
                )
        if not isinstance(self.results, bool):
            raise SignalsConfigError(f"mqtt.results: must be true or false, got {self.results!r}")
        if not isinstance(self.buffer, int) or isinstance(self.buffer, bool) or self.buffer < 1:
            raise SignalsConfigError(f"mqtt.buffer: must be an integer >= 1, got {self.buffer!r}")
        for name in ("keepalive_s", "reconnect_min_s", "reconnect_max_s", "close_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise SignalsConfigError(f"mqtt.{name}: must be a number > 0, got {value!r}")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise SignalsConfigError("mqtt.reconnect_max_s: must be >= reconnect_min_s")

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> MqttConfig:
        if not isinstance(section, Mapping):
            raise SignalsConfigError(f"mqtt: must be a mapping, got {type(section).__name__}")
        known = {f.name for f in fields(cls)}
        for key in section:
            if key not in known:
                raise SignalsConfigError(
                    f"mqtt.{key}: unknown key (known: {', '.join(sorted(known))})"
                )
        if "url" not in section:
            raise SignalsConfigError("mqtt.url: required")
        return cls(**section)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


@dataclass(frozen=True)
class MqttCredentials:
    """Broker credentials and TLS files, from the environment only; ``repr`` hides the password."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: str | None = None
    cert: str | None = None
    key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MqttCredentials:
        env = os.environ if environ is None else environ
        return cls(
            username=env.get("LENSLINE_MQTT_USERNAME") or None,
            password=env.get("LENSLINE_MQTT_PASSWORD") or None,
            ca=env.get("LENSLINE_MQTT_CA") or None,
            cert=env.get("LENSLINE_MQTT_CERT") or None,
            key=env.get("LENSLINE_MQTT_KEY") or None,
        )


class _Connection:
    """One paho client (one last will) for one camera or the box, with its outbox."""

    def __init__(self, name: str, client: mqtt.Client, outbox: Outbox) -> None:
        self.name = name
        self.client = client
        self.outbox = outbox
        self.connected = False
        self.resync = False  # just (re)connected: wait for paho's resends, then republish state
        self.inflight: list[mqtt.MQTTMessageInfo] = []
        self.last_state: Message | None = None


class MqttSignals:
    """Plant signals over MQTT; see the module docstring for topics, QoS and the buffer.

    Examples
    --------
    >>> signals = MqttSignals(MqttConfig(url="mqtt://127.0.0.1:1883"), box="b1", cameras=["cam1"])
    >>> signals.alarm("cam1", {"state": "raised", "class": "scratch", "confidence": 0.97})  # doctest: +SKIP
    """

    kind: ClassVar[str] = "mqtt"
    config_class: ClassVar[type[MqttConfig]] = MqttConfig

    def __init__(
        self,
        config: MqttConfig,
        *,
        box: str,
        cameras: Sequence[str] = (),
        credentials: MqttCredentials | None = None,
    ) -> None:
        self.config = config
        self.box = check_name(box, what="box")
        self._credentials = credentials if credentials is not None else MqttCredentials.from_env()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._connections: dict[str, _Connection] = {}
        self._down: set[str] = set()
        self._down_since: float | None = None
        self._outages = 0
        self._outage_s = 0.0
        self._published = 0
        self._last_error: str | None = None
        self._sender = threading.Thread(
            target=self._send_loop, name="lensline-mqtt-sender", daemon=True
        )
        self._sender.start()
        for camera in cameras:
            self._connection(camera)

    @classmethod
    def from_config(
        cls, section: Mapping[str, Any], *, box: str, cameras: Sequence[str] = ()
    ) -> MqttSignals:
        return cls(MqttConfig.from_mapping(section), box=box, cameras=cameras)

    def __repr__(self) -> str:
        return f"MqttSignals(url={self.config.url!r}, box={self.box!r}, cameras={sorted(self._connections)})"

    # -- the PlantSignals interface (caller's thread: queue and return) ---------------------------

    def camera_state(self, camera: str, state: str, **info: Any) -> None:
        check_state(state)
        payload = {"camera": camera, "box": self.box, "state": state, "at": utc_now(), **info}
        self._put(camera, "state", payload, self.config.qos, retain=True, priority=True)

    def result(self, camera: str, record: Mapping[str, Any]) -> None:
        if self.config.results:
            payload = {"camera": camera, "box": self.box, **record}
            self._put(
                camera, "result", payload, self.config.result_qos, retain=False, priority=False
            )

    def alarm(self, camera: str, event: Mapping[str, Any]) -> None:
        check_alarm(event)
        payload = {"camera": camera, "box": self.box, **event}
        self._put(camera, "alarm", payload, self.config.qos, retain=True, priority=True)

    def heartbeat(self, name: str, payload: Mapping[str, Any]) -> None:
        body = {"camera": name, "box": self.box, "at": utc_now(), **payload}
        self._put(name, "heartbeat", body, self.config.result_qos, retain=False, priority=False)

    def stats(self) -> dict[str, Any]:
        """``connected`` (every connection up), ``outages``, ``outage_s`` (this one included),
        ``buffered`` (outboxes + unacknowledged), ``dropped``, ``dropped_priority`` (alarms or
        states), ``published``, ``last_error``."""
        with self._lock:
            conns = list(self._connections.values())
            outage_s = self._outage_s + (
                time.monotonic() - self._down_since if self._down_since else 0.0
            )
            return {
                "connected": bool(conns) and all(c.connected for c in conns),
                "outages": self._outages,
                "outage_s": round(outage_s, 3),
                "buffered": sum(len(c.outbox) + len(c.inflight) for c in conns),
                "dropped": sum(c.outbox.dropped for c in conns),
                "dropped_priority": sum(c.outbox.dropped_priority for c in conns),
                "published": self._published,
                "last_error": self._last_error,
            }

    def close(self) -> None:
        """Publish ``offline`` for every camera, wait up to ``close_timeout_s`` for the outboxes
        to drain, then disconnect cleanly (a clean disconnect does not fire the last will)."""
        with self._lock:
            names = list(self._connections)
        for name in names:
            self.camera_state(name, "offline", reason="service stopped")
        deadline = time.monotonic() + self.config.close_timeout_s
        while time.monotonic() < deadline and self.stats()["buffered"]:
            self._wake.set()
            time.sleep(0.02)
        self._closing = True
        self._wake.set()
        self._sender.join(timeout=5)
        for conn in self._connections.values():
            conn.client.disconnect()
            conn.client.loop_stop()

    # -- internals ---------------------------------------------------------------------------------

    def _topic(self, name: str, leaf: str) -> str:
        return f"{self.config.topic_prefix}/{name}/{leaf}"

    def _put(
        self,
        name: str,
        leaf: str,
        payload: Mapping[str, Any],
        qos: int,
        *,
        retain: bool,
        priority: bool,
    ) -> None:
        message = Message(self._topic(name, leaf), to_json(payload), qos, retain, priority)
        self._connection(name).outbox.put(message)
        self._wake.set()

    def _connection(self, name: str) -> _Connection:
        conn = self._connections.get(name)
        if conn is not None:
            return conn
        check_name(name)
        with self._lock:
            if name in self._connections:
                return self._connections[name]
            conn = _Connection(name, self._client(name), Outbox(self.config.buffer))
            self._connections[name] = conn
        conn.client.connect_async(
            self.config.host, self.config.port, keepalive=int(self.config.keepalive_s)
        )
        conn.client.loop_start()
        return conn

    def _client(self, name: str) -> mqtt.Client:
        cfg, cred = self.config, self._credentials
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"lensline-{self.box}-{name}",
            clean_session=True,
            userdata=name,
        )
        if cred.username:
            client.username_pw_set(cred.username, cred.password)
        if cfg.tls or cred.ca:
            client.tls_set(ca_certs=cred.ca, certfile=cred.cert, keyfile=cred.key)
        will = {"camera": name, "box": self.box, "state": "offline", "reason": "connection lost"}
        client.will_set(self._topic(name, "state"), to_json(will), qos=cfg.qos, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.max_queued_messages_set(0)
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))  # never sees the password
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        return client

    def _on_connect(
        self, client: mqtt.Client, name: str, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._mark_down(name, f"broker refused the connection: {reason}")
            return
        with self._lock:
            conn = self._connections[name]
            conn.connected = True
            conn.resync = True
            self._down.discard(name)
            if not self._down and self._down_since is not None:
                self._outage_s += time.monotonic() - self._down_since
                self._down_since = None
                log.info("MQTT broker %s:%s reachable again", self.config.host, self.config.port)
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, name: str, flags: Any, reason: Any, properties: Any
    ) -> None:
        with self._lock:
            was_up, self._connections[name].connected = self._connections[name].connected, False
        if not self._closing:  # after a refused CONNACK, keep that reason as the last error
            self._mark_down(name, f"connection lost: {reason}" if was_up else None)

    def _on_connect_fail(self, client: mqtt.Client, name: str) -> None:
        self._mark_down(name, "cannot connect")

    def _mark_down(self, name: str, error: str | None) -> None:
        with self._lock:
            self._connections[name].connected = False
            if error is not None:
                self._last_error = f"{self.config.host}:{self.config.port}: {error}"
            self._down.add(name)
            if self._down_since is None:
                self._down_since = time.monotonic()
                self._outages += 1
                log.warning(
                    "MQTT broker unreachable (%s); buffering up to %d messages per camera",
                    self._last_error,
                    self.config.buffer,
                )

    def _send_loop(self) -> None:
        while not self._closing:
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            with self._lock:
                conns = list(self._connections.values())
            for conn in conns:
                self._send(conn)

    def _send(self, conn: _Connection) -> None:
        """Hand queued messages to paho while connected, at most ``_WINDOW`` unacknowledged."""
        still = [info for info in conn.inflight if not info.is_published()]
        with self._lock:
            self._published += len(conn.inflight) - len(still)
        conn.inflight = still
        if not conn.connected:
            return
        if conn.resync:
            if conn.inflight:  # paho resends these first; anything new would overtake them
                return
            conn.resync = False
            if conn.last_state is not None:
                self._publish(conn, conn.last_state)
        while conn.connected and len(conn.inflight) < _WINDOW:
            message = conn.outbox.pop()
            if message is None:
                return
            if not self._publish(conn, message):
                conn.outbox.put_front(message)
                return

    def _publish(self, conn: _Connection, message: Message) -> bool:
        info = conn.client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain
        )
        if message.topic.endswith("/state"):
            conn.last_state = message
        if message.qos > 0:  # paho keeps it and resends it after a reconnect
            conn.inflight.append(info)
            return True
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        with self._lock:
            self._published += 1
        return True

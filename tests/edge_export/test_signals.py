"""Plant signals against real parts on 127.0.0.1: a Mosquitto broker (started and stopped by PID
here, on a free port), paho subscribers, an asyncua client against the box's OPC UA server."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_export.signals import (
    REGISTRY,
    Fanout,
    MqttConfig,
    MqttSignals,
    OpcUaConfig,
    OpcUaSignals,
    RecordingSignals,
    SignalsConfigError,
    build_signals,
)
from edge_export.signals.outbox import Message, Outbox
from tests.conftest import free_port, unavailable

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
REPO = Path(__file__).resolve().parents[2]


# -- a real broker, and a subscriber ------------------------------------------------------------


@dataclass
class Broker:
    """Mosquitto on 127.0.0.1:``port``; ``start``/``stop`` by PID, same port and config each time."""

    root: Path
    port: int
    password_file: Path | None = None
    persistence: bool = False
    tls: dict[str, Path] | None = None  # cafile, certfile, keyfile: TLS only, client certs required
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}"]
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [f"{k} {v}" for k, v in self.tls.items()]
            lines += ["require_certificate true", "tls_version tlsv1.2"]
        if self.persistence:  # sessions and queued messages survive a SIGTERM restart
            lines += ["persistence true", f"persistence_location {self.root}/"]
        conf = self.root / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        log = (self.root / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {(self.root / 'mosquitto.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen on {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    """``broker(port=None, password_file=None, persistence=False)`` starts one; all stopped by PID."""
    if not os.access(MOSQUITTO, os.X_OK):
        unavailable("mosquitto is not installed (Debian: apt-get install mosquitto)")
    started: list[Broker] = []

    def start(port: int | None = None, **kw) -> Broker:
        b = Broker(tmp_path / f"broker{len(started)}", port or free_port(), **kw)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        b.stop(signal.SIGKILL)


class Subscriber:
    """A paho subscriber (QoS 1) collecting ``(topic, payload, qos, retain)``; reconnects itself."""

    def __init__(
        self, port: int, topic: str, *, client_id: str = "", clean: bool = True, auth=None,
        tls: dict[str, Path] | None = None,
    ):  # fmt: skip
        self.messages: list[tuple[str, dict, int, bool]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        if auth:
            self.client.username_pw_set(*auth)
        if tls:
            self.client.tls_set(ca_certs=tls["ca"], certfile=tls["cert"], keyfile=tls["key"])
        # a resumed session keeps its subscription (re-subscribing would resend the retained one)
        self.client.on_connect = lambda c, u, flags, *_: (
            flags.session_present or c.subscribe(topic, qos=1)
        )
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.3)  # type: ignore[arg-type]
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, json.loads(msg.payload), msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def wait(self, predicate, timeout: float = 5.0) -> list:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout):
                raise AssertionError(f"not seen in {timeout} s; got {self.messages}")
            return list(self.messages)

    def on(self, topic: str) -> list[tuple[dict, int, bool]]:
        with self._cond:
            return [(p, q, r) for t, p, q, r in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def fast(url: str, **kw) -> MqttConfig:
    return MqttConfig(
        url=url, topic_prefix="plant/line1", reconnect_min_s=0.1, reconnect_max_s=0.3, **kw
    )


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        time.sleep(0.02)


ALARM = {
    "state": "raised",
    "class": "scratch",
    "confidence": 0.97,
    "frame_time": 12.4,
    "model_version": "m-7",
}


# -- MQTT ---------------------------------------------------------------------------------------


def test_alarm_arrives_with_qos1_and_retained_state(broker):
    b = broker()
    live = Subscriber(b.port, "plant/line1/#")
    time.sleep(0.3)  # let it subscribe
    signals = MqttSignals(fast(b.url, results=True), box="b1", cameras=["cam1"])
    try:
        signals.camera_state("cam1", "online")
        signals.alarm("cam1", ALARM)
        signals.result("cam1", {"frame_index": 7, "label": "scratch", "confidence": 0.97})
        signals.heartbeat("b1", {"fps": 29.8, "signals": signals.stats()})
        live.wait(lambda m: len(m) >= 4)
        wait_until(lambda: signals.stats()["published"] >= 4)

        late = Subscriber(b.port, "plant/line1/#")  # sees what is retained: state and alarm
        got = late.wait(lambda m: len(m) >= 2)
        assert {t for t, *_ in got} == {"plant/line1/cam1/state", "plant/line1/cam1/alarm"}
        (alarm, qos, retained), *_ = late.on("plant/line1/cam1/alarm")
        assert (qos, retained) == (1, True)
        assert alarm == {"camera": "cam1", "box": "b1", **ALARM}
        assert late.on("plant/line1/cam1/state")[0][0]["state"] == "online"
        late.close()

        (result, rqos, _), *_ = live.on("plant/line1/cam1/result")
        assert result["frame_index"] == 7 and rqos == 0
        (beat, _, _), *_ = live.on("plant/line1/b1/heartbeat")
        assert beat["fps"] == 29.8 and beat["signals"]["outages"] == 0
        assert live.on("plant/line1/cam1/alarm")[0][1] == 1  # QoS 1 end to end
    finally:
        signals.close()
        live.close()
    stats = signals.stats()
    assert stats["buffered"] == 0 and stats["dropped"] == 0 and stats["outages"] == 0


def test_state_goes_offline_via_last_will_when_publisher_dies(broker):
    b = broker()
    sub = Subscriber(b.port, "plant/line1/cam1/state")
    script = textwrap.dedent(
        f"""
        import time
        from edge_export.signals import MqttConfig, MqttSignals
        s = MqttSignals(MqttConfig(url={b.url!r}, topic_prefix="plant/line1"), box="b1", cameras=["cam1"])
        s.camera_state("cam1", "online")
        while s.stats()["published"] < 1:
            time.sleep(0.01)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        sub.wait(lambda m: any(p["state"] == "online" for _, p, _, _ in m))
        os.kill(proc.pid, signal.SIGKILL)  # no clean disconnect: the broker publishes the will
        proc.wait(timeout=10)
        got = sub.wait(lambda m: m[-1][1]["state"] == "offline")
        assert got[-1][1] == {
            "camera": "cam1",
            "box": "b1",
            "state": "offline",
            "reason": "connection lost",
        }
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        sub.close()
    retained = Subscriber(b.port, "plant/line1/cam1/state")  # and offline is what stays retained
    assert retained.wait(lambda m: len(m) >= 1)[0][1]["state"] == "offline"
    retained.close()


def test_broker_outage_never_blocks_and_buffered_alarms_arrive_in_order(broker):
    b = broker(persistence=True)
    sub = Subscriber(b.port, "plant/line1/cam1/alarm", client_id="scada", clean=False)
    time.sleep(0.3)
    signals = MqttSignals(fast(b.url, results=True), box="b1", cameras=["cam1"])
    try:
        signals.alarm("cam1", {**ALARM, "seq": 0})
        sub.wait(lambda m: len(m) >= 1)

        b.stop()  # by PID (SIGTERM: Mosquitto saves the subscriber's session)
        for seq in (1, 2):  # before paho has noticed: handed over, resent after the restart
            signals.alarm("cam1", {**ALARM, "seq": seq})
        wait_until(lambda: not signals.stats()["connected"])
        slowest = 0.0
        for seq in range(3, 21):
            for call, args in (
                (
                    signals.alarm,
                    ({**ALARM, "state": "cleared" if seq % 2 else "raised", "seq": seq},),
                ),
                (signals.result, ({"frame_index": seq, "label": "ok"},)),
                (signals.camera_state, ("stalled" if seq == 10 else "online",)),
                (signals.heartbeat, ({"fps": 30.0},)),
            ):
                t0 = time.perf_counter()
                call("cam1", *args)
                slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.01)
        assert slowest < 0.05, f"a publishing call took {slowest * 1000:.1f} ms during the outage"
        stats = signals.stats()
        assert stats["outages"] == 1 and stats["buffered"] >= 72 and not stats["connected"]
        assert "cannot connect" in stats["last_error"] or "connection lost" in stats["last_error"]

        b.start()  # same port
        got = sub.wait(lambda m: len(m) >= 21, timeout=8)
        seqs = [p["seq"] for _, p, _, _ in got]
        # every alarm, in order (QoS 1 is at least once: a resent one may come twice in a row)
        assert sorted(seqs) == seqs and sorted(set(seqs)) == list(range(21)), seqs
        wait_until(lambda: signals.stats()["buffered"] == 0)
        stats = signals.stats()
        assert (
            stats["connected"]
            and stats["outages"] == 1
            and stats["outage_s"] > 0
            and stats["dropped"] == 0
        )
    finally:
        signals.close()
        sub.close()


def test_bounded_buffer_drops_results_first_and_counts(broker):
    port = free_port()  # nothing listens yet: the broker is "down" from the start
    signals = MqttSignals(
        fast(f"mqtt://127.0.0.1:{port}", results=True, buffer=4), box="b1", cameras=["cam1"]
    )
    try:
        for i in range(3):
            signals.alarm("cam1", {**ALARM, "seq": i})
        for i in range(5):
            signals.result("cam1", {"frame_index": i})
        stats = signals.stats()
        assert (stats["buffered"], stats["dropped"], stats["dropped_priority"]) == (4, 4, 0)
        signals.alarm("cam1", {**ALARM, "seq": 3})  # drops the last result
        signals.alarm("cam1", {**ALARM, "seq": 4})  # only alarms left: drops the oldest alarm
        stats = signals.stats()
        assert (stats["buffered"], stats["dropped"], stats["dropped_priority"]) == (4, 6, 1)
        wait_until(lambda: signals.stats()["outages"] == 1)

        broker(port=port)  # the broker comes up: the buffer drains, the newest alarm is retained
        wait_until(lambda: signals.stats()["buffered"] == 0)
        sub = Subscriber(port, "plant/line1/cam1/alarm")
        assert sub.wait(lambda m: len(m) >= 1)[0][1]["seq"] == 4
        sub.close()
    finally:
        signals.close()


def test_outbox_keeps_order_and_alarms_longest():
    box = Outbox(3)
    msg = {
        n: Message(f"t/{n}", b"{}", 1, False, priority=n.startswith("a"))
        for n in ("a1", "r1", "a2", "r2", "a3")
    }
    for n in ("a1", "r1", "a2", "r2"):
        box.put(msg[n])  # full at 3: r1 (oldest ordinary) dropped
    box.put(msg["a3"])  # r2 dropped
    assert (len(box), box.dropped, box.dropped_priority) == (3, 2, 0)
    first = box.pop()
    box.put_front(first)  # a message that could not be sent goes out first
    assert [box.pop() for _ in range(4)] == [msg["a1"], msg["a2"], msg["a3"], None]


def test_credentials_come_from_env_and_are_not_logged(broker, tmp_path, monkeypatch, caplog):
    if not os.access(MOSQUITTO_PASSWD, os.X_OK):
        unavailable("mosquitto_passwd is not installed (Debian: apt-get install mosquitto)")
    secret = "s3cret-line1-pw"
    pwfile = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(pwfile), "lensline", secret], check=True)
    pwfile.chmod(0o600)
    b = broker(password_file=pwfile)
    caplog.set_level("DEBUG")

    monkeypatch.setenv("LENSLINE_MQTT_USERNAME", "lensline")
    monkeypatch.setenv("LENSLINE_MQTT_PASSWORD", "wrong-" + secret)
    refused = MqttSignals(fast(b.url), box="b1", cameras=["cam1"])
    monkeypatch.setenv("LENSLINE_MQTT_PASSWORD", secret)
    signals = MqttSignals(fast(b.url), box="b2", cameras=["cam1"])
    sub = Subscriber(b.port, "plant/line1/cam1/alarm", auth=("lensline", secret))
    try:
        signals.alarm("cam1", ALARM)
        assert sub.wait(lambda m: len(m) >= 1)[0][1]["box"] == "b2"
        wait_until(lambda: refused.stats()["outages"] == 1)
        assert "refused" in refused.stats()["last_error"] and not refused.stats()["connected"]
    finally:
        sub.close()
        signals.close()
        refused.close()
    shown = (
        caplog.text
        + repr(signals)
        + repr(signals._credentials)
        + str(signals.stats())
        + str(refused.stats())
    )
    assert secret not in shown and "MQTT" in caplog.text  # paho's own log went through ours


def _pki(root: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (cryptography)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def cert(name, key, issuer, issuer_key, *, ca=False, san=None):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(name, key, crt) -> tuple[Path, Path]:
        k, c = root / f"{name}.key", root / f"{name}.crt"
        k.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        k.chmod(0o600)
        c.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
        return k, c

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lensline test CA")])
    ca = cert("lensline test CA", ca_key, ca_name, ca_key, ca=True)
    _, ca_crt = write("ca", ca_key, ca)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    srv_k, srv_c = write("server", srv_key, cert("127.0.0.1", srv_key, ca_name, ca_key, san=san))
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli_k, cli_c = write("client", cli_key, cert("box-b1", cli_key, ca_name, ca_key))
    return {"ca": ca_crt, "server_cert": srv_c, "server_key": srv_k, "cert": cli_c, "key": cli_k}


def test_tls_with_a_client_certificate_from_the_environment(broker, tmp_path, monkeypatch):
    """``mqtts://`` to a broker that requires client certificates: CA, certificate and key come
    from LENSLINE_MQTT_CA / _CERT / _KEY; without the CA the broker's certificate is not trusted,
    which is an outage counted (inspection never blocks), not a crash."""
    pki = _pki(tmp_path / "pki")
    b = broker(
        tls={"cafile": pki["ca"], "certfile": pki["server_cert"], "keyfile": pki["server_key"]}
    )
    url = f"mqtts://127.0.0.1:{b.port}"
    monkeypatch.setenv("LENSLINE_MQTT_CA", str(pki["ca"]))
    monkeypatch.setenv("LENSLINE_MQTT_CERT", str(pki["cert"]))
    monkeypatch.setenv("LENSLINE_MQTT_KEY", str(pki["key"]))
    signals = MqttSignals(fast(url), box="b1", cameras=["cam1"])
    monkeypatch.delenv("LENSLINE_MQTT_CA")
    monkeypatch.delenv("LENSLINE_MQTT_CERT")
    monkeypatch.delenv("LENSLINE_MQTT_KEY")
    untrusted = MqttSignals(fast(url), box="b2", cameras=["cam1"])  # system CAs only
    sub = Subscriber(b.port, "plant/line1/cam1/alarm", tls=pki)
    try:
        signals.alarm("cam1", ALARM)
        got = sub.wait(lambda m: len(m) >= 1)[0]
        assert got[1]["box"] == "b1" and got[1]["state"] == "raised" and got[2] == 1
        started = time.monotonic()
        untrusted.alarm("cam1", ALARM)  # buffered, never blocking
        assert time.monotonic() - started < 0.1
        wait_until(lambda: untrusted.stats()["outages"] >= 1)
        assert not untrusted.stats()["connected"] and untrusted.stats()["buffered"] >= 1
        assert signals.stats()["connected"]
    finally:
        sub.close()
        signals.close()
        untrusted.close()


# -- OPC UA -------------------------------------------------------------------------------------


def test_opcua_client_reads_and_subscribes_to_camera_variables():
    from asyncua import Client

    port = free_port()
    signals = OpcUaSignals(
        OpcUaConfig(endpoint=f"opc.tcp://127.0.0.1:{port}/lensline/"), box="b1", cameras=["cam1"]
    )
    try:
        signals.camera_state("cam1", "online")
        signals.result("cam1", {"label": "good", "confidence": 0.91, "model_version": "m-7"})
        signals.heartbeat("cam1", {"fps": 29.5})
        wait_until(lambda: signals.stats()["pending"] == 0)

        async def client_side() -> list[bool]:
            async with Client(f"opc.tcp://127.0.0.1:{port}/lensline/", timeout=5) as client:
                ns = await client.get_namespace_index("urn:lensline:edge")
                cam = await client.nodes.objects.get_child([f"{ns}:Lensline", f"{ns}:cam1"])
                values = {
                    name: await (await cam.get_child(f"{ns}:{name}")).read_value()
                    for name in (
                        "state",
                        "last_label",
                        "confidence",
                        "model_version",
                        "fps",
                        "alarm",
                    )
                }
                assert values == {
                    "state": "online",
                    "last_label": "good",
                    "confidence": 0.91,
                    "model_version": "m-7",
                    "fps": 29.5,
                    "alarm": False,
                }
                seen: asyncio.Queue[bool] = asyncio.Queue()

                class Handler:
                    def datachange_notification(self, node, val, data):
                        seen.put_nowait(val)

                sub = await client.create_subscription(50, Handler())
                await sub.subscribe_data_change(client.get_node(f"ns={ns};s=Lensline.cam1.alarm"))
                changes = [await asyncio.wait_for(seen.get(), 5)]  # the current value first
                t0 = time.perf_counter()
                signals.alarm(
                    "cam1", {"state": "raised", "class": "scratch", "model_version": "m-7"}
                )
                assert time.perf_counter() - t0 < 0.05
                changes.append(await asyncio.wait_for(seen.get(), 5))
                signals.alarm("cam1", {"state": "cleared", "class": "scratch"})
                changes.append(await asyncio.wait_for(seen.get(), 5))
                assert (
                    await client.get_node(f"ns={ns};s=Lensline.cam1.alarm_class").read_value()
                    == "scratch"
                )
                return changes

        assert asyncio.run(client_side()) == [False, True, False]
    finally:
        signals.close()
    assert not signals.stats()["running"] and signals.stats()["dropped"] == 0


# -- the interface ------------------------------------------------------------------------------


def test_registry_fanout_and_config_errors_name_the_field():
    assert {k: cls.kind for k, cls in REGISTRY.items()} == {"mqtt": "mqtt", "opcua": "opcua"}
    a, b = RecordingSignals(), RecordingSignals()
    fan = Fanout([a, b])
    fan.camera_state("cam1", "stalled", gap_s=3.0)
    fan.alarm("cam1", ALARM)
    fan.result("cam1", {"label": "good"})
    fan.heartbeat("b1", {"fps": 1.0})
    fan.close()
    assert a.calls == b.calls and [c[0] for c in a.calls] == [
        "camera_state",
        "alarm",
        "result",
        "heartbeat",
    ]
    assert fan.stats() == {"recording": {"calls": 4}} and a.closed and b.closed
    with pytest.raises(ValueError, match="camera state"):
        fan.camera_state("cam1", "sleepy")
    with pytest.raises(ValueError, match="alarm state"):
        fan.alarm("cam1", {"state": "on"})
    assert build_signals({"box": "b1"}, box="b1").sinks == []

    for config, field in [
        ({"mqtt": {"url": "http://127.0.0.1"}}, "mqtt.url"),
        ({"mqtt": {"url": "mqtt://user:pw@127.0.0.1"}}, "mqtt.url"),
        ({"mqtt": {"topic_prefix": "a"}}, "mqtt.url"),
        ({"mqtt": {"url": "mqtt://127.0.0.1", "qos": 3}}, "mqtt.qos"),
        ({"mqtt": {"url": "mqtt://127.0.0.1", "topic_prefix": "a/#"}}, "mqtt.topic_prefix"),
        ({"mqtt": {"url": "mqtt://127.0.0.1", "buffer": 0}}, "mqtt.buffer"),
        ({"mqtt": {"url": "mqtt://127.0.0.1", "colour": 1}}, "mqtt.colour"),
        (
            {"mqtt": {"url": "mqtt://127.0.0.1"}, "opcua": {"endpoint": "tcp://x:1"}},
            "opcua.endpoint",
        ),
    ]:
        with pytest.raises(SignalsConfigError, match=field.replace(".", r"\.")):
            build_signals(config, box="b1", cameras=["cam1"])


def test_package_imports_no_heavy_dependency():
    code = "import sys, edge_export.signals; print(sorted(m for m in ('asyncua', 'torch', 'dagster', 'polars', 'numpy') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"

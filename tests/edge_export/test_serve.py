"""``lensline-edge serve`` on real parts: signed bundles deployed through the lake's desired
state, a looping video as the live source, a real Mosquitto broker, the service's own segments
and ``shadow_comparison`` reading them back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from edge_export.bundle import build_bundle, generate_signing_key
from edge_export.fsutil import sha256_file
from edge_export.postprocess import AlarmRules
from edge_export.service.cli import build
from edge_export.service.config import ConfigError, parse
from lake.deployments import deploy, publish, rollback
from lake.storage import LensStorage
from tests.conftest import free_port
from tests.edge_export.conftest import write_video_levels
from tests.edge_export.test_signals import Subscriber, broker  # noqa: F401 - the real broker fixture
from training.preprocess import PreprocessSpec

REPO = Path(__file__).resolve().parents[2]
LEVELS = [200] * 6 + [30] * 6 + [220] * 4 + [20] * 4  # 20 frames: scratch, good, scratch, good


@pytest.fixture(scope="module")
def keys():
    return generate_signing_key(), generate_signing_key()


@pytest.fixture
def lake(brightness_onnx, keys, home, tmp_path):
    """``lake(version)``: a signed bundle of the brightness model stored with its edge_bundles row."""
    storage = LensStorage()

    def _add(version: str, model: Path | None = None) -> Path:
        info = build_bundle(
            tmp_path / "build" / version / "bundle.tar.gz",
            files={"model.onnx": model or brightness_onnx.path}, model_version=version,
            classes=brightness_onnx.classes, preprocess=PreprocessSpec(image_size=32),
            postprocess=AlarmRules(raise_after=2, clear_after=2), model_card={},
            lineage={"model": version}, targets={"onnx": "ok"},
            signing_key=keys[0][0], created_at="2026-01-02T03:04:05+00:00",
        )  # fmt: skip
        uri = storage.uri("artifacts", "bundles", version, "bundle.tar.gz")
        storage.write_bytes(uri, Path(info.path).read_bytes())
        row = {"model_version": [version], "uri": [uri], "sha256": [sha256_file(info.path)],
               "targets": ['{"onnx": "ok"}'], "signed": [True]}  # fmt: skip
        storage.write_table(
            pl.DataFrame(row).with_columns(pl.lit(None).alias("created_at")),
            "edge_bundles",
            replace_where=storage.eq_predicate("model_version", version),
        )
        return Path(info.path)

    def _deploy(champion=None, shadow=None, *, by="test", key=None, reason="") -> None:
        """Deploy to box b1 and publish its desired state (signed with ``key``)."""
        if champion:
            deploy(storage, champion, box="b1", by=by, reason=reason)
        if shadow:
            deploy(storage, shadow, box="b1", role="shadow", by=by)
        publish(storage, "b1", signing_key=key or keys[0][0])

    _add.storage = storage  # type: ignore[attr-defined]
    _add.deploy = _deploy  # type: ignore[attr-defined]
    return _add


@pytest.fixture
def clip(tmp_path):
    return write_video_levels(tmp_path / "clip" / "cam1.mp4", LEVELS, fps=20)


def _config(home: Path, tmp_path: Path, keys, clip: Path, **extra) -> dict:
    pub = tmp_path / "trusted.pem"
    pub.write_bytes(keys[0][1])
    return {
        "box": "b1",
        "deployments": str(home),
        "trusted_key": str(pub),
        "cameras": [{"id": "cam1", "source": str(clip), "loop": True}],
        "out": str(tmp_path / "out"),
        "poll_s": 0.2,
        "heartbeat_s": 0.5,
        "segment_s": 1.0,
        "batch": 4,
        "queue": 256,
        **extra,
    }


class Running:
    """The service on a thread; ``wait(pred)`` polls it; ``stop()`` ends it like SIGTERM would."""

    def __init__(self, config: dict):
        self.service = build(parse(config))
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def frames(self) -> int:
        return sum(r.frames for r in list(self.service.cameras.values()))

    def wait(self, predicate, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.service):
                return
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}: {self.service.swaps} {self.service.refusals}"
        )

    def stop(self) -> None:
        self.service.stop_event.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


def _rows(out: Path, kind: str = "results") -> list[dict]:
    files = sorted((out / kind / "cam1").glob("*.jsonl"))
    assert not list((out / kind / "cam1").glob("*.part")), "a segment was left open"
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def _live_rows(out: Path) -> list[dict]:
    """Rows written so far (open segments included), while the service runs."""
    files = sorted((out / "results" / "cam1").glob("*.jsonl*"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line]


def _frames_since(n: int):
    return lambda s: sum(r.frames for r in s.cameras.values()) >= n


def test_hot_swap_inspects_every_frame_once_old_model_then_new(lake, keys, home, tmp_path, clip):
    lake("m-001"), lake("m-002")
    lake.deploy("m-001")
    run = Running(_config(home, tmp_path, keys, clip))
    try:
        run.wait(_frames_since(30), what="30 frames on m-001")
        lake.deploy("m-002", reason="better")
        run.wait(lambda s: len(s.swaps) >= 2, what="the swap to m-002")
        at = run.frames()
        run.wait(_frames_since(at + 30), what="30 frames on m-002")
    finally:
        run.stop()
    rows = _rows(tmp_path / "out")
    seqs = [r["frame_index"] for r in rows]
    stats = run.service.sources["cam1"].stats()
    assert seqs == sorted(set(seqs)), "a frame repeated or out of order"
    assert len(rows) == stats["delivered"] and stats["dropped"] == 0  # nothing lost either
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    versions = [r["model_version"] for r in rows]
    switch = versions.index("m-002")
    assert set(versions[:switch]) == {"m-001"} and set(versions[switch:]) == {"m-002"}
    assert run.service.swaps[-1]["to"] == ("m-002", None)
    assert run.service.swaps[-1]["pause_s"] < 0.05  # loaded and warmed before the swap
    # the same answers as lensline-edge run on the same video, frame for frame
    labels = ["scratch" if v > 128 else "good" for v in LEVELS]
    assert all(r["label"] == labels[r["frame_index"] % len(LEVELS)] for r in rows)


def test_a_tampered_deployment_is_refused_and_a_rollback_swaps_back_from_the_cache(
    lake, keys, home, tmp_path, clip
):
    lake("m-001"), lake("m-002")
    storage = lake.storage
    lake.deploy("m-001")
    run = Running(_config(home, tmp_path, keys, clip))
    try:
        run.wait(_frames_since(10), what="frames on m-001")
        lake.deploy("m-002", by="mallory", key=keys[1][0])  # a key the box does not trust
        run.wait(lambda s: s.refusals, what="a refusal")
        at = run.frames()
        run.wait(_frames_since(at + 10), what="frames after the refusal")
        assert {v for r in _live_rows(tmp_path / "out") for v in [r["model_version"]]} == {"m-001"}
        lake.deploy()  # the same state, signed properly
        run.wait(lambda s: len(s.swaps) >= 2, what="the swap to m-002")
        at = run.frames()
        run.wait(_frames_since(at + 10), what="frames on m-002")
        cached = sorted(p.name for p in (tmp_path / "out" / "cache").rglob("*.tar.gz"))
        rollback(storage, box="b1", by="test", reason="bad challenger")
        publish(storage, "b1", signing_key=keys[0][0])
        run.wait(lambda s: len(s.swaps) >= 3, what="the rollback to m-001")
        at = run.frames()
        run.wait(_frames_since(at + 10), what="frames after the rollback")
    finally:
        run.stop()
    refusal = " ".join(run.service.refusals)
    assert "sign" in refusal, refusal
    assert [s["to"][0] for s in run.service.swaps] == ["m-001", "m-002", "m-001"]
    assert sorted(p.name for p in (tmp_path / "out" / "cache").rglob("*.tar.gz")) == cached
    versions = [r["model_version"] for r in _rows(tmp_path / "out")]
    changes = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
    assert changes == ["m-001", "m-002", "m-001"]  # in frame order, each frame once


def test_a_shadow_deployment_reaches_shadow_results_through_the_lake(
    lake, keys, home, tmp_path, clip
):
    import dagster as dg

    from assets.bundle import shadow_comparison

    lake("m-001"), lake("m-002")
    storage = lake.storage
    lake.deploy("m-001", shadow="m-002")
    run = Running(_config(home, tmp_path, keys, clip, segment_s=0.5))
    try:
        run.wait(_frames_since(40), what="frames with a shadow")
    finally:
        run.stop()
    shadow = _rows(tmp_path / "out", "shadow")
    assert shadow and all(r["shadow_model_version"] == "m-002" for r in shadow)
    assert all(r["shadow_label"] == r["label"] for r in shadow)  # the same model, two versions
    landed = list((home / "landing" / "shadow" / "b1").glob("*.jsonl"))
    assert landed, "closed shadow segments are published to the landing zone"
    from orchestration.sensors import shadow_sensor

    with dg.build_sensor_context() as context:
        request = shadow_sensor(context, storage=LensStorage())
    assert request.run_requests, "shadow_sensor asks for shadow_comparison"
    result = dg.materialize([shadow_comparison], resources={"storage": LensStorage()})
    assert result.success
    table = storage.read_table("shadow_results")
    assert table.height == len(shadow) and set(table["shadow_model_version"]) == {"m-002"}


def test_alarms_reach_an_mqtt_subscriber(lake, keys, home, tmp_path, clip, broker):  # noqa: F811
    lake("m-001")
    lake.deploy("m-001")
    b = broker()
    sub = Subscriber(b.port, "line1/#")
    mqtt = {"url": b.url, "topic_prefix": "line1", "qos": 1}
    port = free_port()
    opcua = {"endpoint": f"opc.tcp://127.0.0.1:{port}/lensline/"}
    run = Running(_config(home, tmp_path, keys, clip, mqtt=mqtt, opcua=opcua))
    try:
        sub.wait(
            lambda m: any(t == "line1/cam1/alarm" and p["state"] == "raised" for t, p, *_ in m)
        )
        sub.wait(lambda m: any(t == "line1/cam1/heartbeat" for t, *_ in m))
    finally:
        run.stop()
        sub.client.loop_stop()
    alarm = next(p for t, p, *_ in sub.messages if t == "line1/cam1/alarm")
    assert alarm["class"] == "scratch" and alarm["model_version"] == "m-001"


def _opcua_values(port: int) -> dict:
    import asyncio

    from asyncua import Client

    async def read() -> dict:
        async with Client(f"opc.tcp://127.0.0.1:{port}/lensline/", timeout=5) as client:
            ns = await client.get_namespace_index("urn:lensline:edge")
            cam = await client.nodes.objects.get_child([f"{ns}:Lensline", f"{ns}:cam1"])
            names = ("state", "last_label", "alarm", "model_version", "fps")
            return {n: await (await cam.get_child(f"{ns}:{n}")).read_value() for n in names}

    return asyncio.run(read())


def test_bad_config_exits_3_naming_every_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"box": "b 1", "cameras": [{"id": "c1", "source": "ftp://x"}]}))
    out = subprocess.run(
        [sys.executable, "-m", "edge_export.runner", "serve", str(bad)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert out.returncode == 3, out.stderr
    for field in ("deployments: missing", "out: missing", "box: 'b 1'", "cameras[0].source"):
        assert field in out.stderr
    with pytest.raises(ConfigError, match="cameras: missing"):
        parse({"box": "b1", "deployments": "/x", "out": "/y"})


def test_sigterm_flushes_the_segments_and_exits_0(lake, keys, home, tmp_path, clip):
    lake("m-001")
    lake.deploy("m-001")
    cfg = tmp_path / "box.yaml"
    cfg.write_text(yaml.safe_dump(_config(home, tmp_path, keys, clip, segment_s=3600)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_export.runner", "serve", str(cfg)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(
            (tmp_path / "out" / "results").rglob("*.part")
        ):
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    rows = _rows(tmp_path / "out")
    assert rows and "SIGTERM" in err and "frames inspected" in err


def test_disagreeing_frames_land_as_a_bounded_capture_video(lake, keys, home, tmp_path, clip):
    """A shadow that disagrees (an inverted brightness model): its disagreeing frames, at most
    ``shadow_disagreements_per_hour``, land in landing/videos/<camera>/ as one capture video with
    a sidecar mapping each capture frame to the live frame and both answers."""
    import av

    from tests.edge_export.conftest import make_brightness_onnx

    lake("m-001"), lake("m-009", make_brightness_onnx(tmp_path / "inverted.onnx", k=-4.0))
    lake.deploy("m-001", shadow="m-009")
    run = Running(_config(home, tmp_path, keys, clip, shadow_disagreements_per_hour=5))
    try:
        run.wait(_frames_since(30), what="frames with a disagreeing shadow")
    finally:
        run.stop()
    videos = list((home / "landing" / "videos" / "cam1").glob("shadow-b1-*.mp4"))
    assert len(videos) == 1
    with av.open(str(videos[0])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
    sidecar = json.loads(
        next((home / "landing" / "captures" / "b1" / "cam1").glob("*.json")).read_text()
    )
    frames = sidecar["frames"]
    assert [f["capture_frame_index"] for f in frames] == list(range(5))
    assert all(
        f["label"] != f["shadow_label"] and f["shadow_model_version"] == "m-009" for f in frames
    )
    assert run.service.capture.stats()["over_hourly_bound"] > 0


def test_live_inspection_agrees_with_lensline_edge_run(lake, keys, home, tmp_path, clip):
    """The same bundle, the same video: the service and ``lensline-edge run`` give the same label
    and confidence on every frame (the looping file's frame k is live frame seq % len)."""
    from edge_export.runner import main as edge_main

    bundle = lake("m-001")
    lake.deploy("m-001")
    out = tmp_path / "run.jsonl"
    assert edge_main(["run", str(bundle), str(clip), "--out", str(out), "--quiet"]) == 0
    batch = {r["frame_index"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert len(batch) == len(LEVELS)
    run = Running(_config(home, tmp_path, keys, clip))
    try:
        run.wait(_frames_since(2 * len(LEVELS)), what="two loops of the clip")
    finally:
        run.stop()
    rows = _rows(tmp_path / "out")
    for r in rows:
        ref = batch[r["frame_index"] % len(LEVELS)]
        assert (r["label"], r["quality"]) == (ref["label"], ref["quality"])
        assert abs(r["confidence"] - ref["confidence"]) < 1e-5

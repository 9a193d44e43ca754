"""Capture requests on the box: crafted frames through :class:`CaptureEngine`, the signed
document through :class:`RequestsWatcher` (real signing keys, real MP4 files)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest

from edge_export.bundle import generate_signing_key, load_trusted_key
from edge_export.service.requests import (
    CaptureEngine,
    CaptureSettings,
    Request,
    RequestsWatcher,
    _one_in,
)

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _request(policy: str = "uncertain", **kw) -> Request:
    base: dict[str, Any] = dict(request_id="cr-00001", camera="cam1", policy=policy, reason="test",
                per_hour=1000, max_bytes=10**9, expires_at=T0 + 86400)  # fmt: skip
    defaults: dict[str, dict[str, Any]] = {"uncertain": {"margin": 0.2}, "random": {"every_n": 5},
                                           "alarm_clip": {"before_s": 1.0, "after_s": 1.0}}  # fmt: skip
    return Request(**{**base, **defaults.get(policy, {}), **kw})


def _frame(seq: int, t: float, *, camera: str = "cam1", seed: int | None = None):
    rng = np.random.default_rng(seq if seed is None else seed)
    bgr = rng.integers(0, 255, (48, 64, 3), np.uint8)
    return SimpleNamespace(camera_id=camera, bgr=bgr, seq=seq, captured_at=t)


def _row(f, *, label="good", shadow=None, alarm=None) -> dict:
    return {"frame_index": f.seq, "captured_at": f.captured_at, "model_version": "m-001",
            "label": label, "confidence": 0.9, "shadow_label": shadow, "alarm_event": alarm}  # fmt: skip


def _offer(engine: CaptureEngine, seq: int, t: float) -> int:
    f = _frame(seq, t)
    return engine.offer(f, _row(f))


def _engine(tmp_path: Path, clock: Clock, *requests: Request, **settings) -> CaptureEngine:
    engine = CaptureEngine(tmp_path / "cap", "b1", settings=CaptureSettings(**settings),
                           clock=clock, log=lambda m: None)  # fmt: skip
    engine.set_requests(requests)
    return engine


def _videos(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cap").rglob("*.mp4"))


def _decoded(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_nothing_is_captured_without_a_request(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path, clock)
    for i in range(50):
        f = _frame(i, clock.t)
        assert engine.offer(f, _row(f, shadow="scratch", alarm="raised"), margin=0.0) == 0
        clock.t += 0.1
    engine.set_requests([_request(camera="cam2")])  # another camera's request
    for i in range(50, 60):
        f = _frame(i, clock.t)
        assert engine.offer(f, _row(f), margin=0.0) == 0
    engine.close()
    assert _videos(tmp_path) == []


def test_each_policy_keeps_the_frames_it_asks_for(tmp_path):
    clock = Clock()
    requests = [
        _request("uncertain", request_id="u", margin=0.2),
        _request("shadow_disagree", request_id="s"),
        _request("random", request_id="r", every_n=4),
    ]
    engine = _engine(tmp_path, clock, *requests)
    margins = [0.05, 0.5, 0.19, 0.2, 0.9] * 8
    expected = {"u": [], "s": [], "r": []}
    for i, m in enumerate(margins):
        f = _frame(i, clock.t)
        disagree = i % 3 == 0
        engine.offer(f, _row(f, shadow="scratch" if disagree else "good"), margin=m)
        expected["u"] += [i] if m < 0.2 else []
        expected["s"] += [i] if disagree else []
        expected["r"] += [i] if _one_in(4, "r", "cam1", i) else []
        clock.t += 0.5
    engine.close()
    assert 4 <= len(expected["r"]) <= 20  # about 1 in 4, the same frames on every run
    for rid, seqs in expected.items():
        (video,) = [v for v in _videos(tmp_path) if v.name.startswith(f"req-{rid}-b1-cam1-")]
        side = json.loads(video.with_suffix(".json").read_text())
        assert [r["frame_index"] for r in side["frames"]] == seqs, rid
        assert side["request_id"] == rid and side["frame_count"] == len(seqs)
        assert side["bytes"] == video.stat().st_size and side["model_versions"] == ["m-001"]
        assert _decoded(video) == len(seqs)  # a real video: every kept frame decodes
        stats = engine.stats()["requests"][rid]
        assert stats["frames"] == len(seqs) and stats["skipped_budget"] == 0


def test_the_margin_comes_from_the_model_when_not_given(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path, clock, _request("uncertain", margin=0.3))
    model = SimpleNamespace(last_margins=np.array([0.9, 0.1, 0.5], np.float32))
    kept = [engine.offer(f := _frame(i, clock.t), _row(f), model, i) for i in range(3)]
    assert kept == [0, 1, 0]


@pytest.mark.parametrize("seed", range(6))
def test_a_request_never_exceeds_its_hourly_cap_or_its_bytes(tmp_path, seed):
    """Property-style: random budgets, frame rates, sizes and policies over simulated hours;
    the files on disk stay within max_bytes and no sliding hour holds more than per_hour."""
    rng = np.random.default_rng(seed)
    clock = Clock()
    per_hour = int(rng.integers(1, 40))
    max_bytes = int(rng.integers(20_000, 400_000))
    policy = ["uncertain", "random", "shadow_disagree"][seed % 3]
    engine = _engine(tmp_path, clock, _request(policy, per_hour=per_hour, max_bytes=max_bytes,
                                               every_n=2), max_clip_s=600)  # fmt: skip
    kept_at: list[float] = []
    for i in range(int(rng.integers(600, 1200))):
        f = _frame(i, clock.t, seed=int(rng.integers(1 << 30)))
        if rng.random() < 0.3:  # some frames compress far better than others
            f.bgr[:] = int(rng.integers(0, 255))
        if engine.offer(f, _row(f, shadow="x"), margin=float(rng.random()) * 0.4):
            kept_at.append(clock.t)
        clock.t += float(rng.exponential(20.0))
    engine.close()
    total = sum(v.stat().st_size for v in _videos(tmp_path))
    stats = engine.stats()["requests"]["cr-00001"]
    assert 0 < total <= max_bytes and stats["bytes"] == total
    assert all(sum(1 for u in kept_at if t <= u < t + 3600) <= per_hour for t in kept_at)
    assert stats["frames"] == len(kept_at) and stats["skipped_budget"] > 0
    assert sum(_decoded(v) for v in _videos(tmp_path)) == len(kept_at)


def test_expiry_and_cancel_stop_at_once(tmp_path):
    clock = Clock()
    soon = _request("random", request_id="soon", every_n=1, expires_at=T0 + 10)
    later = _request("random", request_id="later", every_n=1)
    engine = _engine(tmp_path, clock, soon, later)
    counts = []
    for i in range(30):
        f = _frame(i, clock.t)
        counts.append(engine.offer(f, _row(f)))
        if i == 19:
            engine.set_requests([soon])  # "later" cancelled (withdrawn from the document)
        clock.t += 1.0
    assert counts[:10] == [2] * 10 and counts[10:20] == [1] * 10 and counts[20:] == [0] * 10
    stats = engine.stats()["requests"]
    assert stats["soon"]["frames"] == 10 and stats["soon"]["ended"] == "expired"
    assert stats["later"]["frames"] == 20 and stats["later"]["ended"] == "cancelled"
    assert not list((tmp_path / "cap").rglob("*.part"))  # their videos were closed at once
    engine.close()


def test_alarm_clips_hold_frames_before_and_after_the_alarm(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path, clock, _request("alarm_clip", before_s=1.0, after_s=1.5))
    for i in range(40):  # 10 frames a second; the alarm is raised at frame 20
        f = _frame(i, clock.t)
        engine.offer(f, _row(f, alarm="raised" if i == 20 else None))
        clock.t += 0.1
    engine.close()
    (video,) = _videos(tmp_path)
    seqs = [r["frame_index"] for r in json.loads(video.with_suffix(".json").read_text())["frames"]]
    assert seqs == list(range(10, 36))  # 1 s before (10 frames), the alarm, 1.5 s after
    assert _decoded(video) == len(seqs)
    assert engine.stats()["requests"]["cr-00001"]["clips"] == 1


def test_alarm_clips_are_capped_per_hour(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path, clock, _request("alarm_clip", per_hour=2, before_s=0, after_s=0))
    for i in range(10):
        f = _frame(i, clock.t)
        engine.offer(f, _row(f, alarm="raised"))
        clock.t += 60
    engine.close()
    stats = engine.stats()["requests"]["cr-00001"]
    assert stats["clips"] == 2 and stats["skipped_budget"] == 8 and len(_videos(tmp_path)) == 2


def test_what_was_sent_survives_a_restart(tmp_path):
    clock = Clock()
    req = _request("random", every_n=1, per_hour=5)
    engine = _engine(tmp_path, clock, req)
    for i in range(5):
        _offer(engine, i, clock.t)
    engine.close()
    again = _engine(tmp_path, clock, req)  # the service restarted within the hour
    assert sum(_offer(again, i, clock.t) for i in range(5, 10)) == 0
    assert again.stats()["requests"]["cr-00001"]["skipped_budget"] == 5


def _publish(home: Path, key: bytes, **kw) -> Path:
    from lake.capture_requests import publish, request
    from lake.storage import LensStorage

    storage = LensStorage()
    args = dict(camera="cam1", policy="random", every_n=1, per_hour=100, max_bytes=10**7,
                expires_in=timedelta(hours=1), reason="test", created_by="t")  # fmt: skip
    request(storage, **{**args, **kw})
    return Path(publish(storage, signing_key=key).uri)


def test_a_tampered_request_document_is_refused_and_the_running_requests_keep_going(home, tmp_path):
    (key, pub), (other, _) = generate_signing_key(), generate_signing_key()
    doc = _publish(home, key)
    watcher = RequestsWatcher(doc.read_bytes, trusted=load_trusted_key(pub), cameras=["cam1"])
    clock = Clock(datetime.now(UTC).timestamp())
    engine = CaptureEngine(tmp_path / "cap", "b1", watcher=watcher, clock=clock, log=print,
                           settings=CaptureSettings(poll_s=0))  # fmt: skip
    engine.poll()
    assert _offer(engine, 0, clock.t) == 1
    signed = json.loads(doc.read_text())
    tampered = json.loads(doc.read_text())
    tampered["payload"]["requests"][0]["max_bytes"] = 10**12  # a bigger budget, not signed
    doc.write_text(json.dumps(tampered))
    engine.poll()
    assert "bad signature" in watcher.problems[-1]
    assert _offer(engine, 1, clock.t) == 1  # the signed request goes on
    assert engine.states["cr-00001"].request.max_bytes == 10**7
    _publish(home, other, camera="cam2")  # signed by a key the box does not trust
    engine.poll()
    assert "not by the trusted key" in watcher.problems[-1]
    unsigned = {**signed, "signature": {"algorithm": "none"}}
    doc.write_text(json.dumps(unsigned))
    engine.poll()
    assert "unsigned" in watcher.problems[-1]
    assert _offer(engine, 2, clock.t) == 1
    engine.close()
    assert engine.stats()["refused"] == watcher.problems[-1]


def test_a_withdrawn_document_means_no_requests(home, tmp_path):
    (key, pub) = generate_signing_key()
    doc = _publish(home, key)
    watcher = RequestsWatcher(doc.read_bytes, trusted=load_trusted_key(pub), cameras=["cam1"])
    assert [r.request_id for r in watcher.poll() or []] == ["cr-00001"]
    assert watcher.poll() is None  # unchanged
    doc.unlink()
    assert watcher.poll() == []


def test_the_byte_budget_holds_on_disk_whatever_the_frames(tmp_path):
    clock = Clock()
    engine = _engine(tmp_path, clock, _request("random", every_n=1, max_bytes=30_000), max_clip_s=5)
    for i in range(200):
        _offer(engine, i, clock.t)
        clock.t += 1.0
    engine.close()
    videos = _videos(tmp_path)
    stats = engine.stats()["requests"]["cr-00001"]
    assert len(videos) >= 1 and sum(v.stat().st_size for v in videos) <= 30_000
    assert stats["skipped_budget"] > 150 and stats["frames"] == sum(map(_decoded, videos))


def test_the_service_config_section_is_validated_field_by_field():
    from edge_export.service.config import ConfigError, parse

    base = {"box": "b1", "deployments": "/srv", "out": "/o",
            "cameras": [{"id": "cam1", "source": "/v.mp4"}]}  # fmt: skip
    assert parse(base).capture_requests == CaptureSettings()
    good = parse({**base, "capture_requests": {"poll_s": 2, "max_clip_s": 30, "out": "/cap"}})
    assert (good.capture_requests.poll_s, good.capture_requests.out) == (2.0, "/cap")
    bad = {"poll_s": 0, "ring_frames": 1.5, "jpeg_quality": 101, "colour": "red"}
    with pytest.raises(ConfigError) as err:
        parse({**base, "capture_requests": bad})
    text = "; ".join(err.value.problems)
    for field in ("poll_s", "ring_frames", "jpeg_quality", "colour"):
        assert f"capture_requests.{field}:" in text


def test_a_capture_that_cannot_be_written_ends_its_request_never_the_line(tmp_path):
    clock = Clock()
    (tmp_path / "cap").write_text("a file where the capture folder should be")
    logged: list[str] = []
    engine = CaptureEngine(tmp_path / "cap", "b1", clock=clock, log=logged.append)
    engine.set_requests([_request("random", every_n=1)])
    assert [_offer(engine, i, clock.t) for i in range(3)] == [0, 0, 0]  # no exception
    assert engine.stats()["requests"]["cr-00001"]["ended"].startswith("failed: ")
    assert any("failed" in m for m in logged)
    engine.close()


def test_the_service_reads_requests_beside_its_desired_state_on_s3(s3_env, tmp_path):
    from edge_export.service.config import parse
    from edge_export.service.deploy import DesiredStateWatcher

    key, pub = generate_signing_key()
    _publish(tmp_path, key)  # the lake (LENSLINE_STORAGE: the moto S3 prefix) publishes
    config = parse({"box": "b1", "deployments": s3_env, "out": str(tmp_path / "out"),
                    "cameras": [{"id": "cam1", "source": "/v.mp4"}]})  # fmt: skip
    deployments = DesiredStateWatcher(s3_env, "b1", trusted_key=pub, cache_dir=tmp_path / "c")
    engine = CaptureEngine.for_service(config, deployments, log=lambda m: None)
    engine.poll()
    assert _offer(engine, 0, datetime.now(UTC).timestamp()) == 1
    assert engine.root == tmp_path / "out" / "requests"
    engine.close()


def test_the_lines_caps_bound_all_requests_of_a_camera_together(tmp_path):
    """lines/<box>.json's capture caps (max_per_hour, max_mb_per_hour) hold across every request
    of a camera, however generous each request is; another camera keeps its own hour."""
    from edge_export.service.line_doc import CaptureLimits

    clock = Clock()
    generous = [_request("random", request_id=f"g{i}", every_n=1) for i in range(3)]
    other = _request("random", request_id="o", every_n=1, camera="cam2")
    engine = _engine(tmp_path, clock, *generous, other)
    engine.limits = CaptureLimits(max_per_hour=10, max_mb_per_hour=50.0)
    kept_at: list[float] = []
    for i in range(400):
        f = _frame(i, clock.t)
        kept_at += [clock.t] * engine.offer(f, _row(f))
        g = _frame(i, clock.t, camera="cam2")
        engine.offer(g, _row(g))
        clock.t += 30.0  # 400 frames over 3h20
    engine.close()
    assert all(sum(1 for u in kept_at if t <= u < t + 3600) <= 10 for t in kept_at)
    assert len(kept_at) >= 30 and engine.stats()["skipped_line_cap"] > 0
    cam2 = engine.stats()["requests"]["o"]["frames"]
    assert 30 <= cam2 <= 40  # its own 10 per hour, not eaten by cam1's requests

    engine2 = _engine(tmp_path / "bytes", clock, _request("random", request_id="b", every_n=1))
    engine2.limits = CaptureLimits(max_per_hour=1000, max_mb_per_hour=0.05)  # 50 kB an hour
    for i in range(200):
        f = _frame(i, clock.t)
        engine2.offer(f, _row(f))
        clock.t += 1.0
    engine2.close()
    assert 0 < engine2.stats()["requests"]["b"]["bytes"] <= 50_000 + 2_000  # + the clip header

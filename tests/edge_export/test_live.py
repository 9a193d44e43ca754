"""Live sources (edge_export.service.live) against real streams on 127.0.0.1.

A 5 s, 320x240, 25 fps H.264 clip whose frames carry their index as 8 black/white blocks is
served by FFmpeg as MPEG-TS over TCP, UDP and HTTP, and over RTSP: UDP transport through Debian's
``rtsp-server-perl`` (fed by ``ffmpeg -f rtsp``; it has no TCP interleaving), TCP transport
through GStreamer's RTSP server (``/usr/bin/python3`` + python3-gi, playing the clip from the
first client on, in real time). Every process is started by a fixture and stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_export.service.live import LiveSource, open_args, source_kind
from tests.conftest import free_port, unavailable

W, H, FPS, SECONDS = 320, 240, 25, 5
BLOCK = 40
FFMPEG = shutil.which("ffmpeg")
PERL_RTSP = "/usr/bin/rtsp-server-perl"
GST_PYTHON = "/usr/bin/python3"

GST_SERVER = """
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
port, clip = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( filesrc location={clip} ! qtdemux ! h264parse config-interval=-1 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam1", factory)
server.attach(None)
GLib.MainLoop().run()
"""


def frame_index(bgr: np.ndarray) -> int:
    """The index drawn into a clip frame (8 bits, most significant first, along the top)."""
    bits = [bgr[:BLOCK, i * BLOCK : (i + 1) * BLOCK].mean() > 128 for i in range(8)]
    return int("".join("1" if b else "0" for b in bits), 2)


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def drain(source: LiveSource, seconds: float) -> list:
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (f := source.get(0.1)) is not None:
            frames.append(f)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The test clip: frame i shows i in binary blocks (and as text), keyframe every 5 frames."""
    if FFMPEG is None:
        unavailable("ffmpeg is not installed (apt-get install ffmpeg)")
    import cv2

    out = tmp_path_factory.mktemp("live") / "clip.mp4"
    frames = []
    for i in range(FPS * SECONDS):
        img = np.full((H, W, 3), 90, np.uint8)
        for b in range(8):
            if (i >> (7 - b)) & 1:
                img[:BLOCK, b * BLOCK : (b + 1) * BLOCK] = 255
            else:
                img[:BLOCK, b * BLOCK : (b + 1) * BLOCK] = 0
        cv2.putText(img, str(i), (100, 150), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        frames.append(img.tobytes())
    cmd = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
        "-pix_fmt", "bgr24", "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-",
        "-c:v", "libx264", "-g", "5", "-bf", "0", "-pix_fmt", "yuv420p", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, input=b"".join(frames), check=True, timeout=60)
    return out


class Procs:
    """Processes started by a test, stopped by PID at its end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)

    def feed(self, name: str, clip: Path, out: list[str]) -> subprocess.Popen:
        """FFmpeg sending ``clip`` in a loop at its own rate to ``out`` (format and URL)."""
        assert FFMPEG is not None
        base = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1"]
        return self.spawn(name, [*base, "-i", str(clip), "-c", "copy", *out])


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    for proc in p.procs:
        p.kill(proc)


@pytest.fixture
def sources() -> Iterator[list[LiveSource]]:
    """Sources a test starts; stopped at its end."""
    started: list[LiveSource] = []
    yield started
    for s in started:
        s.stop()


def tcp_server(procs: Procs, clip: Path, port: int) -> subprocess.Popen:
    return procs.feed("tcp", clip, ["-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"])


def serve(kind: str, procs: Procs, clip: Path) -> str:
    """Start a server of ``kind`` for ``clip``; the URL to read it at."""
    port = free_port()
    if kind == "tcp":
        tcp_server(procs, clip, port)
        return f"tcp://127.0.0.1:{port}"
    if kind == "udp":
        procs.feed("udp", clip, ["-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"])
        return f"udp://127.0.0.1:{port}"
    if kind == "http":
        procs.feed("http", clip, ["-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}"])
        return f"http://127.0.0.1:{port}"
    if kind == "rtsp-udp":
        if not os.access(PERL_RTSP, os.X_OK):
            unavailable("rtsp-server-perl is not installed (apt-get install rtsp-server-perl)")
        src = free_port()
        procs.spawn(
            "rtsp-perl",
            [
                PERL_RTSP, "--serverport", str(src), "--clientport", str(port),
                "--source_listen_address", "127.0.0.1", "--client_listen_address", "127.0.0.1",
            ],
        )  # fmt: skip
        assert wait_for(lambda: _listening(src) and _listening(port), 10), "rtsp-server-perl"
        procs.feed("rtsp-feed", clip, ["-f", "rtsp", f"rtsp://127.0.0.1:{src}/cam1"])
        time.sleep(0.5)
        return f"rtsp://127.0.0.1:{port}/cam1"
    if kind == "rtsp-tcp":
        rtsp_server(procs, clip, port)
        return f"rtsp://127.0.0.1:{port}/cam1"
    raise AssertionError(kind)


def rtsp_server(procs: Procs, clip: Path, port: int) -> subprocess.Popen:
    """GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0) for ``clip`` at
    ``rtsp://127.0.0.1:<port>/cam1``, listening when this returns."""
    probe = [GST_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"]
    if not os.access(GST_PYTHON, os.X_OK) or subprocess.run(probe).returncode != 0:
        unavailable("GStreamer's RTSP server is missing (gir1.2-gst-rtsp-server-1.0)")
    proc = procs.spawn("rtsp-gst", [GST_PYTHON, "-c", GST_SERVER, str(port), str(clip)])
    assert wait_for(lambda: _listening(port), 10), "GStreamer RTSP server"
    return proc


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _consecutive(indices: list[int]) -> bool:
    """Clip frame indices advance by one (mod the clip length) with at most a few holes."""
    steps = [(b - a) % (FPS * SECONDS) for a, b in zip(indices, indices[1:], strict=False)]
    return sum(s != 1 for s in steps) <= max(2, len(steps) // 10)


# -- pure ------------------------------------------------------------------------------------
def test_open_args_per_kind():
    url, fmt, opts = open_args("rtsp://h/s", transport="udp", read_timeout_s=3)
    assert (url, fmt, opts["rtsp_transport"], opts["timeout"]) == (
        "rtsp://h/s",
        None,
        "udp",
        "3000000",
    )
    assert open_args("/dev/video2")[1] == "v4l2"
    assert open_args("udp://127.0.0.1:5000")[2]["overrun_nonfatal"] == "1"
    assert open_args("https://h/x.ts", read_timeout_s=1)[2]["rw_timeout"] == "1000000"
    assert open_args("file:///tmp/a.mp4") == ("/tmp/a.mp4", None, {})
    assert open_args("rtsp://h/s", options={"timeout": "5"})[2]["timeout"] == "5"
    kinds = [source_kind(s) for s in ("rtsp://a", "tcp://a:1", "/dev/video0", "/v/a.mp4")]
    assert kinds == ["rtsp", "network", "v4l2", "file"]
    with pytest.raises(ValueError):
        LiveSource("c", "rtsp://h/s", transport="http")  # type: ignore[arg-type]


# -- files -----------------------------------------------------------------------------------
def test_looping_file_delivers_continuously(clip, sources):
    n = FPS * SECONDS
    src = LiveSource("cam1", clip, loop=True, realtime=False, queue_size=n * 4)
    sources.append(src.start())
    assert wait_for(lambda: src.stats()["decoded"] >= 3 * n, 10)
    frames = drain(src, 0.3)
    seqs = [f.seq for f in frames]
    assert len(frames) >= 3 * n and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [frame_index(f.bgr) for f in frames[: 2 * n]] == [i % n for i in range(2 * n)]
    f = frames[0]
    assert f.camera_id == "cam1" and f.bgr.shape == (H, W, 3) and f.bgr.dtype == np.uint8
    assert f.pts == 0.0 and frames[1].pts == pytest.approx(1 / FPS)
    stats = src.stats()
    assert stats["state"] == "online" and stats["reconnects"] == 0 and stats["gaps_total"] == 0


def test_file_paced_at_its_rate_and_fps_every(clip, sources):
    paced = LiveSource("cam1", clip, loop=True, queue_size=64)
    capped = LiveSource("cam2", clip, loop=True, realtime=False, fps=5, queue_size=64)
    every = LiveSource("cam3", clip, loop=True, realtime=False, every=3, queue_size=64)
    sources.extend(s.start() for s in (paced, capped, every))
    got = drain(paced, 1.2)
    assert 0.6 * 1.2 * FPS <= len(got) <= 1.5 * 1.2 * FPS  # real time, not as fast as decode
    kept = [f for f in (capped.get(2) for _ in range(10)) if f is not None]
    steps = np.diff([f.pts for f in kept])
    assert len(kept) == 10 and all(s >= 0.19 for s in steps if s > 0)
    assert all(f.seq % 5 == 0 for f in kept)  # 25 fps capped at 5: every 5th frame
    assert all(f.seq % 3 == 0 for f in (every.get(2) for _ in range(10)) if f is not None)
    assert capped.stats()["skipped"] > 0


def test_file_without_loop_ends_stopped(clip, sources):
    src = LiveSource("cam1", clip, realtime=False, queue_size=1000)
    sources.append(src.start())
    assert wait_for(lambda: src.state == "stopped", 10)
    frames = drain(src, 0.2)
    assert len(frames) == FPS * SECONDS and src.get(0.5) is None
    assert src.stats()["reconnects"] == 0


def test_slow_consumer_bounded_drops_counted(clip, sources):
    src = LiveSource("cam1", clip, loop=True, realtime=False, queue_size=3)
    sources.append(src.start())
    assert wait_for(lambda: src.stats()["decoded"] > 50, 10)
    rss = []
    lengths = []
    for i in range(40):  # a consumer far slower than the decoder
        f = src.get(1.0)
        assert f is not None
        lengths.append(src.stats()["queue_len"])
        if i % 10 == 0:
            rss.append(_rss_mb())
        time.sleep(0.05)
    src.stop()
    s = src.stats()
    assert max(lengths) <= 3 and s["dropped"] > 100
    assert (
        s["decoded"] == s["skipped"] + s["queued"]
        and s["queued"] == s["delivered"] + s["dropped"] + s["queue_len"]
    )
    assert rss[-1] - rss[0] < 40, rss  # megabytes: a few frames, never the whole stream


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- live streams ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["tcp", "udp", "http", "rtsp-tcp", "rtsp-udp"])
def test_live_frames_arrive(kind, clip, procs, sources):
    url = serve(kind, procs, clip)
    transport = "udp" if kind == "rtsp-udp" else "tcp"
    src = LiveSource("cam1", url, transport=transport, backoff=(0.2, 1.0), open_timeout_s=5)
    sources.append(src.start())
    assert wait_for(lambda: src.state == "online", 12), src.stats()
    frames = drain(src, 1.5)
    assert len(frames) >= 15, src.stats()
    assert frames[0].bgr.shape == (H, W, 3)
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert _consecutive([frame_index(f.bgr) for f in frames]), [frame_index(f.bgr) for f in frames]


def test_server_restart_reconnects_and_records_one_gap(clip, procs, sources):
    port = free_port()
    server = tcp_server(procs, clip, port)
    states: list[str] = []
    src = LiveSource(
        "cam1", f"tcp://127.0.0.1:{port}", backoff=(0.1, 0.5), stall_s=3.0,
        on_state=lambda cam, state, info: states.append(state),
    )  # fmt: skip
    sources.append(src.start())
    assert wait_for(lambda: src.state == "online", 8), src.stats()
    before = drain(src, 1.0)
    assert before
    killed_at = time.time()
    procs.kill(server)
    assert wait_for(lambda: src.state == "reconnecting", 3), src.stats()
    time.sleep(1.0)
    restarted_at = time.time()
    tcp_server(procs, clip, port)
    assert wait_for(lambda: src.state == "online", 8), src.stats()
    after = drain(src, 1.0)
    s = src.stats()
    online = states.index("online")  # the first connect may beat FFmpeg's listen: retried
    assert states[online:] == ["online", "reconnecting", "online"], states
    assert s["gaps_total"] == 1 and s["reconnects"] >= 1 and s["gap_open_since"] is None
    start, length = s["gaps"][0]
    assert killed_at - 0.5 < start < killed_at + 0.5  # frames still buffered may come after
    assert restarted_at - killed_at <= length < restarted_at - start + 4.0
    assert after and after[0].seq > before[-1].seq  # seq is never reused across a reconnect
    # frames decoded before the kill may still be waiting in the queue: the first one decoded
    # after the restart is the restarted server's clip, from its start
    fresh = [f for f in after if f.captured_at >= restarted_at]
    seqs = [f.seq for f in after]
    assert fresh and seqs == sorted(set(seqs)), seqs  # in order, none repeated
    assert frame_index(fresh[0].bgr) < FPS * 2


def test_rtsp_server_restart_reconnects_over_tcp_and_records_one_gap(clip, procs, sources):
    """The RTSP server itself killed mid-stream and started again on the same port: the source
    reports ``reconnecting``, comes back ``online`` by itself, records one gap, reuses no seq."""
    port = free_port()
    server = rtsp_server(procs, clip, port)
    src = LiveSource(
        "cam1", f"rtsp://127.0.0.1:{port}/cam1", transport="tcp", backoff=(0.1, 0.5),
        open_timeout_s=5, read_timeout_s=2.0, stall_s=3.0,
    )  # fmt: skip
    sources.append(src.start())
    assert wait_for(lambda: src.state == "online", 12), src.stats()
    before = drain(src, 1.0)
    assert before
    killed_at = time.time()
    procs.kill(server)
    assert wait_for(lambda: src.state == "reconnecting", 6), src.stats()
    rtsp_server(procs, clip, port)
    assert wait_for(lambda: src.state == "online", 15), src.stats()
    after = drain(src, 1.0)
    s = src.stats()
    assert s["gaps_total"] == 1 and s["reconnects"] >= 1 and s["gap_open_since"] is None, s
    start, length = s["gaps"][0]
    assert killed_at - 0.5 < start < killed_at + 2.5 and length > 0
    seqs = [f.seq for f in before + after]
    assert after and seqs == sorted(set(seqs)), seqs  # in order, none repeated or reused


def test_stalled_stream_reported_then_resumes(clip, procs, sources):
    port = free_port()
    server = tcp_server(procs, clip, port)
    src = LiveSource("cam1", f"tcp://127.0.0.1:{port}", stall_s=1.0, read_timeout_s=10)
    sources.append(src.start())
    assert wait_for(lambda: src.state == "online", 8), src.stats()
    drain(src, 0.5)
    reconnects = src.stats()["reconnects"]  # the first connect may beat FFmpeg's listen
    os.kill(server.pid, signal.SIGSTOP)
    paused_at = time.monotonic()
    slowest = 0.0
    while src.state != "stalled" and time.monotonic() - paused_at < 4:
        t = time.monotonic()
        src.get(0.2)  # keeps returning: frames buffered before the pause, then None
        slowest = max(slowest, time.monotonic() - t)
    stalled_after = time.monotonic() - paused_at
    assert src.state == "stalled" and stalled_after < 1.0 + 1.5, src.stats()
    assert slowest < 0.5 and src.get(0.2) is None
    assert src.stats()["gap_open_since"] is not None
    time.sleep(0.5)
    os.kill(server.pid, signal.SIGCONT)
    assert wait_for(lambda: src.state == "online", 5), src.stats()
    assert drain(src, 0.5)
    s = src.stats()
    assert s["gaps_total"] == 1 and s["reconnects"] == reconnects  # a stall, not a reconnect
    assert s["gaps"][0][1] >= 1.0


# -- no stream -------------------------------------------------------------------------------
def test_unopenable_source_retries_with_capped_backoff(tmp_path, sources):
    infos: list[tuple[str, dict]] = []
    refused = LiveSource(
        "cam1", f"tcp://127.0.0.1:{free_port()}", backoff=(0.1, 0.4),
        on_state=lambda cam, state, info: infos.append((state, info)),
    )  # fmt: skip
    missing = LiveSource("cam2", tmp_path / "nothing.mp4", loop=True, backoff=(0.1, 0.4))
    sources.extend(s.start() for s in (refused, missing))
    time.sleep(1.6)
    for src in (refused, missing):
        s = src.stats()
        assert s["state"] == "reconnecting" and 3 <= s["reconnects"] <= 8, s
        assert s["last_error"] and s["decoded"] == 0 and s["gaps_total"] == 0
        assert src.get(0.05) is None
    assert [i for st, i in infos if st == "reconnecting"][0]["retry_in_s"] == 0.1
    assert [st for st, _ in infos] == ["connecting", "reconnecting"]  # reported once, not spammed


def test_stop_returns_quickly_while_connecting(sources):
    silent = socket.socket()  # accepts, never sends: the open blocks in FFmpeg's probe
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        url = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        src = LiveSource("cam1", url, open_timeout_s=30, read_timeout_s=30)
        src.start()
        time.sleep(0.5)
        assert src.state == "connecting"
        t = time.monotonic()
        src.stop()
        assert time.monotonic() - t < 2.0 and src.state == "stopped"
        assert src.get(1.0) is None  # stopped and empty: returns at once
        assert src.stats()["state"] == "stopped"
    finally:
        silent.close()

"""Byte-deterministic H.264 (or MPEG-4) encoding and atomic publication of demo files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import polars as pl
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from edge_export.fsutil import sha256_file

__all__ = ["encode_mp4", "publish", "tmp_for", "write_csv"]

_AUDIO_RATE = 16_000


def encode_mp4(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int,
    size: tuple[int, int],
    codec: str = "libx264",
    audio_seconds: float | None = None,
    container_options: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Encode BGR uint8 frames to ``path`` (mp4), byte-deterministically.

    libx264 is run single-threaded and with ``mbtree=0``: in this build, macroblock-tree
    rate control reads memory whose content depends on earlier heap activity, so the
    same frames encoded twice in one process could give different bitstreams.
    """
    W, H = size
    with av.open(str(path), mode="w", format="mp4", options=dict(container_options or {})) as out:
        for k, val in (metadata or {}).items():
            out.metadata[k] = val
        opts = (
            {"preset": "veryfast", "crf": "22", "x264-params": "mbtree=0"}
            if codec == "libx264"
            else {}
        )
        vs = out.add_stream(codec, rate=fps, options=opts)
        assert isinstance(vs, VideoStream)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.codec_context.thread_count = 1
        vs.codec_context.gop_size = 2 * fps
        ast = None
        if audio_seconds is not None:
            ast = out.add_stream("aac", rate=_AUDIO_RATE, layout="mono")
            assert isinstance(ast, AudioStream)
            ast.codec_context.thread_count = 1
        n_audio = int(round((audio_seconds or 0) * _AUDIO_RATE))
        sent = 0
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(vf))
            while ast is not None and sent < n_audio and sent <= (i + 1) * _AUDIO_RATE / fps:
                n = min(1024, n_audio - sent)
                t = (sent + np.arange(n)) / _AUDIO_RATE
                hum = 0.2 * np.sin(2 * np.pi * 120 * t) + 0.06 * np.sin(2 * np.pi * 240 * t)
                af = av.AudioFrame.from_ndarray(
                    hum.astype(np.float32)[None, :], format="fltp", layout="mono"
                )
                af.sample_rate, af.pts, af.time_base = _AUDIO_RATE, sent, Fraction(1, _AUDIO_RATE)
                out.mux(ast.encode(af))
                sent += n
        out.mux(vs.encode(None))
        if ast is not None:
            out.mux(ast.encode(None))


def tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def publish(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` atomically, leaving ``path`` untouched if identical."""
    if (
        path.exists()
        and path.stat().st_size == tmp.stat().st_size
        and sha256_file(path) == sha256_file(tmp)
    ):
        tmp.unlink()
    else:
        os.replace(tmp, path)


def write_csv(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_for(path)
    try:
        df.write_csv(tmp)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

"""Fixtures for the data-quality tests: inputs that ingestion must survive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from demo.conditions import CONDITIONS
from demo.encode import encode_mp4, publish, tmp_for
from demo.noise import crc
from demo.render import render_video
from demo.scene import Scene


def _write_bad_videos(dir: Path, *, seed: int) -> dict[str, Path]:
    """Write inputs that ingestion must survive; return name -> path.

    ==============  ====================================================================
    name            file and property
    ==============  ====================================================================
    zero_byte       ``zero_byte.mp4``: empty.
    truncated       ``truncated.mp4``: H.264 mp4 with ``moov`` at the front (faststart),
                    cut to 60 % of its bytes: opens, advertises 45 frames, decodes fewer.
    random          ``random.mp4``: 48 KiB of random bytes; FFmpeg cannot open it.
    text            ``text.mp4``: a short text file; FFmpeg cannot open it.
    unsupported     ``unsupported.mp4``: a valid mp4 whose video sample entry carries the
                    unknown fourcc ``LNSX`` (patched from ``avc1``): it demuxes (one video
                    stream, packets readable) but no decoder exists.
    one_frame       ``one_frame.mp4``: H.264, exactly one frame.
    odd_res         ``odd_res.mp4``: 333x197. libx264 refuses odd sizes in yuv420p, so this
                    is MPEG-4 Part 2 (``mpeg4``/mp4v) yuv420p, which allows them.
    with_audio      ``with_audio.mp4``: H.264 video (2 s, 30 frames) plus an AAC track.
    ==============  ====================================================================

    Parameters
    ----------
    dir : Path
        Output directory (created if missing).
    seed : int
        Non-negative seed; the files are byte-identical for the same seed.
    """
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    p = {
        k: out / f"{k}.mp4"
        for k in (
            "zero_byte",
            "truncated",
            "random",
            "text",
            "unsupported",
            "one_frame",
            "odd_res",
            "with_audio",
        )
    }
    rng = np.random.default_rng(np.random.SeedSequence([seed, crc("bad_videos")]))
    small = (160, 120)

    p["zero_byte"].write_bytes(b"")
    p["random"].write_bytes(rng.bytes(48 * 1024))
    p["text"].write_text("This is not a video.\nframe_index,label\n0,good\n" * 20)

    scene = Scene(
        seed=seed, camera_id="bad", seconds=3.0, fps=15, size=small, cond=CONDITIONS["nominal"]
    )
    full = tmp_for(p["truncated"])
    try:
        encode_mp4(
            full,
            (img for img, _ in scene.frames()),
            fps=15,
            size=small,
            container_options={"movflags": "faststart"},
        )
        data = full.read_bytes()
    finally:
        full.unlink(missing_ok=True)
    p["truncated"].write_bytes(data[: int(len(data) * 0.6)])

    scene = Scene(
        seed=seed, camera_id="bad", seconds=1.0, fps=15, size=small, cond=CONDITIONS["nominal"]
    )
    tmp = tmp_for(p["unsupported"])
    try:
        encode_mp4(tmp, (img for img, _ in scene.frames()), fps=15, size=small)
        raw = bytearray(tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    at = raw.find(b"avc1", raw.find(b"stsd"))
    raw[at : at + 4] = b"LNSX"
    p["unsupported"].write_bytes(bytes(raw))

    render_video(p["one_frame"], seed=seed, camera_id="bad", seconds=1 / 15, fps=15, size=small)
    scene = Scene(
        seed=seed, camera_id="bad", seconds=1.0, fps=15, size=(333, 197), cond=CONDITIONS["nominal"]
    )
    tmp = tmp_for(p["odd_res"])
    try:
        encode_mp4(tmp, (img for img, _ in scene.frames()), fps=15, size=(333, 197), codec="mpeg4")
        publish(tmp, p["odd_res"])
    finally:
        tmp.unlink(missing_ok=True)
    render_video(
        p["with_audio"], seed=seed, camera_id="bad", seconds=2.0, fps=15, size=small, audio=True
    )
    return p


@pytest.fixture(scope="session")
def write_bad_videos():
    """``write_bad_videos(dir, seed=...) -> {name: path}`` (see ``_write_bad_videos``)."""
    return _write_bad_videos

"""scan_video on good and bad inputs: every bad file gets a status and an error naming it."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from data_quality.video import sample_stride, scan_video, sha256_file, video_id_for
from demo import render_video


@pytest.fixture(scope="module")
def bad(tmp_path_factory, write_bad_videos):
    return write_bad_videos(tmp_path_factory.mktemp("bad"), seed=3)


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])


def pyav_count(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_good_video_counts_and_sampling(tmp_path):
    path = tmp_path / "v.mp4"
    truth = render_video(path, seed=1, camera_id="cam1", seconds=2.0, fps=15, size=(160, 120))
    kept: list[int] = []
    report = scan_video(
        path, sample_fps=5.0, keep_frames={4}, sink=lambda i, ts, img: kept.append(i)
    )
    assert report.ok, report.error
    assert report.frame_count == pyav_count(path) == truth.height
    assert (report.width, report.height, round(report.fps)) == (160, 120, 15)
    assert report.codec == "h264" and report.sha256 == sha256_file(path)
    assert report.timestamp_gaps == 0
    assert kept == sorted({*range(0, truth.height, 3), 4})


@pytest.mark.parametrize(
    "case, status, words",
    [
        ("zero_byte", "empty", "zero-byte"),
        ("random", "unreadable", "not a readable video container"),
        ("text", "unreadable", "not a readable video container"),
        ("truncated", "corrupt", ""),
    ],
)
def test_bad_inputs_are_named_and_explained(bad, case, status, words):
    path = bad[case]
    report = scan_video(path, name=f"s3://landing/{path.name}")
    assert report.status == status, report.error
    assert report.error.startswith(f"s3://landing/{path.name}: ")
    assert words in report.error


def test_unsupported_stream(bad):
    report = scan_video(bad["unsupported"])
    assert (
        report.status in {"unsupported", "unreadable"} and str(bad["unsupported"]) in report.error
    )


@pytest.mark.parametrize("case", ["one_frame", "odd_res", "with_audio"])
def test_valid_edge_cases_ingest(bad, case):
    path = bad[case]
    frames = []
    report = scan_video(path, sink=lambda i, ts, img: frames.append(img.shape))
    assert report.ok, report.error
    assert report.frame_count == pyav_count(path)
    assert frames and frames[0][:2] == (report.height, report.width)
    if case == "one_frame":
        assert report.frame_count == 1
    if case == "with_audio":
        assert report.has_audio


def test_missing_file_and_ids(tmp_path):
    report = scan_video(tmp_path / "nope.mp4")
    assert report.status == "unreadable" and "does not exist" in report.error
    assert video_id_for("cam 1", "line #1.mp4") == "cam_1__line__1-e1ddc256"
    assert sample_stride(30, sample_fps=2, stride=None) == 15
    assert sample_stride(30, sample_fps=None, stride=7) == 7
    with pytest.raises(ValueError, match="stride"):
        sample_stride(30, sample_fps=None, stride=0)


def test_video_id_for() -> None:
    assert video_id_for("cam1", "line_0001.mp4") == "cam1__line_0001"
    assert video_id_for("cam 2", "a/b c.mov").startswith("cam_2__b_c-")  # hashed: injective


def test_bad_video_fixtures(tmp_path: Path, write_bad_videos) -> None:
    """The fixture files have the properties the ingestion tests rely on."""
    bad = write_bad_videos(tmp_path, seed=0)
    assert set(bad) == {
        "zero_byte",
        "truncated",
        "random",
        "text",
        "unsupported",
        "one_frame",
        "odd_res",
        "with_audio",
    }
    assert bad["zero_byte"].stat().st_size == 0
    for key in ("zero_byte", "random", "text"):
        with pytest.raises(av.error.InvalidDataError):
            av.open(str(bad[key]))

    data = bad["truncated"].read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: index survives the cut
    with av.open(str(bad["truncated"])) as c:
        assert c.streams.video[0].frames == 45
        decoded = 0
        with pytest.raises(av.error.FFmpegError):  # noqa: PT012
            for _ in c.decode(video=0):
                decoded += 1
        assert decoded < 45

    with av.open(str(bad["unsupported"])) as c:
        assert len(c.streams.video) == 1 and sum(1 for p in c.demux() if p.size) > 0
    with av.open(str(bad["unsupported"])) as c, pytest.raises(av.error.DecoderNotFoundError):
        next(c.decode(video=0))

    assert len(_decode(bad["one_frame"])) == 1
    with av.open(str(bad["odd_res"])) as c:
        s = c.streams.video[0]
        assert (s.width, s.height, s.codec_context.name) == (333, 197, "mpeg4")
    assert _decode(bad["odd_res"]).shape[1:] == (197, 333, 3)
    with av.open(str(bad["with_audio"])) as c:
        assert len(c.streams.video) == 1 and c.streams.audio[0].codec_context.name == "aac"
    assert len(_decode(bad["with_audio"])) == 30

    again = write_bad_videos(tmp_path / "again", seed=0)
    assert all(bad[k].read_bytes() == again[k].read_bytes() for k in bad)

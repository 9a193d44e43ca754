"""The pure parts of ingestion on tiny seeded videos: sampling, rows, summary and verdicts."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from data_quality import contract
from data_quality.ingest import (
    SampledVideo,
    frame_rows,
    sample_video,
    summarize_ingest,
    video_row,
)
from data_quality.video import VideoReport


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> SampledVideo:
    from tests.conftest import _write_video

    path = _write_video(tmp_path_factory.mktemp("v") / "a.mp4", 21)
    return sample_video(path, name="landing/a.mp4", labeled={5}, stride=4, jpeg_quality=80)


def test_sample_video_keeps_the_stride_and_the_labelled_frames(sampled):
    assert sampled.report.ok and sampled.report.frame_count == 21
    assert [f.frame_index for f in sampled.frames] == [0, 4, 5, 8, 12, 16, 20]
    assert sampled.labeled == frozenset({5})
    f = sampled.frames[0]
    assert (f.width, f.height) == (96, 64) and f.jpeg[:2] == b"\xff\xd8"
    assert f.sha256 == hashlib.sha256(f.jpeg).hexdigest()


def test_sample_video_never_raises_for_a_bad_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video\n" * 50)
    out = sample_video(bad, name="landing/bad.mp4")
    assert not out.report.ok and "landing/bad.mp4" in (out.report.error or "")
    assert out.frames == []


def test_frame_rows_follow_the_contract(sampled):
    uris = [f"f/{f.frame_index:06d}.jpg" for f in sampled.frames]
    rows = frame_rows("cam1__a", "cam1", sampled, uris)
    assert rows.columns == list(contract.FRAMES)
    assert rows["uri"].to_list() == uris
    assert rows.filter("labeled")["frame_index"].to_list() == [5]
    assert set(rows["camera_id"]) == {"cam1"} and rows["brightness"].null_count() == 0
    with pytest.raises(ValueError):
        frame_rows("cam1__a", "cam1", sampled, uris[:-1])  # one uri per frame


def test_video_row_drops_the_file_and_follows_the_contract(sampled):
    from datetime import UTC, datetime

    at = datetime(2026, 1, 2, tzinfo=UTC)
    row = video_row(
        "cam1__a", "cam1", uri="u", source_mtime=1.5, report=sampled.report, kept_frames=7,
        ingested_at=at,
    )  # fmt: skip
    assert row.columns == list(contract.VIDEOS) and row.height == 1
    r = row.row(0, named=True)
    assert (r["video_id"], r["status"], r["kept_frames"], r["uri"]) == ("cam1__a", "ok", 7, "u")
    assert r["sha256"] == sampled.report.sha256


def test_summary_of_an_ok_video(sampled):
    frames = frame_rows("cam1__a", "cam1", sampled, [str(i) for i in range(len(sampled.frames))])
    s = summarize_ingest(sampled.report, frames, ingest_s=1.23456)
    assert list(s.video_metadata) == [
        "status", "error", "sha256", "codec", "fps", "frame_count", "resolution", "ingest_s",
        "warnings",
    ]  # fmt: skip
    assert s.video_metadata["resolution"] == "96x64" and s.video_metadata["ingest_s"] == 1.2346
    assert s.video_data_version == f"ok:{sampled.report.sha256}"
    assert [(c.asset, c.name, c.passed, c.severity) for c in s.video_checks] == [
        ("raw_video", "decodable", True, "ERROR"),
        ("raw_video", "no_timestamp_gaps", True, "WARN"),
    ]
    assert s.frames_metadata is not None
    assert list(s.frames_metadata) == [
        "frames",
        "labeled_frames",
        "frames_with_item",
        "mean_brightness",
        "mean_sharpness",
    ]
    assert (s.frames_metadata["frames"], s.frames_metadata["labeled_frames"]) == (7, 1)
    # the content version ignores row order and uris
    again = summarize_ingest(
        sampled.report, frames.reverse().with_columns(uri=pl.lit("x")), ingest_s=0
    )
    assert s.frames_data_version == again.frames_data_version and len(s.frames_data_version) == 20
    q = s.frame_quality
    assert (q.asset, q.name, q.severity) == ("frames", "frame_quality", "WARN")
    assert q.metadata["frames"] == 7


def test_frame_quality_allows_a_fifth_dark_or_blurry():
    def frames(n_bad: int, n: int = 10) -> pl.DataFrame:
        return pl.DataFrame({
            "brightness": [10.0] * n_bad + [120.0] * (n - n_bad),
            "sharpness": [500.0] * n, "labeled": [False] * n, "sha256": [str(i) for i in range(n)],
            "frame_index": list(range(n)),
        })  # fmt: skip

    report = VideoReport(file="f", sha256="s", size_bytes=1)
    assert summarize_ingest(report, frames(2), ingest_s=0).frame_quality.passed
    failed = summarize_ingest(report, frames(3), ingest_s=0).frame_quality
    assert not failed.passed and failed.metadata == {"dark_or_blurry": 3, "frames": 10}


def test_summary_of_a_bad_video_says_why_frame_quality_did_not_run():
    report = VideoReport(file="landing/bad.mp4", sha256="s", size_bytes=3).fail("corrupt", "boom")
    s = summarize_ingest(report, None, ingest_s=0.1)
    assert s.frames_metadata is None and s.frames_data_version is None
    assert s.video_data_version == "corrupt:s"
    assert s.video_checks[0].passed is False
    assert s.video_checks[0].metadata == {"status": "corrupt", "error": "landing/bad.mp4: boom"}
    assert s.frame_quality.passed is False and s.frame_quality.severity == "WARN"
    assert s.frame_quality.metadata == {
        "skipped": "no frames sampled: video is corrupt: landing/bad.mp4: boom"
    }

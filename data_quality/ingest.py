"""The pure parts of ingesting one video: sampling its frames, their rows, the verdicts.

No storage and no Dagster here: :func:`sample_video` reads a local file, the rest builds rows
and summaries from what it found. ``lake.ingest`` commits the rows; ``assets/ingest.py`` turns
the summary into the ``raw_video`` and ``frames`` results and their checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data_quality import contract, presence
from data_quality.frame_quality import (
    BLURRY_SHARPNESS,
    DARK_BRIGHTNESS,
    EncodedFrame,
    FrameEncoder,
)
from data_quality.video import VideoReport, scan_video

__all__ = [
    "MAX_BAD_SHARE",
    "CheckVerdict",
    "IngestSummary",
    "SampledVideo",
    "frame_rows",
    "sample_video",
    "summarize_ingest",
    "video_row",
]

MAX_BAD_SHARE = 0.2
"""The ``frame_quality`` check passes while at most this share of sampled frames is dark or blurry."""


@dataclass(frozen=True)
class SampledVideo:
    """One decode pass over a video: its report, the frames kept (encoded) and the labelled set.

    ``frames`` holds what the decode kept even when the video is not ``ok``; only an ``ok``
    video's frames are stored. ``presence`` holds each frame's item presence score
    (:func:`data_quality.presence.presence_scores`, NaN: unknown); empty: not scored.
    """

    report: VideoReport
    frames: list[EncodedFrame]
    labeled: frozenset[int] = field(default_factory=frozenset)
    presence: tuple[float, ...] = ()


@dataclass(frozen=True)
class CheckVerdict:
    """One asset check's verdict: ``severity`` ``"ERROR"`` (the default) or ``"WARN"``."""

    asset: str
    name: str
    passed: bool
    metadata: dict[str, Any]
    severity: str = "ERROR"


@dataclass(frozen=True)
class IngestSummary:
    """What the ``raw_video`` and ``frames`` results report.

    ``frames_metadata`` and ``frames_data_version`` are None when no frames were stored (the
    video is not ``ok``); ``frame_quality`` then says why it did not run.
    """

    video_metadata: dict[str, Any]
    video_data_version: str
    video_checks: list[CheckVerdict]
    frames_metadata: dict[str, Any] | None
    frames_data_version: str | None
    frame_quality: CheckVerdict


def sample_video(
    path: Path,
    *,
    name: str,
    labeled: Collection[int] = (),
    sample_fps: float | None = 2.0,
    stride: int | None = None,
    jpeg_quality: int = 90,
    score_presence: bool = True,
) -> SampledVideo:
    """Scan ``path`` once (checksum, probe, full decode) and JPEG-encode the frames kept.

    Parameters
    ----------
    path
        Local video file.
    name
        How errors name the file: the landing-zone URI.
    labeled
        Frame indices labels refer to: always kept, whatever the stride.
    sample_fps, stride
        Keep about ``sample_fps`` frames per second, or every ``stride``-th frame
        (``data_quality.video.sample_stride``).
    jpeg_quality
        JPEG quality (30..100) of the kept frames.
    score_presence
        Score each kept frame's item presence (False: ``presence`` stays empty, the rows'
        columns null; for measuring what scoring costs).

    Returns
    -------
    SampledVideo
        Never raises for a bad video: problems go to ``report.status`` and ``report.error``.
        Each kept frame's item presence is scored against the background of the frames not
        kept for a label (:mod:`data_quality.presence`).
    """
    encoder = FrameEncoder(
        quality=jpeg_quality, thumb_width=presence.THUMB_WIDTH if score_presence else None
    )
    report = scan_video(
        path,
        name=name,
        sample_fps=sample_fps,
        stride=stride,
        keep_frames=labeled,
        sink=encoder,
        lazy_sink=True,
    )
    frames = encoder.results()
    if not score_presence:
        return SampledVideo(report, frames, frozenset(labeled))
    grid = [i for i, f in enumerate(frames) if f.frame_index not in labeled]
    scores = presence.presence_scores([f.thumb for f in frames], background_from=grid)  # type: ignore[misc]
    frames = [replace(f, thumb=None) for f in frames]  # the thumbnails' memory goes now
    return SampledVideo(report, frames, frozenset(labeled), tuple(scores.tolist()))


def frame_rows(
    video_id: str, camera_id: str, sampled: SampledVideo, uris: Sequence[str]
) -> pl.DataFrame:
    """The video's rows of ``frames`` (``contract.FRAMES``), one per kept frame; ``uris[i]`` is
    where ``sampled.frames[i]``'s JPEG is stored. ``item_presence`` and ``item_present`` are
    null when the frames were not scored (``sampled.presence`` empty or NaN)."""
    scores = sampled.presence or (float("nan"),) * len(sampled.frames)
    present = presence.item_present(np.asarray(scores, dtype=float))
    return contract.conform(
        [
            {
                "video_id": video_id,
                "camera_id": camera_id,
                "frame_index": f.frame_index,
                "timestamp_s": f.timestamp_s,
                "uri": uri,
                "sha256": f.sha256,
                "width": f.width,
                "height": f.height,
                "labeled": f.frame_index in sampled.labeled,
                **f.stats,
                "item_presence": None if score != score else score,  # NaN -> null
                "item_present": is_item,
            }
            for f, uri, score, is_item in zip(sampled.frames, uris, scores, present, strict=True)
        ],
        contract.FRAMES,
    )


def video_row(
    video_id: str,
    camera_id: str,
    *,
    uri: str,
    source_mtime: float,
    report: VideoReport,
    kept_frames: int,
    ingested_at: datetime,
) -> pl.DataFrame:
    """The video's one row of ``videos`` (``contract.VIDEOS``)."""
    row = {
        "video_id": video_id,
        "camera_id": camera_id,
        "uri": uri,
        "source_mtime": source_mtime,
        "ingested_at": ingested_at,
        **report.as_row(),
        "kept_frames": kept_frames,
    }
    row.pop("file")
    return contract.conform([row], contract.VIDEOS)


def summarize_ingest(
    report: VideoReport, frames: pl.DataFrame | None, *, ingest_s: float
) -> IngestSummary:
    """Metadata, data versions and check verdicts of one ingested video.

    Parameters
    ----------
    report
        The scan's report.
    frames
        The video's committed ``frames`` rows, or None when none were stored.
    ingest_s
        Wall seconds the ingestion took (reported as ``ingest_s``).
    """
    video_metadata = {
        "status": report.status,
        "error": report.error or "",
        "sha256": report.sha256,
        "codec": report.codec or "",
        "fps": report.fps or 0.0,
        "frame_count": report.frame_count,
        "resolution": f"{report.width}x{report.height}",
        "ingest_s": round(ingest_s, 4),
        "warnings": "; ".join(report.problems) if report.ok and report.problems else "none",
    }
    video_checks = [
        CheckVerdict(
            "raw_video",
            "decodable",
            report.ok,
            {"status": report.status, "error": report.error or ""},
        ),
        CheckVerdict(
            "raw_video",
            "no_timestamp_gaps",
            report.timestamp_gaps == 0,
            {"gaps": report.timestamp_gaps, "max_gap_s": report.max_gap_s},
            severity="WARN",
        ),
    ]
    video_version = f"{report.status}:{report.sha256}"
    if frames is None:
        skipped = f"no frames sampled: video is {report.status}: {report.error}"
        quality = CheckVerdict("frames", "frame_quality", False, {"skipped": skipped}, "WARN")
        return IngestSummary(video_metadata, video_version, video_checks, None, None, quality)
    bad = frames.filter(
        (pl.col("brightness") < DARK_BRIGHTNESS) | (pl.col("sharpness") < BLURRY_SHARPNESS)
    )
    quality = CheckVerdict(
        "frames",
        "frame_quality",
        len(bad) <= MAX_BAD_SHARE * frames.height,
        {"dark_or_blurry": len(bad), "frames": frames.height},
        severity="WARN",
    )
    present = frames.get_column("item_present", default=pl.Series([None] * frames.height))
    frames_metadata = {
        "frames": frames.height,
        "labeled_frames": int(frames["labeled"].sum()),
        # data_quality.presence: what the labelling queues may spend their budget on
        "frames_with_item": int(present.sum())
        if present.null_count() < len(present)
        else "not scored",
        "mean_brightness": round(float(frames["brightness"].mean()), 2),  # type: ignore[arg-type]
        "mean_sharpness": round(float(frames["sharpness"].mean()), 2),  # type: ignore[arg-type]
    }
    # the sampled frames' content: re-ingesting identical bytes changes nothing downstream
    frames_version = hashlib.sha256(
        "".join(frames.sort("frame_index")["sha256"]).encode()
    ).hexdigest()[:20]
    return IngestSummary(
        video_metadata, video_version, video_checks, frames_metadata, frames_version, quality
    )

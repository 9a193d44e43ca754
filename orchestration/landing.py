"""The landing zone: which videos and label files are waiting, and under which ids."""

from __future__ import annotations

from data_quality.video import VIDEO_SUFFIXES, video_id_for
from orchestration.storage import LensStorage, StoredFile

LABEL_SUFFIXES = (".csv", ".json")


def discover_videos(
    storage: LensStorage, *, collisions: dict[str, list[str]] | None = None
) -> dict[str, StoredFile]:
    """``video_id -> file`` for every ``landing/videos/<camera_id>/<file>`` with a video suffix.

    Files directly under ``videos/`` (no camera folder) are ignored. When two files map to one
    id (``a.mp4`` and ``a.mov``), the first by name wins; pass ``collisions`` to collect
    ``video_id -> [ignored keys]`` so callers can report them.
    """
    found: dict[str, StoredFile] = {}
    for f in storage.list_files("landing", "videos", suffixes=VIDEO_SUFFIXES):
        parts = f.key.split("/")
        if len(parts) != 2:
            continue
        vid = video_id_for(parts[0], parts[1])
        if vid in found and collisions is not None:
            collisions.setdefault(vid, []).append(f.key)
        found.setdefault(vid, f)
    return found


def camera_of(file: StoredFile) -> str:
    return file.key.split("/")[0]


def label_files(storage: LensStorage) -> list[StoredFile]:
    """Label files waiting in ``landing/labels/`` (CSV, COCO or FiftyOne JSON)."""
    return storage.list_files("landing", "labels", suffixes=LABEL_SUFFIXES)


def stale_videos(storage: LensStorage, videos: dict) -> list[str]:
    """Video ids whose file was never ingested, or changed (size or mtime) since it was."""
    table = storage.read_table("videos")
    done: dict[str, tuple[int, float]] = {}
    if table is not None:
        for row in table.select("video_id", "size_bytes", "source_mtime").iter_rows():
            done[row[0]] = (row[1], row[2])
    return [
        vid
        for vid, f in sorted(videos.items())
        if vid not in done or done[vid][0] != f.size or abs((done[vid][1] or 0) - f.mtime) > 1e-3
    ]

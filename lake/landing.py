"""The landing zone: which videos and label files are waiting, and under which ids.

A video is *complete in the lake* when its ``videos`` row has the landed file's uri, size and
mtime and either status ``ok`` with exactly ``kept_frames`` rows in ``frames``, or a recorded
failure status (``empty``, ``corrupt``, ...). Anything else (no row, a changed file, an ``ok`` row
whose frames never committed, a row left ``ingesting`` by a killed run) is stale and is ingested
again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from data_quality.video import VIDEO_SUFFIXES, video_id_for
from lake.storage import LensStorage, StoredFile

LABEL_SUFFIXES = (".csv", ".json")
#: Opt-in: follow symlinks in landing/videos that point outside the landing zone.
FOLLOW_SYMLINKS_ENV = "LENSLINE_FOLLOW_SYMLINKS"
#: The status an ingestion writes before it replaces an ``ok`` video's frames.
INGESTING = "ingesting"


@dataclass
class LandingProblems:
    """Files discovery left out, with why: id collisions and links leaving the landing zone."""

    collisions: dict[str, list[str]] = field(default_factory=dict)
    outside: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        out = [
            f"{', '.join(ignored)} ignored: another file already lands as video {vid!r}; rename it"
            for vid, ignored in sorted(self.collisions.items())
        ]
        out += [
            f"{key} ignored: it links outside the landing zone "
            f"(set {FOLLOW_SYMLINKS_ENV}=1 to follow such links)"
            for key in self.outside
        ]
        return out


def discover_videos(
    storage: LensStorage,
    *,
    collisions: dict[str, list[str]] | None = None,
    problems: LandingProblems | None = None,
) -> dict[str, StoredFile]:
    """``video_id -> file`` for every ``landing/videos/<camera_id>/<file>`` with a video suffix.

    Files directly under ``videos/`` (no camera folder) are ignored, and so (locally) are links
    that resolve outside the landing zone unless ``LENSLINE_FOLLOW_SYMLINKS=1``. When two files
    map to one id (``a.mp4`` and ``a.mov``), the one the ``videos`` table already records keeps
    the id (never an overwrite), else the first by name; pass ``collisions`` (``video_id ->
    [ignored keys]``) or ``problems`` to collect what was left out so callers can report it.
    """
    problems = problems if problems is not None else LandingProblems()
    candidates: dict[str, list[StoredFile]] = {}
    for f in storage.list_files("landing", "videos", suffixes=VIDEO_SUFFIXES):
        parts = f.key.split("/")
        if len(parts) != 2:
            continue
        if not storage.is_s3 and not _contained(storage, f):
            problems.outside.append(f"videos/{f.key}")
            continue
        candidates.setdefault(video_id_for(parts[0], parts[1]), []).append(f)
    if not storage.is_s3:  # a camera folder that is itself a link out is not walked: say so
        root = Path(storage.uri("landing", "videos"))
        landing = Path(storage.uri("landing")).resolve()
        for cam in sorted(root.iterdir()) if root.is_dir() else []:
            outside = cam.is_symlink() and not cam.resolve().is_relative_to(landing)
            if outside and cam.is_dir() and os.environ.get(FOLLOW_SYMLINKS_ENV) != "1":
                problems.outside.append(f"videos/{cam.name}/")
    recorded: dict[str, str] | None = None
    found: dict[str, StoredFile] = {}
    for vid, files in candidates.items():
        winner = files[0]
        if len(files) > 1:
            if recorded is None:
                table = storage.read_table("videos", columns=["video_id", "uri"])
                recorded = dict(table.iter_rows()) if table is not None else {}
            winner = next((f for f in files if f.uri == recorded.get(vid)), files[0])
            problems.collisions[vid] = [f.key for f in files if f is not winner]
        found[vid] = winner
    if collisions is not None:
        collisions.update(problems.collisions)
    return dict(sorted(found.items()))


def _contained(storage: LensStorage, f: StoredFile) -> bool:
    """A local landing file is inside the landing zone once links are resolved (or opted in)."""
    if os.environ.get(FOLLOW_SYMLINKS_ENV) == "1":
        return True
    landing = Path(storage.uri("landing")).resolve()
    return Path(f.uri).resolve().is_relative_to(landing)


def camera_of(file: StoredFile) -> str:
    return file.key.split("/")[0]


def label_files(storage: LensStorage) -> list[StoredFile]:
    """Label files waiting in ``landing/labels/`` (CSV, COCO or FiftyOne JSON)."""
    return storage.list_files("landing", "labels", suffixes=LABEL_SUFFIXES)


def frame_counts(storage: LensStorage) -> dict[str, int]:
    """Rows per video in the ``frames`` table (reads one column)."""
    frames = storage.read_table("frames", columns=["video_id"])
    if frames is None:
        return {}
    return dict(frames.group_by("video_id").len().iter_rows())


def stale_videos(storage: LensStorage, videos: dict[str, StoredFile]) -> list[str]:
    """Video ids that are not complete in the lake (see the module docstring)."""
    table = storage.read_table("videos")
    if table is None:
        return sorted(videos)
    counts = frame_counts(storage)
    done = {
        row["video_id"]: row
        for row in table.select(
            "video_id", "uri", "size_bytes", "source_mtime", "status", "kept_frames"
        ).iter_rows(named=True)
    }

    def complete(vid: str, f: StoredFile) -> bool:
        row = done.get(vid)
        if (
            row is None
            or row["uri"] != f.uri
            or row["size_bytes"] != f.size
            or abs((row["source_mtime"] or 0) - f.mtime) > 1e-3
        ):
            return False
        if row["status"] == "ok":
            return counts.get(vid, 0) == (row["kept_frames"] or 0) > 0
        return row["status"] != INGESTING

    return [vid for vid, f in sorted(videos.items()) if not complete(vid, f)]

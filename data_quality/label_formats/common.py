"""What every label format shares: the error, the unvalidated row, video and image-name resolution.

A format module (:mod:`~data_quality.label_formats.csv`, :mod:`~data_quality.label_formats.coco`,
:mod:`~data_quality.label_formats.fiftyone`) turns a file into :class:`RawRow` s, resolving how it
names videos with :class:`VideoIndex` and :func:`parse_image_name`;
:func:`data_quality.label_formats.validation.validate_rows` then checks every row, and
:func:`data_quality.labels.read_label_file` dispatches and assembles the table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["LabelFileError", "RawRow", "VideoIndex", "clean", "escapes", "parse_image_name"]

_MAX_SHOWN_PROBLEMS = 20
_DIR_FRAME_RE = re.compile(r"^(?:frame[_-]?)?(\d+)$", re.IGNORECASE)
_FLAT_FRAME_RE = re.compile(r"^(?P<video>.+?)[_-](?:frame[_-]?)?(?P<frame>\d+)$", re.IGNORECASE)


class LabelFileError(ValueError):
    """A label file that cannot be imported; nothing from it should be used.

    Parameters
    ----------
    path : Path
        The offending file.
    problems : list of str
        One message per offending row (or one file-level message), e.g.
        ``"row 7: frame_index 900 out of range for video cam1__line_0001 (300 frames)"``.
    """

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        shown = self.problems[:_MAX_SHOWN_PROBLEMS]
        more = len(self.problems) - len(shown)
        lines = [f"label file {self.path} has {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in shown]
        if more > 0:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)

    def __reduce__(self):  # keep picklable across process executors
        return (type(self), (self.path, self.problems))


@dataclass(frozen=True)
class RawRow:
    """One label before validation; ``where`` prefixes its messages."""

    where: str
    video: str | None
    frame: str | None
    label: str | None
    annotator: str | None
    problem: str | None = None  # set by a reader when the row is already known bad


class VideoIndex:
    """Resolves the ways a label file may name a video to a video_id."""

    def __init__(self, videos: pl.DataFrame) -> None:
        missing = {"video_id", "file", "frame_count"} - set(videos.columns)
        if missing:
            raise ValueError(f"videos frame lacks columns {sorted(missing)}")
        self.frame_count: dict[str, int | None] = {}
        self.camera: dict[str, str | None] = {}
        self._by_name: dict[str, list[str]] = {}
        has_camera = "camera_id" in videos.columns
        for row in videos.iter_rows(named=True):
            vid = str(row["video_id"])
            self.frame_count[vid] = row["frame_count"]
            self.camera[vid] = row["camera_id"] if has_camera else None
            file = str(row["file"])
            for name in {file, Path(file).stem}:
                self._by_name.setdefault(name, []).append(vid)

    def resolve(self, ref: str) -> tuple[str | None, str | None]:
        """Return ``(video_id, None)`` or ``(None, problem)`` for a reference."""
        ref = ref.strip()
        parent = None
        if "/" in ref or "\\" in ref:
            parts = Path(ref.replace("\\", "/")).parts
            ref, parent = parts[-1], (parts[-2] if len(parts) > 1 else None)
        if ref in self.frame_count:
            return ref, None
        matches = sorted(set(self._by_name.get(ref, [])))
        if len(matches) > 1 and parent is not None:
            matches = [m for m in matches if self.camera.get(m) == parent] or matches
        if len(matches) == 1:
            return matches[0], None
        if not matches:
            return None, f"unknown video {ref!r}"
        return None, f"video {ref!r} is ambiguous ({', '.join(matches)}); use the video_id"


def parse_image_name(name: str, index: VideoIndex) -> tuple[str | None, str | None, str | None]:
    """Split an image path into ``(video_ref, frame_text, problem)``.

    Tries the directory form ``<video>/<frame>.jpg`` first, then the flat
    form ``<video>_<frame>.jpg`` (see the module docstring).
    """
    parts = Path(name.replace("\\", "/")).parts
    if not parts:
        return None, None, f"empty image name {name!r}"
    stem = Path(parts[-1]).stem
    dir_match = _DIR_FRAME_RE.match(stem)
    if dir_match and len(parts) > 1:
        vid, _ = index.resolve(parts[-2])
        if vid is not None:
            return vid, dir_match.group(1), None
    flat = _FLAT_FRAME_RE.match(stem)
    if flat:
        vid, problem = index.resolve(flat.group("video"))
        if vid is not None:
            return vid, flat.group("frame"), None
        if not (dir_match and len(parts) > 1):
            return None, None, f"image {name!r}: {problem}"
    if dir_match and len(parts) > 1:
        return None, None, f"image {name!r}: unknown video {parts[-2]!r}"
    return None, None, f"cannot read video and frame from image name {name!r}"


def escapes(ref: str, root: Path) -> bool:
    """True when ``ref`` (relative to ``root`` unless absolute) leaves ``root``."""
    p = Path(ref.replace("\\", "/"))
    full = Path(os.path.normpath(p if p.is_absolute() else root / p))
    return not full.is_relative_to(root)


def clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None

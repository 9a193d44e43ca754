"""The label frame index: which frames each label file names, per video reference, cached.

Ingestion always samples the frames a label file names (:func:`LabelFrameIndex.frames_for_video`).
Parsing every label file for every video made a 52 MB CSV cost ~10 s per video, so the
frames are indexed once per label-file change and ingestion reads the index:

* :func:`frame_refs` reads one file (CSV column-wise in polars; COCO / FiftyOne JSON through
  their readers) into ``{video reference: sorted frame indices}``, the reference as the file
  writes it (``cam1__line_0001``, ``line_0001.mp4``, ``videos/cam1/line_0001.mp4``, the video
  part of an image name). References are resolved to a video id only at lookup, so the index
  does not depend on which videos are known yet.
* :class:`LabelFrameIndex` holds one entry per label file, fingerprinted by
  ``(key, size, mtime)``; :meth:`~LabelFrameIndex.refresh` re-reads only new or changed files
  and drops removed ones.

The caller stores it as one JSON document (``assets/ingest.py``:
``artifacts/label_frame_index.json``)::

    {"version": 1, "files": {"<key>": {"size": int, "mtime": float,
                                       "refs": {"<video ref>": [frame, ...]}}}}

written whole (temp file + rename, or one S3 put): a crash leaves the previous index or the
new one, and a stale entry is re-read because its fingerprint no longer matches. A file
changed in place with the same size and mtime is not noticed (the same rule as videos).

As before the index, this is a sampling hint, not an import: bad rows are skipped and an
unreadable file names no frames (the ``labels`` asset reports it). One difference: an image
name such as ``x/frame_12.jpg`` is read in its directory form (video ``x``) even when ``x``
is no video; it then names no frame, as before, unless a video is called ``frame``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from data_quality.label_formats.common import LabelFileError, VideoIndex, escapes

__all__ = ["INDEX_VERSION", "LabelFrameIndex", "frame_refs"]

INDEX_VERSION = 1


class _AnyVideo(VideoIndex):
    """Accepts every reference as written, so image names keep their raw video part."""

    def __init__(self) -> None:
        self.frame_count, self.camera, self._by_name = {}, {}, {}

    def resolve(self, ref: str) -> tuple[str | None, str | None]:
        return ref.strip(), None


def _csv_refs(path: Path, root: Path) -> dict[str, list[int]]:
    try:
        df = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    except Exception:  # polars raises several error types for malformed CSV: no frames
        return {}
    df = df.rename({c: c.strip().lower() for c in df.columns})
    if not {"video", "frame_index", "label"} <= set(df.columns):
        return {}
    df = df.select(
        ref=pl.col("video").str.strip_chars(),
        text=pl.col("frame_index").str.strip_chars(),
    ).filter(pl.col("ref") != "", pl.col("text").str.contains(r"^[+-]?\d+$"))
    df = df.select(
        "ref", frame=pl.col("text").str.strip_prefix("+").cast(pl.Int64, strict=False)
    ).filter(pl.col("frame") >= 0)
    refs = df.group_by("ref").agg(pl.col("frame").unique().sort())
    return {
        ref: frames
        for ref, frames in refs.iter_rows()
        if not (("/" in ref or "\\" in ref) and escapes(ref, root))
    }


def _json_refs(path: Path, root: Path) -> dict[str, list[int]]:
    from data_quality.label_formats.coco import read_coco
    from data_quality.label_formats.fiftyone import read_fiftyone
    from data_quality.label_formats.validation import INT_RE

    data = json.loads(path.read_text(encoding="utf-8-sig"))
    if isinstance(data, dict) and "images" in data:
        rows = read_coco(path, data, root, _AnyVideo(), None)
    elif isinstance(data, dict) and "labels" in data:
        rows = read_fiftyone(path, data, root, _AnyVideo())
    else:
        return {}
    refs: dict[str, set[int]] = {}
    for row in rows:
        if row.problem or row.video is None or row.frame is None or not INT_RE.match(row.frame):
            continue
        if int(row.frame) >= 0:
            refs.setdefault(row.video, set()).add(int(row.frame))
    return {ref: sorted(frames) for ref, frames in refs.items()}


def frame_refs(path: Path | str, *, landing_root: Path | str) -> dict[str, list[int]]:
    """Frames one label file names, per video reference as the file writes it.

    Parameters
    ----------
    path : Path or str
        A CSV, COCO JSON or FiftyOne ``labels.json`` file (local).
    landing_root : Path or str
        The landing zone; references that leave it are dropped.

    Returns
    -------
    dict of str to list of int
        ``{reference: sorted distinct frame indices >= 0}``; empty for an unreadable file.
    """
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(landing_root))
    suffix = real.suffix.lower()
    try:
        if suffix == ".csv":
            return _csv_refs(real, root)
        if suffix == ".json":
            return _json_refs(real, root)
    except (LabelFileError, OSError, ValueError):
        return {}
    return {}


class LabelFile(Protocol):
    """What the index needs of a stored label file (``lake.storage.StoredFile``)."""

    key: str
    size: int
    mtime: float


@dataclass
class LabelFrameIndex:
    """Frames named by each label file, by video reference, fingerprinted per file.

    Attributes
    ----------
    files : dict
        ``key -> {"size": int, "mtime": float, "refs": {reference: [frame, ...]}}``.
    """

    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def loads(cls, data: bytes | None) -> LabelFrameIndex:
        """The index stored by :meth:`dumps`; empty for ``None``, another version or bad JSON."""
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION:
            return cls()
        return cls(files=dict(doc.get("files") or {}))

    def dumps(self) -> bytes:
        return json.dumps(
            {"version": INDEX_VERSION, "files": self.files}, separators=(",", ":")
        ).encode()

    def _fresh(self, f: LabelFile) -> bool:
        entry = self.files.get(f.key)
        return entry is not None and entry["size"] == f.size and entry["mtime"] == f.mtime

    def refresh(
        self,
        files: Iterable[LabelFile],
        open_local: Callable[[Any], contextlib.AbstractContextManager[tuple[Path, Path]]],
    ) -> bool:
        """Re-read new or changed files and forget removed ones; True if anything changed.

        Parameters
        ----------
        files : iterable of LabelFile
            The label files present now (key, size, mtime).
        open_local : callable
            ``open_local(file)`` is a context manager giving ``(local path, landing root)``.
        """
        files = list(files)
        changed = False
        for f in files:
            if self._fresh(f):
                continue
            with open_local(f) as (local, root):
                refs = frame_refs(local, landing_root=root)
            self.files[f.key] = {"size": f.size, "mtime": f.mtime, "refs": refs}
            changed = True
        present = {f.key for f in files}
        for key in [k for k in self.files if k not in present]:
            del self.files[key]
            changed = True
        return changed

    def frames_for_video(self, video_id: str, file: str) -> set[int]:
        """Frame indices any indexed file names for this video (``file``: its file name)."""
        one = VideoIndex(
            pl.DataFrame(
                {"video_id": [video_id], "file": [file], "frame_count": [None]},
                schema={"video_id": pl.String, "file": pl.String, "frame_count": pl.Int64},
            )
        )
        out: set[int] = set()
        for entry in self.files.values():
            for ref, frames in entry["refs"].items():
                if ref == video_id or one.resolve(ref)[0] == video_id:
                    out.update(frames)
        return out

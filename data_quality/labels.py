"""Label import and validation: CSV, COCO JSON and FiftyOne classification exports.

Every reader returns the same long table, one row per (frame, annotator)::

    video_id: str, frame_index: Int64, label: str, annotator: str, source: str

and validates *before* returning: a file with any bad row raises
:class:`LabelFileError` listing every offending row, so the caller can keep
the previous labels untouched (all-or-nothing import).

This module is the front door (:func:`read_label_file`, :func:`frames_for_video`); each
format is one module of :mod:`data_quality.label_formats` and the checks live in
:mod:`data_quality.label_formats.validation` (their public names are re-exported here).

Accepted formats
----------------
CSV (``*.csv``)
    Columns ``video``, ``frame_index``, ``label`` and optional ``annotator``
    (default ``"unknown"``); other columns are ignored, header names are
    matched case-insensitively. ``video`` may be a video_id
    (``cam1__line_0001``), a file name (``line_0001.mp4``), a file stem
    (``line_0001``) or a landing-zone path ending in the file name
    (``videos/cam1/line_0001.mp4``). Row numbers in messages count data rows
    from 1 (the header is not a row).
COCO JSON (``*.json`` with an ``images`` list)
    Parsed with :func:`fiftyone.utils.coco.load_coco_detection_annotations`.
    Classification files carry one annotation (a ``category_id``) per image;
    detection files may carry several boxes per image. The frame label of an
    image is the category with the most annotations; ties go to the larger
    total box area, then to the alphabetically first name. Images without
    annotations are skipped unless ``empty_label`` is given (e.g. ``"good"``
    for a defect detector whose clean frames have no boxes). The annotator is
    the annotation's ``annotator`` attribute (CVAT ``attributes`` included),
    else the image's ``annotator`` key, else ``info.contributor``, else
    ``"unknown"``; an image labelled by several annotators yields one row each.
FiftyOne ``FiftyOneImageClassificationDataset`` (``labels.json`` with a ``labels`` dict)
    Targets may be a class index (with ``classes``), a label string or a dict
    ``{"label": ..., "attributes": {"annotator": ...}}``; multi-label lists are
    rejected.

Image names (COCO ``file_name``, FiftyOne keys)
    Either ``<video>/<frame>.<ext>`` (directory per video, the stem being the
    frame number, optionally prefixed ``frame`` / ``frame_``) or a flat
    ``<video>_<frame>.<ext>`` / ``<video>-<frame>`` / ``<video>_frame_<frame>``,
    where ``<video>`` is any form accepted for the CSV ``video`` column and
    leading folders are ignored (``data/cam1__line_0001/000012.jpg``).

Class names
    Every label (and every name in an explicit class list) must satisfy
    :data:`CLASS_NAME_RULE`: 1 to 64 characters, each a letter, a digit, ``_``,
    ``-``, ``.`` or a space, not starting or ending with a space (``"scratch"``,
    ``"dent-2"``, ``"no defect"``). Commas, quotes, newlines and control
    characters are rejected, so a name is always safe in a table, a file name,
    a FiftyOne field and a log line.

Paths
    The label file and every referenced path must stay inside ``landing_root``;
    relative references are resolved against ``landing_root``, so ``../x``
    escapes. Landing zones on object storage must be staged locally first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from data_quality.label_formats.coco import read_coco
from data_quality.label_formats.common import LabelFileError, RawRow, VideoIndex
from data_quality.label_formats.csv import read_clean_csv, read_csv_rows
from data_quality.label_formats.fiftyone import read_fiftyone
from data_quality.label_formats.validation import (
    CLASS_NAME_RULE,
    INT_RE,
    check_class_names,
    class_name_problem,
    valid_class_names,
    validate_rows,
)

__all__ = [
    "CLASS_NAME_RULE",
    "LABEL_SCHEMA",
    "LabelFileError",
    "check_class_names",
    "class_list",
    "class_name_problem",
    "valid_class_names",
    "frames_for_video",
    "read_label_file",
]

LABEL_SCHEMA: dict[str, Any] = {
    "video_id": pl.String,
    "frame_index": pl.Int64,
    "label": pl.String,
    "annotator": pl.String,
    "source": pl.String,
}
"""Columns and dtypes of every table returned by :func:`read_label_file`."""


def read_label_file(
    path: Path | str,
    *,
    videos: pl.DataFrame,
    classes: Sequence[str] | None = None,
    landing_root: Path | str,
    empty_label: str | None = None,
) -> pl.DataFrame:
    """Read and validate one label file (CSV, COCO JSON or FiftyOne ``labels.json``).

    Parameters
    ----------
    path : Path or str
        The label file; must lie inside ``landing_root``.
    videos : pl.DataFrame
        Known videos, columns ``video_id``, ``file`` (file name, e.g.
        ``"line_0001.mp4"``), ``frame_count`` (null = unknown, range not
        checked) and optionally ``camera_id`` (disambiguates equal file names
        given as ``<camera_id>/<file>``).
    classes : sequence of str, optional
        Allowed class names; ``None`` accepts any name that obeys :data:`CLASS_NAME_RULE`.
    landing_root : Path or str
        The landing zone; the file and every path it references must stay inside.
    empty_label : str, optional
        COCO only: label for images that have no annotations (else skipped).

    Returns
    -------
    pl.DataFrame
        Columns of :data:`LABEL_SCHEMA`: ``video_id``, ``frame_index`` (Int64,
        ``0 <= frame_index < frame_count``), ``label``, ``annotator`` (default
        ``"unknown"``), ``source`` (the file name); sorted by
        (video_id, frame_index, annotator).

    Raises
    ------
    ValueError
        ``classes`` or ``empty_label`` break :data:`CLASS_NAME_RULE` (nothing is read).
    LabelFileError
        Listing every offending row: unknown or ambiguous video, frame index
        not an integer / negative / out of range, empty or unknown class, a class
        name breaking :data:`CLASS_NAME_RULE`,
        duplicate (video, frame, annotator), a path outside the landing zone,
        or an unreadable file.
    """
    check_class_names([*(classes or []), *([empty_label] if empty_label is not None else [])])
    path = Path(path)
    root = Path(os.path.realpath(landing_root))
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise LabelFileError(path, [f"label file is outside the landing zone {root}"])
    if not real.is_file():
        raise LabelFileError(path, ["label file does not exist"])
    index = VideoIndex(videos)
    if real.suffix.lower() == ".csv":
        fast = read_clean_csv(real, root, index, classes)
        if fast is not None:
            return fast.with_columns(source=pl.lit(path.name)).sort(
                ["video_id", "frame_index", "annotator"]
            )
    rows = _read_rows(path, real, root, index, empty_label)
    good, problems = validate_rows(rows, index, classes)
    if problems:
        raise LabelFileError(path, problems)
    df = pl.DataFrame(
        {
            "video_id": [r[0] for r in good],
            "frame_index": [r[1] for r in good],
            "label": [r[2] for r in good],
            "annotator": [r[3] for r in good],
            "source": [path.name] * len(good),
        },
        schema=LABEL_SCHEMA,
    )
    return df.sort(["video_id", "frame_index", "annotator"])


def _read_rows(
    path: Path, real: Path, root: Path, index: VideoIndex, empty_label: str | None
) -> list[RawRow]:
    """Unvalidated rows of a CSV, COCO or FiftyOne label file (dispatch on suffix and content)."""
    suffix = real.suffix.lower()
    if suffix == ".csv":
        return read_csv_rows(real, root)
    if suffix == ".json":
        try:
            data = json.loads(real.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise LabelFileError(path, [f"invalid JSON: {exc}"]) from exc
        if isinstance(data, dict) and "images" in data:
            return read_coco(real, data, root, index, empty_label)
        if isinstance(data, dict) and "labels" in data:
            return read_fiftyone(real, data, root, index)
        raise LabelFileError(path, ["JSON is neither COCO ('images') nor FiftyOne ('labels')"])
    raise LabelFileError(path, [f"unsupported label file type {suffix!r} (use .csv or .json)"])


def frames_for_video(
    path: Path | str, *, video_id: str, file: str, landing_root: Path | str
) -> set[int]:
    """Frame indices a label file (CSV, COCO or FiftyOne) gives for one video.

    A sampling hint for ingestion, not an import: rows for other videos and bad rows are
    ignored, and an unreadable file gives an empty set (the ``labels`` asset reports it).
    """
    one = pl.DataFrame(
        {"video_id": [video_id], "file": [file], "frame_count": [None]},
        schema={"video_id": pl.String, "file": pl.String, "frame_count": pl.Int64},
    )
    index = VideoIndex(one)
    root = Path(os.path.realpath(landing_root))
    try:
        rows = _read_rows(Path(path), Path(os.path.realpath(path)), root, index, None)
    except (LabelFileError, OSError, ValueError):
        return set()
    frames = set()
    for row in rows:
        if row.problem or row.video is None or row.frame is None or not INT_RE.match(row.frame):
            continue
        ours = row.video == video_id or index.resolve(row.video)[0] == video_id
        if ours and int(row.frame) >= 0:
            frames.add(int(row.frame))
    return frames


def class_list(labels: pl.DataFrame) -> list[str]:
    """Sorted distinct class names of a labels table (``label`` column), nulls dropped."""
    return sorted(labels.get_column("label").drop_nulls().unique().to_list())

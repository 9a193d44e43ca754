"""Label import and validation: CSV, COCO JSON and FiftyOne classification exports.

Every reader returns the same long table, one row per (frame, annotator)::

    video_id: str, frame_index: Int64, label: str, annotator: str, source: str

and validates *before* returning: a file with any bad row raises
:class:`LabelFileError` listing every offending row, so the caller can keep
the previous labels untouched (all-or-nothing import).

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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

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

CLASS_NAME_RULE = (
    "class names are 1-64 characters, each a letter, a digit, '_', '-', '.' or a space, "
    "with no leading or trailing space"
)
"""The rule every class name obeys (quoted in every error about a class name)."""
_MAX_CLASS_NAME = 64
_CLASS_NAME_RE = re.compile(r"^(?:[^\W_]|[_.-])(?:(?:[^\W_]|[_. -]){0,62}(?:[^\W_]|[_.-]))?$")
_MAX_SHOWN_PROBLEMS = 20
_INT_RE = re.compile(r"^[+-]?\d+$")
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


def class_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid class name (see :data:`CLASS_NAME_RULE`), or ``None`` if it is.

    Letters and digits are Unicode letters and digits (``"Kratzer"``, ``"défaut"``);
    the message shows at most 40 characters of a long name.
    """
    if not isinstance(name, str):
        return f"class name {name!r} is not a string ({CLASS_NAME_RULE})"
    if _CLASS_NAME_RE.fullmatch(name) and len(name) <= _MAX_CLASS_NAME:
        return None
    shown = repr(name) if len(name) <= 40 else f"{name[:40]!r}... ({len(name)} characters)"
    return f"invalid class name {shown}: {CLASS_NAME_RULE}"


def valid_class_names(labels: pl.Series) -> pl.Series:
    """Boolean Series, True where ``labels[i]`` obeys :data:`CLASS_NAME_RULE` (null counts as valid).

    Checks each distinct value once, so it is cheap on a long labels table.
    """
    ok = [v for v in labels.drop_nulls().unique().to_list() if class_name_problem(v) is None]
    return (labels.is_in(ok) | labels.is_null()).alias("valid_class_name")


def check_class_names(names: Iterable[object]) -> None:
    """Raise ``ValueError`` naming every invalid class name (see :data:`CLASS_NAME_RULE`)."""
    problems = [p for p in map(class_name_problem, names) if p]
    if problems:
        raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class _RawRow:
    """One label before validation; ``where`` prefixes its messages."""

    where: str
    video: str | None
    frame: str | None
    label: str | None
    annotator: str | None
    problem: str | None = None  # set by a reader when the row is already known bad


class _VideoIndex:
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


def _parse_image_name(name: str, index: _VideoIndex) -> tuple[str | None, str | None, str | None]:
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


def _escapes(ref: str, root: Path) -> bool:
    """True when ``ref`` (relative to ``root`` unless absolute) leaves ``root``."""
    p = Path(ref.replace("\\", "/"))
    full = Path(os.path.normpath(p if p.is_absolute() else root / p))
    return not full.is_relative_to(root)


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# ---------------------------------------------------------------- readers ---


def _read_csv(path: Path, root: Path) -> list[_RawRow]:
    try:
        df = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    except Exception as exc:  # polars raises several error types for malformed CSV
        raise LabelFileError(path, [f"not a readable CSV file: {exc}"]) from exc
    df = df.rename({c: c.strip().lower() for c in df.columns})
    missing = [c for c in ("video", "frame_index", "label") if c not in df.columns]
    if missing:
        raise LabelFileError(path, [f"missing required column(s): {', '.join(missing)}"])
    rows = []
    has_annotator = "annotator" in df.columns
    for i, r in enumerate(df.iter_rows(named=True), start=1):
        video = _clean(r["video"])
        problem = None
        if video is not None and ("/" in video or "\\" in video) and _escapes(video, root):
            problem = f"video path {video!r} is outside the landing zone"
        rows.append(
            _RawRow(
                where=f"row {i}",
                video=video,
                frame=_clean(r["frame_index"]),
                label=_clean(r["label"]),
                annotator=_clean(r["annotator"]) if has_annotator else None,
                problem=problem,
            )
        )
    return rows


def _frame_label_from_objects(objects: list[Any], classes_map: dict[Any, str]) -> str:
    """Majority category; ties by larger total box area, then by name."""
    count: dict[str, int] = {}
    area: dict[str, float] = {}
    for obj in objects:
        name = classes_map[obj.category_id]
        count[name] = count.get(name, 0) + 1
        a = obj.area
        if a is None and obj.bbox is not None and len(obj.bbox) == 4:
            a = float(obj.bbox[2]) * float(obj.bbox[3])
        area[name] = area.get(name, 0.0) + float(a or 0.0)
    return min(count, key=lambda n: (-count[n], -area[n], n))


def _read_coco(path: Path, data: dict, root: Path, index: _VideoIndex, empty_label: str | None):
    problems = []
    images = data.get("images") or []
    categories = data.get("categories")
    if not isinstance(images, list) or not isinstance(categories, list) or not categories:
        raise LabelFileError(path, ["COCO file needs an 'images' list and a 'categories' list"])
    image_ids = {img.get("id") for img in images if isinstance(img, dict)}
    cat_ids = {c.get("id") for c in categories if isinstance(c, dict)}
    for j, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            problems.append(f"image #{j}: needs 'id' and 'file_name'")
    for j, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict):
            problems.append(f"annotation #{j}: not an object")
            continue
        where = f"annotation #{j} (id={ann.get('id')})"
        if ann.get("image_id") not in image_ids:
            problems.append(f"{where}: unknown image_id {ann.get('image_id')!r}")
        elif ann.get("category_id") not in cat_ids:
            problems.append(f"{where}: unknown category_id {ann.get('category_id')!r}")
    if problems:
        raise LabelFileError(path, problems)

    from fiftyone.utils.coco import load_coco_detection_annotations

    info, classes_map, _, images_by_id, objects_by_image = load_coco_detection_annotations(
        str(path), extra_attrs=True
    )
    objects_by_image = objects_by_image or {}
    default_annotator = _clean((info or {}).get("contributor"))
    rows = []
    for image_id in sorted(images_by_id, key=str):
        img = images_by_id[image_id]
        name = str(img["file_name"])
        where = f"image id={image_id} ({name})"
        if _escapes(name, root):
            rows.append(
                _RawRow(where, None, None, None, None, f"path {name!r} is outside the landing zone")
            )
            continue
        video, frame, problem = _parse_image_name(name, index)
        by_annotator: dict[str, list[Any]] = {}
        for obj in objects_by_image.get(image_id, []):
            who = (
                _clean((getattr(obj, "attributes", None) or {}).get("annotator"))
                or _clean(img.get("annotator"))
                or default_annotator
                or "unknown"
            )
            by_annotator.setdefault(who, []).append(obj)
        if not by_annotator:
            if empty_label is None:
                continue
            who = _clean(img.get("annotator")) or default_annotator or "unknown"
            rows.append(_RawRow(where, video, frame, empty_label, who, problem))
            continue
        for who in sorted(by_annotator):
            label = _frame_label_from_objects(by_annotator[who], classes_map)
            rows.append(_RawRow(where, video, frame, label, who, problem))
    return rows


def _read_fiftyone(path: Path, data: dict, root: Path, index: _VideoIndex) -> list[_RawRow]:
    classes = data.get("classes")
    labels = data.get("labels")
    if not isinstance(labels, dict):
        raise LabelFileError(path, ["FiftyOne labels.json needs a 'labels' object"])
    rows = []
    for key in sorted(labels):
        target = labels[key]
        where = f"labels[{key!r}]"
        if target is None:
            continue
        if _escapes(key, root):
            rows.append(
                _RawRow(where, None, None, None, None, f"path {key!r} is outside the landing zone")
            )
            continue
        video, frame, problem = _parse_image_name(key, index)
        annotator = None
        if isinstance(target, list):
            problem = problem or "multi-label targets are not supported"
            target = None
        elif isinstance(target, dict):
            annotator = _clean((target.get("attributes") or {}).get("annotator"))
            target = target.get("label")
        if isinstance(target, int) and not isinstance(target, bool) and classes:
            if 0 <= target < len(classes):
                target = classes[target]
            else:
                problem = problem or f"class index {target} out of range ({len(classes)} classes)"
        rows.append(_RawRow(where, video, frame, _clean(target), annotator, problem))
    return rows


# ------------------------------------------------------------- validation ---


def _validate(
    rows: Iterable[_RawRow], index: _VideoIndex, classes: Sequence[str] | None
) -> tuple[list[tuple[str, int, str, str]], list[str]]:
    known = set(classes) if classes is not None else None
    out: list[tuple[str, int, str, str]] = []
    problems: list[str] = []
    seen: dict[tuple[str, int, str], tuple[str, str]] = {}
    for row in rows:
        errs = [row.problem] if row.problem else []
        vid = None
        if not row.problem:
            if row.video is None:
                errs.append("missing video")
            else:
                vid, err = index.resolve(row.video)
                if err:
                    errs.append(err)
        frame = None
        if row.frame is None:
            if not row.problem:
                errs.append("missing frame_index")
        elif not _INT_RE.match(row.frame):
            errs.append(f"frame_index {row.frame!r} is not an integer")
        else:
            frame = int(row.frame)
            count = index.frame_count.get(vid) if vid is not None else None
            if frame < 0:
                errs.append(f"frame_index {frame} is negative")
            elif count is not None and frame >= count:
                errs.append(f"frame_index {frame} out of range for video {vid} ({count} frames)")
        if row.label is None:
            if not row.problem:
                errs.append("empty label")
        elif (bad_name := class_name_problem(row.label)) is not None:
            errs.append(bad_name)
        elif known is not None and row.label not in known:
            errs.append(f"unknown class {row.label!r} (known: {', '.join(sorted(known))})")
        annotator = row.annotator or "unknown"
        if not errs and vid is not None and frame is not None and row.label is not None:
            key = (vid, frame, annotator)
            if key in seen:
                first_where, first_label = seen[key]
                how = (
                    f"the same label {row.label!r}"
                    if first_label == row.label
                    else f"conflicting label {row.label!r} vs {first_label!r}"
                )
                errs.append(
                    f"duplicate of {first_where} ({vid} frame {frame}, annotator {annotator!r}) with {how}"
                )
            else:
                seen[key] = (row.where, row.label)
                out.append((vid, frame, row.label, annotator))
        problems += [f"{row.where}: {e}" for e in errs]
    return out, problems


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
    index = _VideoIndex(videos)
    if real.suffix.lower() == ".csv":
        fast = _csv_fast_path(real, root, index, classes)
        if fast is not None:
            return fast.with_columns(source=pl.lit(path.name)).sort(
                ["video_id", "frame_index", "annotator"]
            )
    rows = _read_rows(path, real, root, index, empty_label)
    good, problems = _validate(rows, index, classes)
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


def _csv_fast_path(
    path: Path, root: Path, index: _VideoIndex, classes: Sequence[str] | None
) -> pl.DataFrame | None:
    """A clean CSV, validated column-wise in polars; ``None`` when any rule might fail.

    Each distinct video reference and class name is checked once; any doubt (an unreadable
    file, a missing column, a bad row) returns ``None`` so the row-by-row path reports every
    problem with its row number. Same result as that path for a clean file, ~15x faster.
    """
    try:
        df = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    except Exception:  # the row path reports it
        return None
    df = df.rename({c: c.strip().lower() for c in df.columns})
    if not {"video", "frame_index", "label"} <= set(df.columns):
        return None
    clean = [
        pl.col(c).str.strip_chars().replace("", None).alias(c)
        for c in ("video", "frame_index", "label", "annotator")
        if c in df.columns
    ]
    df = df.select(clean)
    if "annotator" not in df.columns:
        df = df.with_columns(annotator=pl.lit(None, pl.String))
    df = df.with_columns(pl.col("annotator").fill_null("unknown"))
    if df.select(pl.any_horizontal(pl.col("video", "frame_index", "label").is_null().any())).item():
        return None
    refs = df["video"].unique().to_list()
    resolved = {}
    for ref in refs:
        if ("/" in ref or "\\" in ref) and _escapes(ref, root):
            return None
        vid, problem = index.resolve(ref)
        if problem:
            return None
        resolved[ref] = vid
    names = df["label"].unique().to_list()
    known = set(classes) if classes is not None else None
    if any(class_name_problem(n) for n in names) or (known is not None and set(names) - known):
        return None
    if not df["frame_index"].str.contains(r"^[+-]?\d+$").all():
        return None
    counts = {v: c for v, c in index.frame_count.items() if c is not None}
    out = df.select(
        video_id=pl.col("video").replace_strict(resolved, return_dtype=pl.String),
        frame_index=pl.col("frame_index").cast(pl.Int64, strict=False),
        label=pl.col("label"),
        annotator=pl.col("annotator"),
    )
    limit = pl.col("video_id").replace_strict(counts, default=None, return_dtype=pl.Int64)
    bad = out.select(
        pl.col("frame_index").is_null().any()
        | (pl.col("frame_index") < 0).any()
        | (pl.col("frame_index") >= limit).fill_null(False).any()
        | pl.struct("video_id", "frame_index", "annotator").is_duplicated().any()
    ).item()
    return None if bad else out


def _read_rows(
    path: Path, real: Path, root: Path, index: _VideoIndex, empty_label: str | None
) -> list[_RawRow]:
    """Unvalidated rows of a CSV, COCO or FiftyOne label file (dispatch on suffix and content)."""
    suffix = real.suffix.lower()
    if suffix == ".csv":
        return _read_csv(real, root)
    if suffix == ".json":
        try:
            data = json.loads(real.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise LabelFileError(path, [f"invalid JSON: {exc}"]) from exc
        if isinstance(data, dict) and "images" in data:
            return _read_coco(real, data, root, index, empty_label)
        if isinstance(data, dict) and "labels" in data:
            return _read_fiftyone(real, data, root, index)
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
    index = _VideoIndex(one)
    root = Path(os.path.realpath(landing_root))
    try:
        rows = _read_rows(Path(path), Path(os.path.realpath(path)), root, index, None)
    except (LabelFileError, OSError, ValueError):
        return set()
    frames = set()
    for row in rows:
        if row.problem or row.video is None or row.frame is None or not _INT_RE.match(row.frame):
            continue
        ours = row.video == video_id or index.resolve(row.video)[0] == video_id
        if ours and int(row.frame) >= 0:
            frames.add(int(row.frame))
    return frames


def class_list(labels: pl.DataFrame) -> list[str]:
    """Sorted distinct class names of a labels table (``label`` column), nulls dropped."""
    return sorted(labels.get_column("label").drop_nulls().unique().to_list())

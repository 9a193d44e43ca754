"""Validation of imported labels: the class-name rule and the per-row checks of every format."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import polars as pl

from data_quality.label_formats.common import RawRow, VideoIndex

__all__ = [
    "CLASS_NAME_RULE",
    "INT_RE",
    "check_class_names",
    "class_name_problem",
    "valid_class_names",
    "validate_rows",
]

CLASS_NAME_RULE = (
    "class names are 1-64 characters, each a letter, a digit, '_', '-', '.' or a space, "
    "with no leading or trailing space"
)
"""The rule every class name obeys (quoted in every error about a class name)."""
_MAX_CLASS_NAME = 64
_CLASS_NAME_RE = re.compile(r"^(?:[^\W_]|[_.-])(?:(?:[^\W_]|[_. -]){0,62}(?:[^\W_]|[_.-]))?$")
INT_RE = re.compile(r"^[+-]?\d+$")
"""A frame index as text (sign allowed; the range is checked separately)."""


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


def validate_rows(
    rows: Iterable[RawRow], index: VideoIndex, classes: Sequence[str] | None
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
        elif not INT_RE.match(row.frame):
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

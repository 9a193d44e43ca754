"""CSV label files: ``video,frame_index,label[,annotator]``, read row by row or column-wise.

:func:`read_clean_csv` validates a clean file column-wise in polars (~15x faster); any doubt
sends the file to :func:`read_csv_rows`, whose rows :func:`~data_quality.label_formats.validation.validate_rows`
reports one by one with their row numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from data_quality.label_formats.common import LabelFileError, RawRow, VideoIndex, clean, escapes
from data_quality.label_formats.validation import class_name_problem

__all__ = ["read_clean_csv", "read_csv_rows"]


def read_csv_rows(path: Path, root: Path) -> list[RawRow]:
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
        video = clean(r["video"])
        problem = None
        if video is not None and ("/" in video or "\\" in video) and escapes(video, root):
            problem = f"video path {video!r} is outside the landing zone"
        rows.append(
            RawRow(
                where=f"row {i}",
                video=video,
                frame=clean(r["frame_index"]),
                label=clean(r["label"]),
                annotator=clean(r["annotator"]) if has_annotator else None,
                problem=problem,
            )
        )
    return rows


def read_clean_csv(
    path: Path, root: Path, index: VideoIndex, classes: Sequence[str] | None
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
        if ("/" in ref or "\\" in ref) and escapes(ref, root):
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

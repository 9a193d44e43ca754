"""Merge landed label files and reviewers' corrections into the ``labels`` table.

What the ``labels`` and ``label_reviews`` assets compute between reading and writing the lake:
:func:`merge_labels` validates every landed label file (all-or-nothing per file, through
:func:`data_quality.labels.read_label_file`), keeps what a rejected file gave last time, adds
the reviewers' corrections and reports what changed; :func:`review_rows` turns corrections
pulled from FiftyOne into rows of the ``label_reviews`` table. Neither touches storage: the
assets hand in data frames and staged local files.

Both tables have the columns of :data:`LABELS_SCHEMA`::

    video_id: str, frame_index: Int64, label: str, annotator: str, source: str,
    imported_at: Datetime(us, UTC)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from data_quality.labels import (
    LabelFileError,
    class_list,
    class_name_problem,
    read_label_file,
    valid_class_names,
)

__all__ = [
    "LABELS_SCHEMA",
    "LabelMerge",
    "LabelSource",
    "ReviewImport",
    "merge_labels",
    "review_rows",
]

LABELS_SCHEMA = pl.Schema(
    {
        "video_id": pl.String(),
        "frame_index": pl.Int64(),
        "label": pl.String(),
        "annotator": pl.String(),
        "source": pl.String(),
        "imported_at": pl.Datetime("us", "UTC"),
    }
)
"""Columns and dtypes of the ``labels`` and ``label_reviews`` tables."""

_COLUMNS = list(LABELS_SCHEMA)


@dataclass(frozen=True)
class LabelSource:
    """One landed label file, staged as a local file.

    Attributes
    ----------
    key : str
        The file's key in the landing zone (``labels/<name>``); the ``source`` of its rows.
    path : Path
        The local copy to read.
    uri : str
        Where the file lives; replaces ``path`` in error messages.
    mtime : float
        Modification time (POSIX seconds); the ``imported_at`` of its rows.
    landing_root : Path
        The landing zone the file and every path it references must stay inside.
    """

    key: str
    path: Path
    uri: str
    mtime: float
    landing_root: Path


@dataclass(frozen=True)
class LabelMerge:
    """Result of :func:`merge_labels`.

    Attributes
    ----------
    table : pl.DataFrame
        The new ``labels`` table, columns of :data:`LABELS_SCHEMA`, sorted by
        (video_id, frame_index, annotator, imported_at).
    changed : bool
        ``table`` differs from the previous table (or there was none): write a new version.
    rejected : dict of str to str
        ``file key -> error message`` (local path replaced by the file's uri), in file order.
    classes : list of str
        The explicit class list, else the sorted distinct labels of ``table``.
    per_annotator : pl.DataFrame
        Columns ``annotator``, ``len`` (rows), sorted by annotator.
    labels_on_failed_videos : int
        Rows of ``table`` on videos whose ingestion status is not ``ok``.
    """

    table: pl.DataFrame
    changed: bool
    rejected: dict[str, str]
    classes: list[str]
    per_annotator: pl.DataFrame
    labels_on_failed_videos: int

    @property
    def frames(self) -> int:
        """Distinct (video_id, frame_index) in ``table``."""
        return self.table.select("video_id", "frame_index").n_unique()

    def rejected_table(self) -> pl.DataFrame:
        """``rejected`` as a table: columns ``file``, ``error``."""
        files = list(self.rejected)
        return pl.DataFrame(
            {"file": files, "error": [self.rejected[f] for f in files]},
            schema={"file": pl.String, "error": pl.String},
        )

    def class_table(self) -> pl.DataFrame:
        """The ``label_classes`` table: columns ``class_index`` (Int64), ``name`` (str)."""
        return pl.DataFrame(
            {"class_index": range(len(self.classes)), "name": self.classes},
            schema={"class_index": pl.Int64, "name": pl.String},
        )


def known_videos(videos: pl.DataFrame) -> pl.DataFrame:
    """The video index label files are checked against.

    Parameters
    ----------
    videos : pl.DataFrame
        The ``videos`` table: ``video_id``, ``camera_id``, ``uri``, ``status``, ``frame_count``.

    Returns
    -------
    pl.DataFrame
        Columns ``video_id``, ``camera_id``, ``file`` (last part of ``uri``), ``frame_count``
        (null unless status is ``ok``: a video that failed ingestion is still known, its
        labels import with the frame range unchecked).
    """
    return videos.select(
        "video_id",
        "camera_id",
        file=pl.col("uri").str.split("/").list.last(),
        frame_count=pl.when(pl.col("status") == "ok").then(pl.col("frame_count")),
    )


def merge_labels(
    sources: Iterable[LabelSource],
    *,
    videos: pl.DataFrame,
    previous: pl.DataFrame | None,
    reviews: pl.DataFrame | None,
    classes: Sequence[str] = (),
    empty_label: str | None = None,
) -> LabelMerge:
    """Validate each label file and merge them with the reviewers' corrections.

    A file that fails validation is rejected as a whole; the rows it gave in ``previous``
    (with valid class names) are kept, so a broken re-upload never loses labels.

    Parameters
    ----------
    sources : iterable of LabelSource
        The landed label files, read in order (each only while the iteration is on it).
    videos : pl.DataFrame
        The ``videos`` table (see :func:`known_videos`).
    previous : pl.DataFrame or None
        The current ``labels`` table (columns of :data:`LABELS_SCHEMA`), None if none yet.
    reviews : pl.DataFrame or None
        The ``label_reviews`` table, None if none yet; rows with invalid class names are dropped.
    classes : sequence of str, optional
        Allowed classes; empty: every name that obeys the class-name rule.
    empty_label : str, optional
        COCO only: label for images without boxes.

    Returns
    -------
    LabelMerge

    Raises
    ------
    ValueError
        ``classes`` or ``empty_label`` break the class-name rule.
    """
    index = known_videos(videos)
    parts, rejected = [], {}
    for src in sources:
        try:
            df = read_label_file(
                src.path,
                videos=index,
                classes=list(classes) or None,
                landing_root=src.landing_root,
                empty_label=empty_label,
            )
            parts.append(df.with_columns(source=pl.lit(src.key), imported_at=_ts(src.mtime)))
        except LabelFileError as exc:
            rejected[src.key] = str(exc).replace(str(src.path), src.uri)
            if previous is not None:  # keep what this file gave last time (valid names only)
                parts.append(_valid(previous.filter(pl.col("source") == src.key)))
    if reviews is not None:
        parts.append(_valid(reviews.select(_COLUMNS)))
    table = (
        pl.concat([p.select(_COLUMNS).cast(LABELS_SCHEMA) for p in parts])
        if parts
        else pl.DataFrame(schema=LABELS_SCHEMA)
    ).sort("video_id", "frame_index", "annotator", "imported_at")
    changed = previous is None or not previous.sort(_COLUMNS[:5]).equals(table.sort(_COLUMNS[:5]))
    unusable = videos.filter(pl.col("status") != "ok")["video_id"].unique().to_list()
    return LabelMerge(
        table=table,
        changed=changed,
        rejected=rejected,
        classes=list(classes) or class_list(table),
        per_annotator=table.group_by("annotator").len().sort("annotator"),
        labels_on_failed_videos=table.filter(pl.col("video_id").is_in(unusable)).height,
    )


@dataclass(frozen=True)
class ReviewImport:
    """Result of :func:`review_rows`.

    Attributes
    ----------
    rows : pl.DataFrame
        Rows to append to ``label_reviews``: columns of :data:`LABELS_SCHEMA`
        (``imported_at`` is the correction's ``reviewed_at``).
    accepted : pl.DataFrame
        The corrections behind ``rows`` (input columns), to mark imported.
    problems : list of str
        ``"<video_id>#<frame_index>: <problem>"`` per correction with an invalid class name
        (left unimported until fixed in FiftyOne).
    """

    rows: pl.DataFrame
    accepted: pl.DataFrame
    problems: list[str]


def review_rows(corrections: pl.DataFrame) -> ReviewImport:
    """Split reviewers' corrections into rows to import and invalid class names.

    Parameters
    ----------
    corrections : pl.DataFrame
        Columns ``video_id``, ``frame_index``, ``label``, ``annotator``, ``source``,
        ``reviewed_at`` (as pulled from FiftyOne).

    Returns
    -------
    ReviewImport
    """
    valid = valid_class_names(corrections["label"])
    bad, accepted = corrections.filter(~valid), corrections.filter(valid)
    problems = [
        f"{row['video_id']}#{row['frame_index']}: {class_name_problem(row['label'])}"
        for row in bad.iter_rows(named=True)
    ]
    rows = accepted.select(*_COLUMNS[:5], imported_at="reviewed_at").cast(LABELS_SCHEMA)
    return ReviewImport(rows=rows, accepted=accepted, problems=problems)


def _valid(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows whose label obeys the class-name rule (drops rows written before it)."""
    return rows.filter(valid_class_names(rows["label"]))


def _ts(mtime: float) -> pl.Expr:
    return pl.lit(datetime.fromtimestamp(mtime, UTC)).cast(pl.Datetime("us", "UTC"))

"""Merging landed label files with the stored table and reviewers' corrections."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from data_quality.label_merge import LABELS_SCHEMA, LabelSource, merge_labels, review_rows

VIDEOS = pl.DataFrame(
    {
        "video_id": ["cam1__a", "cam1__b"],
        "camera_id": ["cam1", "cam1"],
        "uri": ["landing/videos/cam1/a.mp4", "landing/videos/cam1/b.mp4"],
        "status": ["ok", "corrupt"],
        "frame_count": [10, 10],
    }
)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _source(root: Path, name: str, text: str, mtime: float = 1_700_000_000.0) -> LabelSource:
    path = root / "labels" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return LabelSource(f"labels/{name}", path, f"s3://bucket/labels/{name}", mtime, root)


def _rows(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame([(*r, T0) for r in rows], schema=list(LABELS_SCHEMA), orient="row").cast(
        LABELS_SCHEMA
    )


def test_good_files_and_reviews_merge_sorted(tmp_path):
    good = _source(tmp_path, "a.csv", "video,frame_index,label,annotator\na.mp4,3,good,x\n")
    other = _source(tmp_path, "b.csv", "video,frame_index,label,annotator\nb.mp4,12,defect,y\n")
    reviews = _rows(("cam1__a", 1, "defect", "review", "fiftyone"))
    out = merge_labels([good, other], videos=VIDEOS, previous=None, reviews=reviews)
    assert out.table.schema == pl.Schema(LABELS_SCHEMA)
    assert out.table.select("video_id", "frame_index", "label", "source").rows() == [
        ("cam1__a", 1, "defect", "fiftyone"),
        ("cam1__a", 3, "good", "labels/a.csv"),
        ("cam1__b", 12, "defect", "labels/b.csv"),  # failed video: frame range unchecked
    ]
    assert out.changed and out.rejected == {} and out.frames == 3
    assert out.classes == ["defect", "good"]
    assert out.labels_on_failed_videos == 1
    assert out.per_annotator.rows() == [("review", 1), ("x", 1), ("y", 1)]
    assert out.class_table().rows() == [(0, "defect"), (1, "good")]
    assert out.table["imported_at"][1] == datetime.fromtimestamp(1_700_000_000.0, UTC)


def test_rejected_file_keeps_previous_valid_rows_and_names_the_uri(tmp_path):
    bad = _source(tmp_path, "a.csv", "video,frame_index,label\na.mp4,99,good\n")
    previous = _rows(
        ("cam1__a", 2, "good", "x", "labels/a.csv"),
        ("cam1__a", 4, "bad,name", "x", "labels/a.csv"),  # written before the class-name rule
        ("cam1__a", 5, "good", "x", "labels/gone.csv"),  # file removed: its rows go
    )
    out = merge_labels([bad], videos=VIDEOS, previous=previous, reviews=None)
    assert list(out.rejected) == ["labels/a.csv"]
    message = out.rejected["labels/a.csv"]
    assert "s3://bucket/labels/a.csv" in message and str(tmp_path) not in message
    assert out.table.select("frame_index", "label").rows() == [(2, "good")]
    assert out.changed
    assert out.rejected_table().rows() == [("labels/a.csv", message)]


def test_unchanged_input_is_not_a_new_version(tmp_path):
    src = _source(tmp_path, "a.csv", "video,frame_index,label\na.mp4,3,good\n")
    first = merge_labels([src], videos=VIDEOS, previous=None, reviews=None)
    again = merge_labels([src], videos=VIDEOS, previous=first.table, reviews=None)
    assert not again.changed and again.table.equals(first.table)


def test_explicit_classes_win_and_bad_names_raise(tmp_path):
    src = _source(tmp_path, "a.csv", "video,frame_index,label\na.mp4,3,good\n")
    out = merge_labels(
        [src], videos=VIDEOS, previous=None, reviews=None, classes=["good", "defect"]
    )
    assert out.classes == ["good", "defect"]
    assert merge_labels([], videos=VIDEOS, previous=None, reviews=None).table.height == 0
    with pytest.raises(ValueError):
        merge_labels([src], videos=VIDEOS, previous=None, reviews=None, classes=["a,b"])


def test_review_rows_split_invalid_class_names():
    corrections = pl.DataFrame(
        {
            "video_id": ["cam1__a", "cam1__a"],
            "frame_index": [1, 2],
            "label": ["defect", "bad\nname"],
            "annotator": ["review", "review"],
            "source": ["fiftyone", "fiftyone"],
            "reviewed_at": [T0, T0],
        }
    )
    out = review_rows(corrections)
    assert out.rows.schema == pl.Schema(LABELS_SCHEMA)
    assert out.rows.select("frame_index", "label", "imported_at").rows() == [(1, "defect", T0)]
    assert out.accepted.height == 1 and "reviewed_at" in out.accepted.columns
    assert len(out.problems) == 1 and out.problems[0].startswith("cam1__a#2: ")

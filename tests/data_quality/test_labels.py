"""Label import: CSV / COCO / FiftyOne readers and all-or-nothing validation."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from data_quality.labels import LABEL_SCHEMA, LabelFileError, class_list, read_label_file

CLASSES = ["defect", "good"]


@pytest.fixture()
def videos() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "video_id": ["cam1__line_0001", "cam1__line_0002", "cam2__line_0001"],
            "camera_id": ["cam1", "cam1", "cam2"],
            "file": ["line_0001.mp4", "line_0002.mp4", "line_0001.mp4"],
            "frame_count": [300, 120, 300],
        }
    )


@pytest.fixture()
def landing(tmp_path: Path) -> Path:
    (tmp_path / "labels").mkdir()
    return tmp_path


def _write(landing: Path, name: str, text: str) -> Path:
    path = landing / "labels" / name
    path.write_text(text)
    return path


def _read(path, videos, landing, classes=CLASSES, **kw):
    return read_label_file(path, videos=videos, classes=classes, landing_root=landing, **kw)


def test_csv_accepts_every_video_form_and_defaults_annotator(videos, landing):
    path = _write(
        landing,
        "a.csv",
        "Video,frame_index,label,annotator\n"
        "cam1__line_0001,5,good,alice\n"
        "line_0002.mp4,7,defect,\n"
        "line_0002,8,good,bob\n"
        "videos/cam2/line_0001.mp4,9,good,bob\n",
    )
    df = _read(path, videos, landing)
    assert dict(df.schema) == LABEL_SCHEMA
    assert df.rows() == [
        ("cam1__line_0001", 5, "good", "alice", "a.csv"),
        ("cam1__line_0002", 7, "defect", "unknown", "a.csv"),
        ("cam1__line_0002", 8, "good", "bob", "a.csv"),
        ("cam2__line_0001", 9, "good", "bob", "a.csv"),
    ]
    assert class_list(df) == ["defect", "good"]


def test_csv_lists_every_bad_row(videos, landing):
    path = _write(
        landing,
        "bad.csv",
        "video,frame_index,label,annotator\n"
        "cam1__line_0001,1,good,a\n"  # row 1 ok
        "nope.mp4,1,good,a\n"  # row 2 unknown video
        "cam1__line_0001,900,good,a\n"  # row 3 out of range
        "cam1__line_0001,-1,good,a\n"  # row 4 negative
        "cam1__line_0001,1.5,good,a\n"  # row 5 non-integer
        "cam1__line_0001,2,,a\n"  # row 6 empty label
        "cam1__line_0001,3,scratch,a\n"  # row 7 unknown class
        "cam1__line_0001,1,defect,a\n"  # row 8 conflicting duplicate of row 1
        "cam1__line_0001,1,good,a\n"  # row 9 identical duplicate of row 1
        "line_0001.mp4,4,good,a\n"  # row 10 ambiguous file name (two cameras)
        "../../etc/line_0002.mp4,4,good,a\n",  # row 11 escapes the landing zone
    )
    with pytest.raises(LabelFileError) as info:
        _read(path, videos, landing)
    err = info.value
    assert err.path == path
    text = "\n".join(err.problems)
    assert len(err.problems) == 10, text
    assert "row 2: unknown video 'nope.mp4'" in text
    assert "row 3: frame_index 900 out of range for video cam1__line_0001 (300 frames)" in text
    assert "row 4: frame_index -1 is negative" in text
    assert "row 5: frame_index '1.5' is not an integer" in text
    assert "row 6: empty label" in text
    assert "row 7: unknown class 'scratch'" in text
    assert "row 8: duplicate of row 1" in text and "conflicting label" in text
    assert "row 9: duplicate of row 1" in text and "the same label 'good'" in text
    assert "row 10: video 'line_0001.mp4' is ambiguous" in text
    assert "row 11: video path" in text and "outside the landing zone" in text
    assert str(path) in str(err) and "row 2" in str(err)


def test_error_message_is_capped_and_unknown_classes_allowed_without_list(videos, landing):
    rows = "".join(f"cam1__line_0002,{1000 + i},good,a\n" for i in range(30))
    path = _write(landing, "many.csv", "video,frame_index,label,annotator\n" + rows)
    with pytest.raises(LabelFileError) as info:
        _read(path, videos, landing)
    assert len(info.value.problems) == 30
    assert "... and 10 more" in str(info.value)
    ok = _write(landing, "ok.csv", "video,frame_index,label\ncam1__line_0002,3,anything\n")
    assert _read(ok, videos, landing, classes=None)["label"].to_list() == ["anything"]


def test_file_level_errors(videos, landing, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "x.csv"
    outside.write_text("video,frame_index,label\ncam1__line_0001,1,good\n")
    with pytest.raises(LabelFileError, match="outside the landing zone"):
        _read(outside, videos, landing)
    with pytest.raises(LabelFileError, match="missing required column"):
        _read(_write(landing, "c.csv", "video,label\nx,good\n"), videos, landing)
    with pytest.raises(LabelFileError, match="invalid JSON"):
        _read(_write(landing, "j.json", "{nope"), videos, landing)
    with pytest.raises(LabelFileError, match="unsupported"):
        _read(_write(landing, "t.txt", "x"), videos, landing)


def _coco(images, annotations, categories=None, **extra):
    categories = categories or [{"id": 1, "name": "defect"}, {"id": 2, "name": "good"}]
    return json.dumps(
        {"images": images, "annotations": annotations, "categories": categories, **extra}
    )


def test_coco_classification_and_detection_rule(videos, landing):
    images = [
        {"id": 1, "file_name": "cam1__line_0001/000012.jpg"},
        {"id": 2, "file_name": "frames/line_0002_frame_7.jpg"},
        {"id": 3, "file_name": "cam1__line_0001/13.jpg"},
        {"id": 4, "file_name": "cam1__line_0002-9.jpg"},
    ]
    anns = [
        {"id": 10, "image_id": 1, "category_id": 2},  # classification
        # detection: two defect boxes beat one (bigger) good box
        {"id": 11, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2]},
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2]},
        {"id": 13, "image_id": 2, "category_id": 2, "bbox": [0, 0, 50, 50]},
        # tie on count -> larger total area wins
        {"id": 14, "image_id": 3, "category_id": 1, "bbox": [0, 0, 2, 2], "annotator": "carol"},
        {"id": 15, "image_id": 3, "category_id": 2, "bbox": [0, 0, 9, 9], "annotator": "carol"},
        # second annotator on the same image -> own row
        {"id": 16, "image_id": 3, "category_id": 1, "attributes": {"annotator": "dave"}},
    ]
    path = _write(landing, "coco.json", _coco(images, anns, info={"contributor": "alice"}))
    df = _read(path, videos, landing)
    assert df.rows() == [
        ("cam1__line_0001", 12, "good", "alice", "coco.json"),
        ("cam1__line_0001", 13, "good", "carol", "coco.json"),
        ("cam1__line_0001", 13, "defect", "dave", "coco.json"),
        ("cam1__line_0002", 7, "defect", "alice", "coco.json"),
    ]
    with_empty = _read(path, videos, landing, empty_label="good")
    assert ("cam1__line_0002", 9, "good", "alice", "coco.json") in with_empty.rows()


def test_coco_bad_references(videos, landing):
    images = [
        {"id": 1, "file_name": "../outside/cam1__line_0001/1.jpg"},
        {"id": 2, "file_name": "weird.jpg"},
        {"id": 3, "file_name": "cam1__line_0001/999.jpg"},
    ]
    anns = [{"id": i, "image_id": i, "category_id": 1} for i in (1, 2, 3)]
    with pytest.raises(LabelFileError) as info:
        _read(_write(landing, "bad.json", _coco(images, anns)), videos, landing)
    text = "\n".join(info.value.problems)
    assert "image id=1" in text and "outside the landing zone" in text
    assert "image id=2" in text and "cannot read video and frame" in text
    assert "image id=3" in text and "out of range" in text
    dangling = _coco(images[:1], [{"id": 5, "image_id": 42, "category_id": 1}])
    with pytest.raises(LabelFileError, match="unknown image_id 42"):
        _read(_write(landing, "dangling.json", dangling), videos, landing)


def test_fiftyone_classification_export(videos, landing):
    labels = {
        "classes": ["defect", "good"],
        "labels": {
            "cam1__line_0001/000003": 1,
            "line_0002_4": "defect",
            "cam1__line_0001/5": {"label": "good", "attributes": {"annotator": "bob"}},
            "cam1__line_0001/6": None,
        },
    }
    df = _read(_write(landing, "labels.json", json.dumps(labels)), videos, landing)
    assert df.select("video_id", "frame_index", "label", "annotator").rows() == [
        ("cam1__line_0001", 3, "good", "unknown"),
        ("cam1__line_0001", 5, "good", "bob"),
        ("cam1__line_0002", 4, "defect", "unknown"),
    ]
    bad = {"labels": {"cam1__line_0001/7": ["good", "defect"], "cam1__line_0001/8": 5}}
    bad["classes"] = ["defect", "good"]
    with pytest.raises(LabelFileError) as info:
        _read(_write(landing, "bad_labels.json", json.dumps(bad)), videos, landing)
    text = "\n".join(info.value.problems)
    assert "multi-label" in text and "class index 5 out of range" in text


def test_empty_csv_gives_empty_typed_frame(videos, landing):
    df = _read(_write(landing, "e.csv", "video,frame_index,label\n"), videos, landing)
    assert df.height == 0 and dict(df.schema) == LABEL_SCHEMA


@pytest.mark.parametrize(
    "bad",
    ['scr,atch "big"\nline2', "x" * 10_000, "a/b", "tab\there", "semi;colon", "x" * 65],
)
def test_hostile_class_names_reject_the_file_with_the_rule(videos, landing, bad):
    """Issue 7.4: a comma, quote, newline or 10,000 characters in a label is rejected up front."""
    quoted = '"' + bad.replace('"', '""') + '"'
    path = _write(
        landing,
        "bad.csv",
        f"video,frame_index,label\ncam1__line_0001,1,good\nline_0002.mp4,2,{quoted}\n",
    )
    with pytest.raises(LabelFileError) as err:
        _read(path, videos, landing, classes=None)
    [problem] = err.value.problems
    assert problem.startswith("row 2: invalid class name")
    assert "1-64 characters" in problem and len(problem) < 300


def test_valid_class_names_and_explicit_class_list_are_checked(videos, landing):
    from data_quality.labels import CLASS_NAME_RULE, class_name_problem, valid_class_names

    for ok in ["good", "no defect", "dent-2", "v1.2_a", "Kratzer", "défaut", "x" * 64]:
        assert class_name_problem(ok) is None, ok
    path = _write(landing, "ok.csv", "video,frame_index,label\ncam1__line_0001,1,no defect\n")
    assert _read(path, videos, landing, classes=None)["label"].to_list() == ["no defect"]
    with pytest.raises(ValueError, match="1-64 characters"):
        _read(path, videos, landing, classes=["good", "a,b"])
    with pytest.raises(ValueError, match="invalid class name"):
        _read(path, videos, landing, classes=None, empty_label="bad\n")
    assert valid_class_names(pl.Series(["a", "a,b", None, "a"])).to_list() == [
        True,
        False,
        True,
        True,
    ]
    assert "1-64" in CLASS_NAME_RULE


def test_clean_csv_fast_path_matches_the_row_by_row_path(videos, landing):
    """Issue 7.12: the column-wise path gives exactly what the row path gives."""
    from data_quality.label_formats.common import VideoIndex
    from data_quality.label_formats.csv import read_clean_csv, read_csv_rows
    from data_quality.label_formats.validation import validate_rows

    rows = [
        f"{v},{i},{'good' if i % 3 else 'defect'},a{i % 4}"
        for v in ("line_0002.mp4", "cam1__line_0001")
        for i in range(100)
    ]
    path = _write(landing, "ok.csv", "video,frame_index,label,annotator\n" + "\n".join(rows) + "\n")
    fast = _read(path, videos, landing)
    index = VideoIndex(videos)
    good, problems = validate_rows(read_csv_rows(path, landing), index, CLASSES)
    assert not problems
    slow = pl.DataFrame(good, schema=list(LABEL_SCHEMA)[:4], orient="row").sort(
        ["video_id", "frame_index", "annotator"]
    )
    assert fast.drop("source").equals(slow)
    assert read_clean_csv(path, landing.resolve(), index, ["good"]) is None  # unknown class

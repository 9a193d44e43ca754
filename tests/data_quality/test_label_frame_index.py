"""data_quality.label_formats.frame_index: the cached frames-per-video index ingestion reads."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from data_quality.label_formats import frame_index as fi
from data_quality.label_formats.frame_index import LabelFrameIndex, frame_refs
from data_quality.labels import frames_for_video

VIDEOS = [("cam1__a", "a.mp4"), ("cam1__b", "b.mp4"), ("cam2__c", "c.mp4")]


@dataclass
class _File:
    key: str
    size: int
    mtime: float


def _landing(tmp_path: Path) -> Path:
    labels = tmp_path / "landing" / "labels"
    labels.mkdir(parents=True)
    (labels / "l.csv").write_text(
        "Video , FRAME_INDEX,label,annotator\n"
        "a.mp4,7,good,x\ncam1__a, 13 ,dent,y\nb,+4,good,x\nvideos/cam2/c.mp4,0012,good,x\n"
        "a.mp4,-1,good,x\na.mp4,x9,good,x\n,3,good,x\n../outside/a.mp4,5,good,x\nother,9,good,x\n"
    )
    (labels / "coco.json").write_text(
        json.dumps(
            {
                "images": [
                    {"id": 1, "file_name": "cam1__a/000017.jpg"},
                    {"id": 2, "file_name": "data/b_frame_21.jpg"},
                    {"id": 3, "file_name": "c/frame_8.jpg"},
                    {"id": 4, "file_name": "other/000003.jpg"},
                    {"id": 5, "file_name": "cam1__a/000099.jpg"},  # no annotation: skipped
                ],
                "annotations": [{"id": i, "image_id": i, "category_id": 1} for i in range(1, 5)],
                "categories": [{"id": 1, "name": "scratch"}],
            }
        )
    )
    (labels / "fo.json").write_text(json.dumps({"labels": {"a_000031": "good", "zz_1": "good"}}))
    (labels / "broken.csv").write_text('video,frame_index,label\n"a.mp4,1\n')
    return tmp_path / "landing"


def _index(landing: Path) -> tuple[LabelFrameIndex, list[_File]]:
    files = [
        _File(p.relative_to(landing / "labels").as_posix(), p.stat().st_size, p.stat().st_mtime)
        for p in sorted((landing / "labels").iterdir())
    ]

    @contextlib.contextmanager
    def open_local(f):
        yield landing / "labels" / f.key, landing

    index = LabelFrameIndex()
    assert index.refresh(files, open_local)
    return index, files


def test_index_gives_the_frames_that_parsing_every_file_gives(tmp_path):
    landing = _landing(tmp_path)
    index, _ = _index(landing)
    assert index.frames_for_video("cam1__a", "a.mp4") == {7, 13, 17, 31}
    for video_id, file in VIDEOS:
        expected = set()
        for path in (landing / "labels").iterdir():
            expected |= frames_for_video(path, video_id=video_id, file=file, landing_root=landing)
        assert index.frames_for_video(video_id, file) == expected, video_id


def test_refresh_reads_only_changed_files_and_forgets_removed_ones(tmp_path, monkeypatch):
    landing = _landing(tmp_path)
    index, files = _index(landing)
    stored = LabelFrameIndex.loads(index.dumps())
    assert stored == index
    read: list[str] = []
    real = fi.frame_refs
    monkeypatch.setattr(
        fi, "frame_refs", lambda p, **kw: read.append(Path(p).name) or real(p, **kw)
    )

    @contextlib.contextmanager
    def open_local(f):
        yield landing / "labels" / f.key, landing

    assert not stored.refresh(files, open_local) and read == []  # nothing changed
    csv = landing / "labels" / "l.csv"
    csv.write_text("video,frame_index,label\nb.mp4,40,good\n")
    changed = [
        _File(f.key, csv.stat().st_size, csv.stat().st_mtime) if f.key == "l.csv" else f
        for f in files
    ]
    assert stored.refresh([f for f in changed if f.key != "fo.json"], open_local)
    assert read == ["l.csv"]
    assert stored.frames_for_video("cam1__a", "a.mp4") == {17}  # l.csv's 7, 13 and fo's 31 gone
    assert stored.frames_for_video("cam1__b", "b.mp4") == {21, 40}


@pytest.mark.parametrize("data", [None, b"", b"{not json", b'{"version": 0, "files": {}}'])
def test_unusable_cache_is_empty(data):
    assert LabelFrameIndex.loads(data).files == {}


def test_unreadable_file_names_no_frames(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert frame_refs(bad, landing_root=tmp_path) == {}
    assert frame_refs(tmp_path / "missing.csv", landing_root=tmp_path) == {}

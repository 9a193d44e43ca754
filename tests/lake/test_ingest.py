"""lake.ingest on a temp home: the commits in their documented order, and what a crash leaves."""

from __future__ import annotations

import polars as pl
import pytest

from data_quality.ingest import sample_video
from lake.ingest import commit_ingest, labeled_frames
from lake.storage import LensStorage, StoredFile


def _source(path) -> StoredFile:
    st = path.stat()
    return StoredFile(uri=str(path), key="cam1/a.mp4", size=st.st_size, mtime=st.st_mtime)


def _calls(monkeypatch) -> list[str]:
    """Record LensStorage's writes, in order: ``write_table:<table>``, ``write_bytes`` ..."""
    calls: list[str] = []
    for name in ("write_table", "delete_rows", "write_bytes", "delete"):
        original = getattr(LensStorage, name)

        def wrapped(self, *args, _name=name, _original=original, **kw):
            table = args[1] if _name == "write_table" else args[0]
            calls.append(f"{_name}:{table}" if _name in ("write_table", "delete_rows") else _name)
            return _original(self, *args, **kw)

        monkeypatch.setattr(LensStorage, name, wrapped)
    return calls


def test_commits_in_order_and_rerun_replaces_the_rows(home, write_video, monkeypatch):
    path = write_video(home / "landing/videos/cam1/a.mp4", 12)
    storage = LensStorage()
    sampled = sample_video(path, name=str(path), labeled={3}, stride=5)
    first = commit_ingest(storage, "cam1__a", _source(path), sampled)
    assert first.frames is not None and first.frames["frame_index"].to_list() == [0, 3, 5, 10]
    video = storage.read_table("videos").row(0, named=True)
    assert (video["status"], video["kept_frames"], video["camera_id"]) == ("ok", 4, "cam1")
    assert first.videos_version == storage.table_version("videos")

    # an orphan file of a killed attempt is cleaned up by the next ingestion
    (home / "artifacts/frames/cam1__a/.000099.jpg.tmp").write_bytes(b"half")
    calls = _calls(monkeypatch)
    again = commit_ingest(storage, "cam1__a", _source(path), sample_video(path, name="x", stride=5))
    writes = [c for i, c in enumerate(calls) if c != "write_bytes" or calls[i - 1] != "write_bytes"]
    assert writes == [
        "write_table:videos",  # (1) ok -> ingesting
        "write_bytes",  # (2) the JPEGs
        "write_table:frames",  # (3) the video's rows
        "delete",  # (4) stale files
        "write_table:videos",  # (5) the final row
    ]
    assert again.frames is not None and again.frames["frame_index"].to_list() == [0, 5, 10]
    assert sorted(p.name for p in (home / "artifacts/frames/cam1__a").iterdir()) == [
        "000000.jpg", "000005.jpg", "000010.jpg",
    ]  # fmt: skip
    assert storage.read_table("frames").height == 3


def test_a_bad_video_drops_its_frames_then_records_the_status(home, write_video, monkeypatch):
    path = write_video(home / "landing/videos/cam1/a.mp4", 6)
    storage = LensStorage()
    commit_ingest(storage, "cam1__a", _source(path), sample_video(path, name="x", stride=2))
    path.write_bytes(b"this is not a video\n" * 50)
    calls = _calls(monkeypatch)
    out = commit_ingest(storage, "cam1__a", _source(path), sample_video(path, name=str(path)))
    assert out.frames is None
    assert calls == [
        "write_table:videos",
        "delete_rows:frames",
        "delete",
        "write_table:videos",
    ]
    assert storage.read_table("frames").height == 0
    assert not list((home / "artifacts/frames/cam1__a").iterdir())
    row = storage.read_table("videos").row(0, named=True)
    assert row["status"] == "unreadable" and row["kept_frames"] == 0


def test_a_crash_before_the_videos_commit_leaves_the_video_ingesting(
    home, write_video, monkeypatch
):
    path = write_video(home / "landing/videos/cam1/a.mp4", 6)
    storage = LensStorage()
    sampled = sample_video(path, name="x", stride=2)
    commit_ingest(storage, "cam1__a", _source(path), sampled)
    original = LensStorage.write_table

    def die_on_frames(self, df, name, **kw):
        if name == "frames":
            raise KeyboardInterrupt("killed")
        return original(self, df, name, **kw)

    monkeypatch.setattr(LensStorage, "write_table", die_on_frames)
    with pytest.raises(KeyboardInterrupt):
        commit_ingest(storage, "cam1__a", _source(path), sampled)
    videos = storage.read_table("videos")
    assert videos.filter(pl.col("video_id") == "cam1__a")["status"].to_list() == ["ingesting"]


def test_labeled_frames_come_from_the_label_files(home):
    labels = home / "landing/labels/l.csv"
    labels.parent.mkdir(parents=True)
    labels.write_text("video,frame_index,label,annotator\na.mp4,7,good,x\ncam1__a,13,dent,y\n")
    storage = LensStorage()
    assert labeled_frames(storage, "cam1__a", "a.mp4") == {7, 13}
    assert (home / "artifacts/label_frame_index.json").exists()
    assert labeled_frames(storage, "cam2__b", "b.mp4") == set()

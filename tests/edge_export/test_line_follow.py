"""The box follows lines/<box>.json: verified, replays refused, the camera diff it reconciles."""

# ruff: noqa: F811 - test_serve's fixtures (clip, keys, lake) are imported and then requested

from __future__ import annotations

import pytest

from edge_export.bundle import generate_signing_key, load_trusted_key
from edge_export.service.config import CameraConfig
from edge_export.service.deploy import sign_document
from edge_export.service.line import LineWatcher, camera_configs, diff_cameras
from edge_export.service.line_doc import FORMAT
from tests.edge_export.test_serve import clip, keys, lake  # noqa: F401 - the service fixtures


def payload(version: int, cameras: list[dict], box: str = "b1") -> dict:
    return {
        "line": "line1",
        "version": version,
        "sha256": f"{version:064x}",
        "box": box,
        "cameras": [
            {"transport": "tcp", "crop": "item:96", "fps": None, "loop": False, **c}
            for c in cameras
        ],
        "classes": [{"name": "good", "role": "ok", "display": "Good"}],
        "capture": {},
        "signals": {},
    }


@pytest.fixture
def pair():
    private, public = generate_signing_key()
    return private, load_trusted_key(public)


class Published:
    """A lines/b1.json the test rewrites; read() as the watcher calls it."""

    def __init__(self) -> None:
        self.data: bytes | None = None

    def read(self) -> bytes:
        if self.data is None:
            raise FileNotFoundError("lines/b1.json")
        return self.data


def test_start_needs_a_published_verified_document(pair):
    private, trusted = pair
    doc = Published()
    watcher = LineWatcher(doc.read, box="b1", trusted=trusted)
    with pytest.raises(ValueError, match="no lines/b1.json is published.*lensline line apply"):
        watcher.load()
    doc.data = sign_document(payload(1, [{"id": "cam1", "source": "rtsp://x/1"}]), None,
                             format=FORMAT)  # fmt: skip
    with pytest.raises(ValueError, match="unsigned|UNSIGNED|signature"):
        watcher.load()  # the box pins a key: an unsigned document is refused
    doc.data = sign_document(
        payload(1, [{"id": "cam1", "source": "rtsp://x/1"}], box="b2"), private, format=FORMAT
    )
    with pytest.raises(ValueError, match="for box 'b2', this box is 'b1'"):
        watcher.load()
    doc.data = sign_document(payload(1, [{"id": "cam1", "source": "rtsp://x/1"}]), private,
                             format=FORMAT)  # fmt: skip
    loaded = watcher.load()
    assert [c.id for c in camera_configs(loaded)] == ["cam1"] and watcher.poll() is None


def test_changes_tampering_and_replays(pair):
    private, trusted = pair
    doc = Published()
    v1 = sign_document(payload(1, [{"id": "cam1", "source": "rtsp://x/1"}]), private,
                       format=FORMAT)  # fmt: skip
    doc.data = v1
    watcher = LineWatcher(doc.read, box="b1", trusted=trusted)
    watcher.load()
    two = [{"id": "cam1", "source": "rtsp://x/1"}, {"id": "cam2", "source": "tcp://y:9"}]
    doc.data = sign_document(payload(2, two), private, format=FORMAT)
    got = watcher.poll()
    assert got is not None and got.version == 2 and [c.id for c in got.cameras] == ["cam1", "cam2"]
    assert watcher.poll() is None  # unchanged
    doc.data = doc.data.replace(b"tcp://y:9", b"tcp://evil:9")  # tampered in transit
    assert watcher.poll() is None and "signature" in watcher.problems[-1]
    assert watcher.current is not None and watcher.current.version == 2  # in force: unchanged
    doc.data = v1  # a replay of an older version, validly signed
    assert watcher.poll() is None and "older than the one in force (2)" in watcher.problems[-1]
    doc.data = None  # withdrawn: the cameras in force keep running
    assert watcher.poll() is None and watcher.current.version == 2


def test_diff_opens_closes_and_reopens_only_what_changed():
    before = (CameraConfig("cam1", "rtsp://x/1"), CameraConfig("cam2", "tcp://y:9"),
              CameraConfig("cam3", "udp://z:5"))  # fmt: skip
    after = (CameraConfig("cam1", "rtsp://x/1"), CameraConfig("cam2", "tcp://y:10"),
             CameraConfig("cam4", "/dev/video0"))  # fmt: skip
    d = diff_cameras(before, after)
    assert (d.added, d.removed, d.changed) == (("cam4",), ("cam3",), ("cam2",))
    assert d.describe() == "added cam4; removed cam3; reopened cam2"
    assert not diff_cameras(before, before)


# -- end to end: the service follows `lensline line apply` -------------------------------------
def _line_yaml(path, clips: dict) -> str:
    cams = "\n".join(
        f"  - {{id: {cid}, box: b1, source: '{src}', loop: true}}" for cid, src in clips.items()
    )
    text = f"line: line1\ncameras:\n{cams}\nclasses:\n  - {{name: good, role: ok}}\n" \
           "  - {name: scratch, role: defect}\n"  # fmt: skip
    path.write_text(text)
    return str(path)


def _rows(out, camera: str) -> list[dict]:
    import json

    files = sorted((out / "results" / camera).glob("*.jsonl*"))
    return [json.loads(x) for f in files for x in f.read_text().splitlines() if x]


def test_the_service_opens_and_closes_cameras_as_the_line_changes(
    lake,
    keys,
    home,
    tmp_path,
    clip,
):
    """``line: true``: the cameras come from ``lensline line apply``; a camera added to the line
    is opened and inspected, one removed is closed and goes offline, and a camera on both
    versions is never interrupted (its frames stay consecutive across both changes)."""
    from lake.line_config import apply
    from tests.edge_export.test_serve import Running, _config

    lake("m-1")
    lake.deploy("m-1")
    storage = lake.storage
    sign = keys[0][0]
    apply(storage, _line_yaml(tmp_path / "l1.yaml", {"cam1": clip}), by="t", signing_key=sign)
    cfg = _config(home, tmp_path, keys, clip)
    del cfg["cameras"]
    running = Running({**cfg, "line": True})
    service = running.service
    try:
        running.wait(lambda s: s.cameras.get("cam1") and s.cameras["cam1"].frames >= 10,
                     what="cam1 from the line")  # fmt: skip
        two = {"cam1": clip, "cam2": clip}
        apply(storage, _line_yaml(tmp_path / "l2.yaml", two), by="t", signing_key=sign)
        running.wait(lambda s: s.cameras.get("cam2") and s.cameras["cam2"].frames >= 10,
                     what="cam2 added by line v2")  # fmt: skip
        apply(storage, _line_yaml(tmp_path / "l3.yaml", {"cam2": clip}), by="t", signing_key=sign)
        running.wait(lambda s: len(s.line_changes) >= 2, what="line v3")
        cam1_after_removal = service.cameras["cam1"].frames
        cam2_then = service.cameras["cam2"].frames
        running.wait(lambda s: s.cameras["cam2"].frames >= cam2_then + 10, what="cam2 goes on")
        assert service.cameras["cam1"].frames == cam1_after_removal  # closed: nothing more
        assert sorted(service.sources) == ["cam2"] and "cam1" not in service.deployed
    finally:
        running.stop()
    changes = [(c["version"], c["added"], c["removed"]) for c in service.line_changes]
    assert changes == [(2, ("cam2",), ()), (3, (), ("cam1",))]
    seqs = [r["frame_index"] for r in _rows(tmp_path / "out", "cam2")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # cam2 never lost a frame
    assert all(r["model_version"] == "m-1" for r in _rows(tmp_path / "out", "cam2"))


def test_line_true_without_a_published_document_exits_3(home, tmp_path, keys, clip):
    import yaml

    from edge_export.service.cli import main
    from tests.edge_export.test_serve import _config

    cfg = _config(home, tmp_path, keys, clip)
    del cfg["cameras"]
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump({**cfg, "line": True}))
    assert main([str(path)]) == 3
    path.write_text(yaml.safe_dump({**_config(home, tmp_path, keys, clip), "line": True}))
    assert main([str(path)]) == 3  # cameras and line: true together

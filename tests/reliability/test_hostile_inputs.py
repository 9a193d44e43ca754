"""A catalogue of broken or hostile inputs, one parametrised test: each gets a clear message
naming the file and the problem, the exit code the README documents (0 ok, 1 a step failed,
2 usage error, 3 input rejected), and no other row of the lake changes.

Videos, label files and names go through ``lensline run`` (``orchestration.cli.main``, in
process) on a copy of a home that already holds one good video and its labels; bundles through
``lensline-edge verify``. The lake is snapshotted before and after: for a video the only rows
that may change are that video's own (its ``videos`` row with the status that says why); for
anything else no row may change at all. Each case prints its row of the catalogue's table
(``| input | exit | message |``, ``pytest -s``): the message is the lines a user sees, and it
must hold every expected text on its own.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.harness import read_lake

SELECT = "key:raw_video or key:frames or key:label_reviews or key:labels"
GOOD_LABELS = "video,frame_index,label,annotator\n" + "".join(
    f"good.mp4,{i},{'good' if i % 3 else 'scratch'},alice\n" for i in range(0, 20, 2)
)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # video | labels | name | bundle
    build: object  # callable(home, tmp_path) -> None (or the bundle path for bundles)
    code: int
    expect: tuple[str, ...]  # substrings of the output: the file and the problem
    changes: str | None = None  # the video id whose own rows may change


# ---- builders -------------------------------------------------------------------------


def _video_bytes(tmp: Path, n: int = 20) -> bytes:
    from tests.conftest import _write_video

    return _write_video(tmp / "src.mp4", n).read_bytes()


def _put(home: Path, rel: str, data: bytes | str) -> Path:
    path = home / "landing" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _huge_box() -> bytes:
    """An ``ftyp`` box, then an ``mdat`` box whose 64-bit size declares 4 EiB."""
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    return ftyp + struct.pack(">I4sQ", 1, b"mdat", 1 << 62) + b"\0" * 64


def _png() -> bytes:
    import cv2
    import numpy as np

    return cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def labels_case(name: str, body: bytes | str, *expect: str, file: str = "bad.csv") -> Case:
    return Case(
        name, "labels", lambda home, tmp: _put(home, f"labels/{file}", body), 3, (file, *expect)
    )


CASES = [
    # videos: each gets its own videos row saying why, exit 3, nothing else changes
    Case("0-byte video", "video", lambda h, t: _put(h, "videos/cam9/zero.mp4", b""), 3,
         ("cam9__zero", "empty"), "cam9__zero"),
    Case("truncated video (first 40%)", "video",
         lambda h, t: _put(h, "videos/cam9/cut.mp4", (b := _video_bytes(t))[: len(b) * 2 // 5]),
         3, ("cam9__cut",), "cam9__cut"),
    Case("text file renamed .mp4", "video",
         lambda h, t: _put(h, "videos/cam9/notes.mp4", "just some text, not a video\n" * 20), 3,
         ("cam9__notes",), "cam9__notes"),
    Case("PNG image with a video extension", "video",
         lambda h, t: _put(h, "videos/cam9/photo.mp4", _png()), 3,
         ("cam9__photo", "an image (png_pipe), not a video container"), "cam9__photo"),
    Case("mp4 declaring a 4 EiB mdat box", "video",
         lambda h, t: _put(h, "videos/cam9/huge.mp4", _huge_box()), 3, ("cam9__huge",),
         "cam9__huge"),
    Case("random bytes .mov", "video",
         lambda h, t: _put(h, "videos/cam9/noise.mov", bytes(range(256)) * 64), 3,
         ("cam9__noise",), "cam9__noise"),
    Case("video with its middle overwritten", "video",
         lambda h, t: _put(h, "videos/cam9/holes.mp4", (b := _video_bytes(t, 40))[:600]
                           + b"\xff" * (len(b) // 2) + b[600 + len(b) // 2:]),
         3, ("cam9__holes",), "cam9__holes"),
    # label files: rejected whole, exit 3, the labels before stay
    labels_case("label: bad class name", "video,frame_index,label\ngood.mp4,2,<script>\n",
                "<script>"),
    labels_case("label: unknown video", "video,frame_index,label\nnope.mp4,2,good\n", "nope.mp4"),
    labels_case("label: path traversal in video", "video,frame_index,label\n"
                "../../../etc/passwd,2,good\n", "../../../etc/passwd"),
    labels_case("label: duplicate rows", "video,frame_index,label,annotator\n"
                "good.mp4,2,good,bob\ngood.mp4,2,good,bob\n", "duplicate"),
    labels_case("label: frame out of range", "video,frame_index,label\ngood.mp4,9999,good\n",
                "9999"),
    labels_case("label: empty class", "video,frame_index,label\ngood.mp4,2,\n", "empty"),
    labels_case("label: UTF-16 encoded CSV", "video,frame_index,label\ngood.mp4,2,good\n"
                .encode("utf-16"), "", file="utf16.csv"),
    labels_case("label: Latin-1 class name", "video,frame_index,label\ngood.mp4,2,kratzer\xe9\n"
                .encode("latin-1"), "", file="latin1.csv"),
    labels_case("label: missing columns", "clip,frame,label\ngood.mp4,2,good\n", "", file="cols.csv"),
    labels_case("label: truncated COCO JSON", '{"images": [{"id": 1, "file_name": "go', "",
                file="coco.json"),
    # names
    Case("name: one stem twice (a.mp4 then a.mov)", "name",
         lambda h, t: _put(h, "videos/cam1/good.mov", b"another file, same stem"), 0,
         ("cam1/good.mov ignored", "rename it")),
    Case("name: symlink to a video outside the landing zone", "name",
         lambda h, t: (h / "landing/videos/cam1/link.mp4").symlink_to(
             _put(t, "outside/secret.mp4", _video_bytes(t))), 0,
         ("videos/cam1/link.mp4", "LENSLINE_FOLLOW_SYMLINKS=1")),
    Case("name: camera folder symlinked outside the landing zone", "name",
         lambda h, t: (h / "landing/videos/cam7").symlink_to(_put(t, "elsewhere/x.mp4",
                                                                  _video_bytes(t)).parent), 0,
         ("cam7", "LENSLINE_FOLLOW_SYMLINKS=1")),
]  # fmt: skip


def _unicode_collision(home: Path, tmp: Path) -> None:
    """``línea 1.mp4`` twice: NFC and NFD spellings of one visible name."""
    data = _video_bytes(tmp, 6)
    _put(home, "videos/cam1/l\u00ednea 1.mp4", data)
    _put(home, "videos/cam1/li\u0301nea 1.mp4", data)


CASES.append(Case("name: unicode NFC/NFD twins", "name", _unicode_collision, 0,
                  ("nea 1.mp4 ignored", "rename it"), "cam1__l_nea_1-f7f4780c"))  # fmt: skip


# ---- bundles ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A good signed bundle, the trusted key file, and a builder of tampered copies."""
    from edge_export.bundle import build_bundle, generate_signing_key
    from edge_export.postprocess import AlarmRules
    from tests.edge_export.conftest import make_brightness_onnx
    from training.preprocess import Crop, PreprocessSpec

    root = tmp_path_factory.mktemp("bundles")
    (private, public), (_, other_public) = generate_signing_key(), generate_signing_key()
    (root / "trusted.pem").write_bytes(public)
    (root / "other.pem").write_bytes(other_public)
    info = build_bundle(
        root / "good.tar.gz",
        files={"model.onnx": make_brightness_onnx(root / "m.onnx")},
        model_version="m-1",
        classes=["good", "scratch"],
        preprocess=PreprocessSpec(image_size=32, crop=Crop("full")),
        postprocess=AlarmRules(raise_after=2, clear_after=2),
        model_card={"metrics": {"accuracy": 1.0}},
        lineage={"model": "m-1"},
        targets={"onnx": "ok"},
        signing_key=private,
        created_at="2026-01-01T00:00:00+00:00",
    )
    return root, info.path


def _repack(src: Path, dst: Path, edit, extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(src, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    edit(members)
    with tarfile.open(dst, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


def _manifest_edit(**changes):
    def edit(m):
        manifest = json.loads(m["manifest.json"])
        manifest.update(changes)
        m["manifest.json"] = json.dumps(manifest).encode()

    return edit


def _flip(name):
    def edit(m):
        m[name] = m[name][:-1] + bytes([m[name][-1] ^ 1])

    return edit


BUNDLE_CASES = [
    ("bundle: model.onnx tampered (one bit)", lambda r, g: _repack(g, r / "t.tar.gz", _flip("model.onnx")),
     "trusted.pem", ("model.onnx",)),
    ("bundle: signed by another key", lambda r, g: g, "other.pem", ("not by the trusted key",)),
    ("bundle: manifest edited after signing", lambda r, g: _repack(g, r / "e.tar.gz", _manifest_edit(model_version="m-666")),
     "trusted.pem", ("signature",)),
    ("bundle: unknown format", lambda r, g: _repack(g, r / "f.tar.gz", _manifest_edit(format="lensline.bundle/99")),
     None, ("lensline.bundle/99",)),
    ("bundle: extra file", lambda r, g: _repack(g, r / "x.tar.gz", lambda m: m.update({"evil.sh": b"rm -rf /"})),
     None, ("evil.sh",)),
    ("bundle: path traversal member", lambda r, g: _repack(g, r / "p.tar.gz", lambda m: m.update({"../escape.txt": b"x"})),
     None, ("../escape.txt",)),
    ("bundle: not a tarball", lambda r, g: (r / "n.tar.gz").write_bytes(b"GARBAGE" * 100) and r / "n.tar.gz",
     None, ("n.tar.gz",)),
]  # fmt: skip


# ---- the lake before/after ----------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """(work, pristine): a home with one good video and its labels, ingested and imported, at
    ``work`` (the lake records absolute URIs, so every case runs at that same path) and a
    pristine copy each case restores ``work`` from."""
    from orchestration.cli import main
    from tests.conftest import _write_video

    root = tmp_path_factory.mktemp("hostile")
    work = root / "home"
    (work / "dagster").mkdir(parents=True)
    (work / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    _write_video(work / "landing/videos/cam1/good.mp4", 20)
    _put(work, "labels/main.csv", GOOD_LABELS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LENSLINE_HOME", str(work))
        mp.setenv("DAGSTER_HOME", str(work / "dagster"))
        mp.delenv("LENSLINE_STORAGE", raising=False)
        assert main(["run", "--select", SELECT]) == 0
    shutil.copytree(work, root / "pristine", symlinks=True)
    return work, root / "pristine"


def _rows(tables: dict, skip_video: str | None) -> dict[str, list[tuple]]:
    import polars as pl

    out = {}
    for name, df in tables.items():
        if skip_video and "video_id" in df.columns:
            df = df.filter(pl.col("video_id") != skip_video)
        # as text: NaN compares unequal to itself
        out[name] = sorted(tuple(map(str, r)) for r in df.select(sorted(df.columns)).iter_rows())
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", CASES + BUNDLE_CASES, ids=lambda c: c.name if isinstance(c, Case) else c[0]
)
def test_hostile_input(case, baseline, bundles, tmp_path, capsys, monkeypatch):  # fmt: skip
    import polars as pl

    from orchestration.cli import main

    home, pristine = baseline
    shutil.rmtree(home)
    shutil.copytree(pristine, home, symlinks=True)
    monkeypatch.setenv("LENSLINE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("LENSLINE_STORAGE", raising=False)
    monkeypatch.setenv("COLUMNS", "240")  # rich's tables would cut the error column at 80
    before = read_lake(home / "lake")
    if isinstance(case, Case):
        case.build(home, tmp_path)
        code = main(["run", "--select", SELECT])
        out = capsys.readouterr().out
        name, expect, want, changes = case.name, case.expect, case.code, case.changes
    else:
        from edge_export.runner import main as edge_main

        name, make, key, expect = case
        root, good = bundles
        path = make(root, good)
        args = ["verify", str(path)] + (["--trusted-key", str(root / key)] if key else [])
        code = edge_main(args)
        captured = capsys.readouterr()
        out, want, changes = captured.out + captured.err, 3, None
    after = read_lake(home / "lake")
    lines = [
        " ".join(line.replace("│", " ").split())
        for line in out.splitlines()
        if any(w in line for w in ("rejected", "error:", "ignored", "│ cam"))
        or line.lstrip().startswith("-")
    ]
    message = " / ".join(lines).replace(str(home), "<home>").replace(str(tmp_path), "<tmp>")
    print(f"| {name} | {code} | {message[:300] or '(no message)'} |")  # the catalogue's row
    assert "Traceback" not in out, out[-3000:]
    assert _rows(after, changes) == _rows(before, changes)  # no other row changed
    if changes and case.kind == "video":
        row = after["videos"].filter(pl.col("video_id") == changes).row(0, named=True)
        file = changes.split("__")[1]
        assert row["status"] != "ok" and file in (row["error"] or ""), row
        assert after["frames"].filter(pl.col("video_id") == changes).is_empty()
    assert code == want, out[-3000:]
    # the row itself names the file and the problem, not just some line of the output
    missing = [text for text in expect if text not in message]
    assert message and not missing, (missing, message, out[-3000:])

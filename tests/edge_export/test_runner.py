"""lensline-edge on tiny bundles: videos, image folders, shadow A/B, bad input, exit codes."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_export.bundle import build_bundle, generate_signing_key
from edge_export.postprocess import AlarmRules
from edge_export.runner import main
from training.preprocess import Crop, PreprocessSpec

from .conftest import make_brightness_onnx

CLASSES = ["good", "scratch"]
DARK, MID, BRIGHT = 5, 60, 220


@pytest.fixture(scope="module")
def keys():
    return generate_signing_key()


@pytest.fixture(scope="module")
def make_bundle(tmp_path_factory, brightness_onnx):
    """``make_bundle(version, model=None, key=None, classes=CLASSES, rules=...)`` -> path."""
    root = tmp_path_factory.mktemp("bundles")

    def _make(version="m-1", model=None, key=None, classes=CLASSES, rules=None, size=32, crop=None):
        out = root / f"{version}-{len(list(root.iterdir()))}.tar.gz"
        return build_bundle(
            out,
            files={"model.onnx": model or brightness_onnx.path},
            model_version=version,
            classes=classes,
            preprocess=PreprocessSpec(image_size=size, crop=crop or Crop("full")),
            postprocess=rules or AlarmRules(raise_after=3, clear_after=2),
            model_card={"metrics": {"accuracy": 1.0}},
            lineage={"model": version},
            targets={"onnx": "ok", "int8": "skipped: not calibrated"},
            signing_key=key,
            created_at="2026-01-01T00:00:00+00:00",
        ).path

    return _make


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """``videos/cam1/a.mp4``: 4 mid, 5 bright, 3 mid, 2 dark frames; ``cam2/b.mp4``: 6 mid."""
    from .conftest import write_video_levels

    root = tmp_path_factory.mktemp("landing") / "videos"
    write_video_levels(root / "cam1" / "a.mp4", [MID] * 4 + [BRIGHT] * 5 + [MID] * 3 + [DARK] * 2)
    write_video_levels(root / "cam2" / "b.mp4", [MID] * 6)
    return root


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_folder_rows_alarms_and_summary(make_bundle, videos, tmp_path, capsys):
    out = tmp_path / "out" / "run.jsonl"
    rc = main(["run", str(make_bundle()), str(videos), "--out", str(out), "--quiet"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    rows = read(out)
    assert len(rows) == 14 + 6
    a = [r for r in rows if r["video"] == "cam1__a"]
    assert [r["frame_index"] for r in a] == list(range(14))
    assert a[1]["timestamp_s"] == pytest.approx(0.1)
    assert {r["model_version"] for r in rows} == {"m-1"}
    assert {r["camera_id"] for r in rows} == {"cam1", "cam2"}
    assert "".join("A" if r["alarm"] else "." for r in a) == "......AAAA...."
    assert [r["frame_index"] for r in a if r["alarm_event"] == "raised"] == [6]
    assert [r["frame_index"] for r in a if r["alarm_event"] == "cleared"] == [10]
    assert [r["quality"] for r in a[-2:]] == ["dark", "dark"]
    assert set(rows[0]) >= {
        "video",
        "frame_index",
        "timestamp_s",
        "label",
        "confidence",
        "alarm",
        "model_version",
    }
    assert "shadow_label" not in rows[0]
    assert "frames inspected: 20" in text.out and "alarms raised: 1 (cam1__a: 1)" in text.out
    assert "UNSIGNED" in text.err
    assert not list(out.parent.glob(".*.tmp"))


def test_real_cnn_export_runs_every_nth_frame(tiny_onnx, make_bundle, videos, tmp_path, capsys):
    bundle = make_bundle("cnn", model=tiny_onnx.path, size=tiny_onnx.image_size)
    out = tmp_path / "cnn.jsonl"
    rc = main(
        ["run", str(bundle), str(videos / "cam1" / "a.mp4"), "--out", str(out), "--every", "3"]
    )
    assert rc == 0, capsys.readouterr().err
    rows = read(out)
    assert [r["frame_index"] for r in rows] == [0, 3, 6, 9, 12]
    assert {r["label"] for r in rows} <= set(CLASSES)
    assert all(0.5 <= r["confidence"] <= 1.0 for r in rows)
    assert "every 3th frame" in capsys.readouterr().out


def test_image_folder_frame_index_from_names(make_bundle, tmp_path, capsys):
    folder = tmp_path / "cam3__line_7"
    folder.mkdir()
    for i, level in [(120, MID), (7, BRIGHT), (33, MID)]:
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), np.full((40, 40, 3), level, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "img.jsonl"
    assert main(["run", str(make_bundle()), str(folder), "--out", str(out), "--quiet"]) == 0
    rows = read(out)
    assert [(r["frame_index"], r["label"]) for r in rows] == [
        (7, "scratch"),
        (33, "good"),
        (120, "good"),
    ]
    assert {r["video"] for r in rows} == {"cam3__line_7"}
    assert {r["camera_id"] for r in rows} == {"cam3"}
    assert all(r["timestamp_s"] is None for r in rows)

    plain = tmp_path / "shots"
    plain.mkdir()
    for name in ("b.png", "a.png", "c.png"):
        cv2.imwrite(str(plain / name), np.full((40, 40, 3), MID, np.uint8))
    (plain / "z.png").write_bytes(b"not a png")
    out2 = tmp_path / "img2.jsonl"
    rc = main(["run", str(make_bundle()), str(plain), "--out", str(out2), "--camera", "camX"])
    err = capsys.readouterr().err
    assert rc == 1 and "z.png: cannot decode image" in err
    assert [(r["frame_index"], r["camera_id"]) for r in read(out2)] == [
        (0, "camX"),
        (1, "camX"),
        (2, "camX"),
    ]


def test_shadow_logs_both_models_and_only_champion_alarms(make_bundle, videos, tmp_path, capsys):
    inverted = make_brightness_onnx(tmp_path / "inverted.onnx", k=-4.0)
    champion, shadow = make_bundle("champ"), make_bundle("chall", model=inverted)
    out = tmp_path / "shadow.jsonl"
    rc = main(
        ["run", str(champion), str(videos / "cam1"), "--out", str(out), "--shadow", str(shadow)]
    )
    text = capsys.readouterr()
    assert rc == 0, text.err
    rows = read(out)
    assert all(r["shadow_model_version"] == "chall" for r in rows)
    assert all(r["shadow_label"] != r["label"] for r in rows)  # inverted model disagrees always
    assert [r["alarm"] for r in rows] == [False] * 6 + [True] * 4 + [False] * 4
    assert "shadow agreement: 0.00% (0/14 frames)" in text.out
    assert "cam1__a 4: scratch" in text.out and "-> good" in text.out


def test_shadow_with_another_class_map_refused(make_bundle, videos, tmp_path, capsys):
    other = make_bundle("other", classes=["good", "dent"])
    out = tmp_path / "x.jsonl"
    rc = main(["run", str(make_bundle()), str(videos), "--out", str(out), "--shadow", str(other)])
    assert rc == 3
    assert "class map of shadow bundle" in capsys.readouterr().err
    assert not out.exists()


def test_model_with_wrong_number_of_outputs_refused(make_bundle, videos, tmp_path, capsys):
    rules = AlarmRules(defect_classes=["scratch", "dent"])
    bundle = make_bundle("three", classes=["good", "scratch", "dent"], rules=rules)
    rc = main(["run", str(bundle), str(videos), "--out", str(tmp_path / "x.jsonl")])
    assert rc == 3
    assert "model outputs 2 classes but classes.json lists 3" in capsys.readouterr().err


def test_undecodable_video_named_others_processed(make_bundle, videos, tmp_path, capsys):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(videos, folder)
    (folder / "cam2" / "broken.mp4").write_bytes(b"\x00garbage" * 64)
    out = tmp_path / "mixed.jsonl"
    rc = main(["run", str(make_bundle()), str(folder), "--out", str(out), "--quiet"])
    text = capsys.readouterr()
    assert rc == 1
    assert "broken.mp4: not a readable video" in text.err
    assert {r["video"] for r in read(out)} == {"cam1__a", "cam2__b"}
    assert "decode errors: 1" in text.out


def test_crop_that_does_not_fit_a_video_is_reported(make_bundle, videos, tmp_path, capsys):
    bundle = make_bundle("crop", crop=Crop("fixed", box=(0, 0, 500, 500)))
    rc = main(["run", str(bundle), str(videos), "--out", str(tmp_path / "c.jsonl"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "a.mp4: cannot preprocess" in err and "b.mp4: cannot preprocess" in err


def test_truncated_video_keeps_decoded_frames(make_bundle, videos, tmp_path, capsys):
    data = (videos / "cam2" / "b.mp4").read_bytes()
    cut = tmp_path / "cam9" / "cut.mp4"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    rc = main(["run", str(make_bundle()), str(cut), "--out", str(tmp_path / "c.jsonl")])
    assert rc in (0, 1)  # FFmpeg may or may not notice a cut mp4 before the moov atom
    if rc == 1:
        assert "cut.mp4" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["empty", "missing", "no-media"])
def test_unusable_input_exit_3(make_bundle, tmp_path, capsys, what):
    target = tmp_path / "in"
    if what != "missing":
        target.mkdir()
    if what == "no-media":
        (target / "readme.txt").write_text("x")
    rc = main(["run", str(make_bundle()), str(target), "--out", str(tmp_path / "o.jsonl")])
    assert rc == 3
    err = capsys.readouterr().err
    assert str(target) in err
    assert ("no such file" in err) if what == "missing" else ("holds no videos" in err)


def test_tampered_bundle_exit_3(make_bundle, videos, tmp_path, capsys):
    src = make_bundle()
    with tarfile.open(src, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    members["model.onnx"] = members["model.onnx"][:-1] + b"\x01"
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "o.jsonl"
    assert main(["run", str(bad), str(videos), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "model.onnx: sha256" in err and str(bad) in err
    assert not out.exists()


def test_signature_pinning(make_bundle, keys, videos, tmp_path, capsys, monkeypatch):
    private, public = keys
    pub = tmp_path / "signer.pem"
    pub.write_bytes(public)
    signed, unsigned = make_bundle("s", key=private), make_bundle("u")
    out = str(tmp_path / "o.jsonl")
    assert main(["run", str(signed), str(videos), "--out", out, "--trusted-key", str(pub)]) == 0
    assert "signed by trusted key" in capsys.readouterr().err
    assert main(["run", str(signed), str(videos), "--out", out]) == 0
    assert "not pinned" in capsys.readouterr().err
    monkeypatch.setenv("LENSLINE_TRUSTED_KEY", str(pub))
    assert main(["run", str(unsigned), str(videos), "--out", out]) == 3
    assert (
        "unsigned, but a trusted key is configured (LENSLINE_TRUSTED_KEY)"
        in capsys.readouterr().err
    )
    other = generate_signing_key()[0]
    assert main(["verify", str(make_bundle("o", key=other))]) == 3
    assert "not by the trusted key" in capsys.readouterr().err


def test_verify_and_usage_errors(make_bundle, tmp_path, capsys):
    assert main(["verify", str(make_bundle())]) == 0
    out = capsys.readouterr().out
    assert "model m-1" in out and "int8: skipped: not calibrated" in out
    with pytest.raises(SystemExit) as e:
        main(["run", str(make_bundle())])
    assert e.value.code == 2
    assert main(["run", "b", "i", "--out", "o", "--every", "0"]) == 2
    rc = main(["run", str(make_bundle()), str(tmp_path), "--out", "o", "--target", "int8"])
    assert (
        rc == 3
        and "target 'int8' was not exported (skipped: not calibrated)" in capsys.readouterr().err
    )


def test_progress_lines_when_not_a_tty(make_bundle, videos, tmp_path, capsys):
    args = ["run", str(make_bundle()), str(videos), "--out", str(tmp_path / "p.jsonl")]
    assert main([*args, "--batch", "2", "--progress-every", "0"]) == 0
    err = capsys.readouterr().err
    assert "stream 1/2 cam1__a" in err and "fps" in err


# ------------------------------------------------------------------------------- fresh venv

_PROBE = """
import importlib.util, json, sys
from edge_export.runner import main
rc = main(sys.argv[1:])
print(json.dumps({
    "rc": rc,
    "imported": sorted(m for m in ("torch", "dagster", "polars") if m in sys.modules),
    "installed": sorted(m for m in ("torch", "dagster", "polars")
                        if importlib.util.find_spec(m) is not None),
}))
"""


@pytest.mark.slow
def test_lensline_edge_in_a_fresh_minimal_venv(make_bundle, keys, videos, tmp_path):
    """``python -m venv`` + requirements-edge.txt + ``pip install --no-deps`` of the repo:
    the runner verifies a signed bundle and inspects a video with no torch, Dagster or polars."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[2]
    venv = tmp_path / "edge-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    t0 = time.perf_counter()
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(repo / "edge_export" / "requirements-edge.txt")], check=True)
    t_deps = time.perf_counter() - t0
    # install the lensline package from a copy, so the build leaves nothing in the work tree
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("orchestration", "assets", "data_quality", "training", "edge_export"):
        shutil.copytree(repo / pkg, src / pkg, ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(repo / f, src / f)
    subprocess.run([*pip, "--no-deps", str(src)], check=True)
    t_total = time.perf_counter() - t0
    print(f"\nfresh edge venv: requirements-edge {t_deps:.1f} s, total install {t_total:.1f} s")

    private, public = keys
    pub = tmp_path / "signer.pem"
    pub.write_bytes(public)
    bundle = make_bundle("fresh", key=private)
    out = tmp_path / "fresh.jsonl"
    args = ["run", str(bundle), str(videos), "--out", str(out), "--trusted-key", str(pub)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(py), "-c", _PROBE, *args], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe == {"rc": 0, "imported": [], "installed": []}, proc.stderr
    assert "signed by trusted key" in proc.stderr
    assert len(read(out)) == 20
    script = venv / "bin" / "lensline-edge"
    if script.exists():  # once pyproject declares the console script
        res = subprocess.run(
            [str(script), "verify", str(bundle)], capture_output=True, text=True, env=env
        )
        assert res.returncode == 0, res.stderr

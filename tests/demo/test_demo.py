"""Tests for the demo conveyor-belt generator: tiny videos, seeded, decoded with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import polars as pl
import pytest

from demo import (
    ANNOTATORS,
    CLASS_PROBS,
    CLASSES,
    CONDITIONS,
    Conditions,
    make_annotations,
    make_demo_set,
    render_video,
)

SMALL = (160, 120)


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])


def _gray(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])


def test_conditions_registry() -> None:
    for key in ("nominal", "dark", "gray_gloves", "moved_camera", "dirty_lens"):
        assert CONDITIONS[key].name == key
    assert CONDITIONS["nominal"] == Conditions()
    with pytest.raises(ValueError, match="unknown conditions"):
        render_video("/nonexistent/x.mp4", seed=0, camera_id="c", conditions="foggy")
    with pytest.raises(ValueError, match="even"):
        render_video("/nonexistent/x.mp4", seed=0, camera_id="c", size=(161, 120))


def test_render_is_deterministic(tmp_path: Path) -> None:
    a = render_video(tmp_path / "a.mp4", seed=7, camera_id="cam1", seconds=2, size=SMALL)
    b = render_video(tmp_path / "b.mp4", seed=7, camera_id="cam1", seconds=2, size=SMALL)
    render_video(tmp_path / "c.mp4", seed=8, camera_id="cam1", seconds=2, size=SMALL)
    assert a.equals(b)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    fa, fc = _decode(tmp_path / "a.mp4"), _decode(tmp_path / "c.mp4")
    assert np.array_equal(fa, _decode(tmp_path / "b.mp4"))
    assert not np.array_equal(fa, fc)


def test_truth_matches_decoded_video(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    truth = render_video(path, seed=1, camera_id="cam2", seconds=2, fps=15, size=SMALL)
    assert truth.schema == pl.Schema(
        {
            "frame_index": pl.Int64,
            "timestamp_s": pl.Float64,
            "label": pl.Utf8,
            "item_id": pl.Int64,
            "occluded": pl.Boolean,
        }
    )
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", *SMALL)
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert not c.streams.audio
        n = sum(1 for _ in c.decode(video=0))
    assert n == truth.height == 30
    assert truth["frame_index"].to_list() == list(range(30))
    assert truth["timestamp_s"][15] == pytest.approx(1.0)
    assert (truth["label"].is_null() == truth["item_id"].is_null()).all()


def test_labels_cover_all_classes_over_a_longer_run(tmp_path: Path) -> None:
    truth = render_video(tmp_path / "long.mp4", seed=3, camera_id="cam1", seconds=40, size=SMALL)
    labeled = truth.filter(pl.col("label").is_not_null())
    assert set(labeled["label"]) == set(CLASSES)
    runs = labeled.group_by("item_id").agg(
        pl.len().alias("n"),
        pl.col("label").n_unique().alias("k"),
        (pl.col("frame_index").max() - pl.col("frame_index").min() + 1).alias("span"),
    )
    assert runs["n"].is_between(3, 6).all()  # ~4-5 consecutive centred frames per item
    assert (runs["span"] == runs["n"]).all() and (runs["k"] == 1).all()
    assert 25 <= runs.height <= 40  # one item every 1.0-1.5 s
    items = labeled.unique("item_id")["label"].value_counts()
    good = items.filter(pl.col("label") == "good")["count"][0]
    assert good / runs.height > 0.35


def test_annotator_error_rates() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    labels = rng.choice(CLASSES, size=n, p=CLASS_PROBS).tolist()
    truth = pl.DataFrame({"frame_index": range(n), "label": labels}).vstack(
        pl.DataFrame(
            {"frame_index": [n], "label": [None]},
            schema={"frame_index": pl.Int64, "label": pl.Utf8},
        )
    )
    ann = make_annotations(truth, video="cam1__x", seed=0)
    assert ann.columns == ["video", "frame_index", "label", "annotator"]
    assert ann.height == n * len(ANNOTATORS)
    assert ann.equals(make_annotations(truth, video="cam1__x", seed=0))
    assert not ann.equals(make_annotations(truth, video="cam1__x", seed=1))
    joined = ann.join(truth.rename({"label": "true"}), on="frame_index")
    for name, rate in ANNOTATORS.items():
        mine = joined.filter(pl.col("annotator") == name)
        err = (mine["label"] != mine["true"]).mean()
        assert err == pytest.approx(rate, abs=0.012), name
    # sloppy_sam confuses dent with scratch systematically; alice spreads errors evenly
    for name, low, high in (("sloppy_sam", 0.6, 1.0), ("alice", 0.0, 0.6)):
        wrong_dent = joined.filter(
            (pl.col("annotator") == name) & (pl.col("true") == "dent") & (pl.col("label") != "dent")
        )
        share = (wrong_dent["label"] == "scratch").mean()
        assert low <= share <= high, (name, share)


def test_conditions_shift_image_statistics(tmp_path: Path) -> None:
    out = {}
    for name in ("nominal", "dark", "dirty_lens", "moved_camera"):
        truth = render_video(
            tmp_path / f"{name}.mp4",
            seed=2,
            camera_id="cam1",
            seconds=1.4,
            size=SMALL,
            conditions=name,
        )
        out[name] = (truth, _gray(_decode(tmp_path / f"{name}.mp4")))
    nominal = out["nominal"][1]
    assert out["dark"][1].mean() < 0.7 * nominal.mean()
    assert out["dark"][0].equals(out["nominal"][0])  # conditions change the look, not the items

    def lap(g: np.ndarray) -> float:
        return float(np.mean([cv2.Laplacian(x, cv2.CV_64F).var() for x in g]))

    assert lap(out["dirty_lens"][1]) < 0.5 * lap(nominal)
    # moved camera: the static rails shift down by 14 px at 240 rows -> 7 px at 120 rows
    p0, p1 = nominal.mean(axis=(0, 2)), out["moved_camera"][1].mean(axis=(0, 2))
    errs = {
        k: float(np.mean((p0[10:-20] - p1[10 + k : len(p1) - 20 + k]) ** 2)) for k in range(0, 12)
    }
    assert min(errs, key=errs.get) in (6, 7, 8)


def test_make_demo_set_layout_and_idempotence(tmp_path: Path) -> None:
    landing, truth_csv = tmp_path / "landing", tmp_path / "truth.csv"
    lines: list[str] = []
    kwargs = dict(
        seed=1, cameras=2, videos_per_camera=1, seconds=1.4, size=SMALL, truth_path=truth_csv
    )
    demo = make_demo_set(landing, progress=lines.append, **kwargs)
    expected = [landing / "videos" / f"cam{i}" / "line_0001.mp4" for i in (1, 2)]
    assert demo.videos == expected and all(p.stat().st_size > 0 for p in expected)
    assert demo.labels_csv == landing / "labels" / "annotations.csv" and len(lines) == 2
    ann = pl.read_csv(demo.labels_csv)
    assert ann.columns == ["video", "frame_index", "label", "annotator"]
    assert set(ann["video"]) <= {"cam1__line_0001", "cam2__line_0001"}
    assert set(ann["annotator"]) == set(ANNOTATORS)
    assert {"video_id", "frame_index", "label", "item_id", "occluded", "camera_id", "file"} <= set(
        demo.truth.columns
    )
    assert demo.truth.height == 2 * 21
    assert pl.read_csv(truth_csv).height == demo.truth.height
    files = [*expected, demo.labels_csv, truth_csv]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    again = make_demo_set(landing, **kwargs)
    assert again.truth.equals(demo.truth)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    assert not list(landing.rglob("*.part"))

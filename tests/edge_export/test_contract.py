"""One train/serve contract: the source pixels in the spec (JPEG q90 round trip), old specs
still load, the runner follows the spec, one decoder, and edge_export stands alone."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_export.bundle import build_bundle, open_bundle
from edge_export.postprocess import AlarmRules
from edge_export.preprocess import (
    FORMAT,
    LAKE_JPEG_QUALITY,
    Crop,
    PreprocessError,
    PreprocessSpec,
)
from edge_export.runner import discover
from edge_export.runner.pipeline import _Inspection
from edge_export.runner.sources import iter_video

from .conftest import write_video_levels


def _v1(spec: PreprocessSpec) -> dict:
    """``spec`` as a checkpoint or bundle from before ``jpeg_quality`` recorded it."""
    d = spec.to_dict()
    d.pop("jpeg_quality")
    return {**d, "format": "lensline.preprocess/1"}


def test_jpeg_quality_round_trips_and_defaults_to_the_lake():
    assert PreprocessSpec().jpeg_quality == LAKE_JPEG_QUALITY == 90
    for quality in (90, 75, None):
        spec = PreprocessSpec(image_size=32, crop=Crop("full"), jpeg_quality=quality)
        d = json.loads(spec.to_json())
        assert d["format"] == FORMAT and d["jpeg_quality"] == quality
        assert PreprocessSpec.from_json(spec.to_json()) == spec
    with pytest.raises(PreprocessError, match="jpeg_quality"):
        PreprocessSpec(jpeg_quality=0)
    with pytest.raises(PreprocessError, match="unknown preprocessing format"):
        PreprocessSpec.from_dict({**PreprocessSpec().to_dict(), "format": "lensline.preprocess/9"})


def test_specs_from_before_jpeg_quality_load_as_trained_on_lake_jpegs():
    """Checkpoints (``preprocess`` metadata is ``to_json``) and bundles written as /1."""
    spec = PreprocessSpec(image_size=48, cameras={"cam2": Crop("full")}, mean=(0.5, 0.5, 0.5))
    old = PreprocessSpec.from_json(json.dumps(_v1(spec)))
    assert old == dataclasses.replace(spec, jpeg_quality=90)


def test_a_bundle_written_before_jpeg_quality_still_opens(tmp_path, brightness_onnx):
    spec = PreprocessSpec(image_size=32, crop=Crop("full"))
    legacy = types.SimpleNamespace(to_dict=lambda: _v1(spec))
    path = build_bundle(
        tmp_path / "old.tar.gz",
        files={"model.onnx": brightness_onnx.path},
        model_version="m-old",
        classes=["good", "scratch"],
        preprocess=legacy,  # type: ignore[arg-type]
        postprocess=AlarmRules(),
        model_card={},
        lineage={},
        targets={"onnx": "ok"},
        signing_key=None,
    ).path
    with open_bundle(path) as bundle:
        assert bundle.preprocess == spec and bundle.preprocess.jpeg_quality == 90


def test_source_is_the_lakes_jpeg_round_trip():
    from data_quality.frame_quality import encode_frame

    bgr = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    lake = cv2.imdecode(np.frombuffer(encode_frame(bgr)[0], np.uint8), cv2.IMREAD_COLOR)
    got = PreprocessSpec().source(bgr)
    assert got.dtype == np.uint8 and got.shape == bgr.shape
    assert np.array_equal(got, lake) and not np.array_equal(got, bgr)
    assert PreprocessSpec(jpeg_quality=None).source(bgr) is bgr


@pytest.mark.parametrize("quality", [90, None])
def test_the_runner_feeds_video_frames_the_pixels_the_spec_records(
    tmp_path, brightness_onnx, quality
):
    spec = PreprocessSpec(image_size=32, crop=Crop("full"), jpeg_quality=quality)
    path = build_bundle(
        tmp_path / "b.tar.gz",
        files={"model.onnx": brightness_onnx.path},
        model_version="m-1",
        classes=["good", "scratch"],
        preprocess=spec,
        postprocess=AlarmRules(),
        model_card={},
        lineage={},
        targets={"onnx": "ok"},
        signing_key=None,
    ).path
    video = write_video_levels(tmp_path / "cam1" / "a.mp4", [60, 120, 200])
    bgr = next(iter_video(video))[2]
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "000000.png"), bgr)
    with open_bundle(path) as bundle:
        job = _Inspection(
            bundle, None, io.StringIO(), target="onnx", every=1, batch_size=4, threads=1, workers=1
        )
        try:
            [vid] = discover(video)
            [imgs] = discover(tmp_path / "imgs")
            _, _, from_video, _, _ = job.prepare(vid, 0, 0.0, bgr)
            _, _, from_image, _, _ = job.prepare(imgs, 0, None, bgr)
        finally:
            job.pool.shutdown()
    assert np.array_equal(from_video, spec.image(spec.source(bgr)))
    assert np.array_equal(from_image, spec.image(bgr))  # image files: used as stored
    assert np.array_equal(from_video, from_image) == (quality is None)


def test_ingestion_and_the_runner_decode_the_same_frames(tmp_path):
    from data_quality.video import scan_video

    video = write_video_levels(tmp_path / "a.mp4", list(range(40, 240, 10)))
    scanned: list = []
    report = scan_video(
        video,
        stride=3,
        keep_frames=[4],
        sink=lambda i, ts, img: scanned.append((i, round(ts, 6), img.tobytes())),
    )
    assert report.ok and report.frame_count == 20
    ran = [(i, ts, img.tobytes()) for i, ts, img in iter_video(video)]
    by_index = {i: (ts, b) for i, ts, b in ran}
    assert [i for i, _, _ in scanned] == [0, 3, 4, 6, 9, 12, 15, 18]
    for i, ts, b in scanned:
        assert by_index[i] == (ts, b), i


def test_edge_export_imports_neither_training_nor_data_quality():
    code = (
        "import sys, edge_export.runner, edge_export.bundle, edge_export.postprocess, "
        "edge_export.int8, edge_export.preprocess, edge_export.video, edge_export.quality\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'training', 'data_quality', "
        "'torch', 'dagster', 'polars'}))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_edge_and_lake_quality_limits_live_in_one_place():
    import data_quality.frame_quality as lake
    import edge_export.quality as q

    assert lake.DARK_BRIGHTNESS is q.DARK_BRIGHTNESS and lake.frame_stats is q.frame_stats
    rules = AlarmRules()
    assert (rules.min_brightness, rules.min_sharpness) == (
        q.EDGE_DARK_BRIGHTNESS,
        q.EDGE_BLURRY_SHARPNESS,
    )
    assert json.loads(rules.to_json())["min_brightness"] == q.EDGE_DARK_BRIGHTNESS


def test_the_shared_decoder_hashes_match_a_bare_pyav_decode(tmp_path):
    import av

    video = write_video_levels(tmp_path / "a.mp4", [50, 90, 130, 170])
    with av.open(str(video)) as c:
        bare = [
            hashlib.sha256(f.to_ndarray(format="bgr24").tobytes()).hexdigest()
            for f in c.decode(video=0)
        ]
    ours = [hashlib.sha256(img.tobytes()).hexdigest() for _, _, img in iter_video(video)]
    assert ours == bare


def test_percentile_u8_is_numpys_percentile_bit_for_bit():
    """locate_item's threshold: the histogram percentile equals np.percentile exactly (so the
    crop, and the pixels the model sees, do not move)."""
    from edge_export.preprocess import percentile_u8

    rng = np.random.default_rng(0)
    for i in range(400):
        x = rng.integers(
            0, 256, (int(rng.integers(1, 60)), int(rng.integers(1, 70))), dtype=np.uint8
        )
        q = (75, 50, 10, 99.5, 0, 100)[i % 6]
        assert percentile_u8(x, q) == float(np.percentile(x, q)), (x.shape, q)

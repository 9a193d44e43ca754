"""Frame statistics, JPEG encoding and the threaded encoder, on tiny seeded images."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from data_quality.frame_quality import (
    BLURRY_SHARPNESS,
    DARK_BRIGHTNESS,
    OVEREXPOSED_BRIGHTNESS,
    FrameEncoder,
    encode_frame,
    frame_stats,
)


def _image(seed: int = 0, *, level: int = 128, size=(48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-40, 41, (*size, 3))
    return np.clip(level + noise, 0, 255).astype(np.uint8)


def test_frame_stats_brightness_contrast_sharpness():
    flat = np.full((32, 32, 3), 200, np.uint8)
    assert frame_stats(flat) == {"brightness": 200.0, "contrast": 0.0, "sharpness": 0.0}
    sharp = _image(1)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    s, b = frame_stats(sharp), frame_stats(blurred)
    assert s["brightness"] == pytest.approx(128, abs=2) and s["contrast"] > b["contrast"]
    assert s["sharpness"] > 10 * b["sharpness"]
    assert frame_stats(cv2.cvtColor(sharp, cv2.COLOR_BGR2GRAY)) == s  # gray input: same numbers


def test_limits_separate_typical_frames():
    assert frame_stats(_image(2, level=15))["brightness"] < DARK_BRIGHTNESS
    assert frame_stats(_image(3, level=250))["brightness"] > OVEREXPOSED_BRIGHTNESS
    assert frame_stats(_image(4))["sharpness"] > BLURRY_SHARPNESS
    assert frame_stats(np.full((32, 32, 3), 90, np.uint8))["sharpness"] < BLURRY_SHARPNESS


def test_encode_frame_is_a_decodable_jpeg():
    img = cv2.GaussianBlur(_image(5), (0, 0), 2)  # smooth: JPEG keeps it close
    jpeg, stats = encode_frame(img, quality=95)
    back = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == img.shape and stats == frame_stats(img)
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 4
    assert len(encode_frame(img, quality=30)[0]) < len(jpeg)


def test_frame_encoder_keeps_decode_order_and_hashes():
    enc = FrameEncoder(quality=80, workers=2)
    images = [_image(i, level=40 + 20 * i) for i in range(12)]
    for i, img in enumerate(images):
        enc(i * 5, i / 3, img)
    out = enc.results()
    assert [f.frame_index for f in out] == [i * 5 for i in range(12)]
    assert [(f.width, f.height) for f in out] == [(64, 48)] * 12
    for f, img in zip(out, images, strict=True):
        assert f.sha256 == hashlib.sha256(f.jpeg).hexdigest()
        assert f.jpeg == encode_frame(img, quality=80)[0] and f.stats == frame_stats(img)

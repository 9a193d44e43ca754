"""The preprocessing contract: crop policies, serialisation, and bit-for-bit agreement between
the checkpoint's recorded spec (numpy, as the edge runner runs it) and the training path (torch)."""

import json

import cv2
import numpy as np
import pytest
import torch

from training.checkpoint import checkpoint_spec, load_checkpoint, save_checkpoint
from training.data import preprocess
from training.evaluate import predict_proba
from training.model import build_model
from training.preprocess import Crop, PreprocessError, PreprocessSpec, locate_item


def _belt_frame(cx=200, cy=130, seed=0):
    """A dark belt with a bright grey washer at (cx, cy) and a saturated red glove, BGR."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(20, 40, (240, 320, 3), dtype=np.uint8)
    cv2.circle(frame, (cx, cy), 28, (200, 200, 200), -1)
    cv2.rectangle(frame, (10, 10), (60, 70), (0, 0, 230), -1)  # glove: saturated, ignored
    return frame


def test_item_crop_follows_the_item_and_fixed_and_full_crops():
    frame = _belt_frame()
    x, y = locate_item(frame)
    assert abs(x - 200) < 2 and abs(y - 130) < 2
    item = Crop("item", side=96).apply(frame)
    assert item.shape == (96, 96, 3) and item[48, 48].mean() > 150
    fixed = Crop.parse("fixed:100,50,120,90").apply(frame)
    np.testing.assert_array_equal(fixed, frame[50:140, 100:220])
    assert Crop.parse("full").apply(frame) is frame
    with pytest.raises(PreprocessError, match="does not fit"):
        Crop("fixed", box=(300, 0, 50, 50)).apply(frame)
    with pytest.raises(PreprocessError, match="item\\[:side\\]"):
        Crop.parse("zoom:2")


def test_per_camera_crops_and_round_trip():
    spec = PreprocessSpec(
        image_size=32, cameras={"cam2": Crop.parse("fixed:0,0,160,120"), "cam3": Crop("full")}
    )
    assert spec.crop_for("cam1") == Crop() and spec.crop_for("cam3").policy == "full"
    again = PreprocessSpec.from_json(spec.to_json())
    assert again == spec
    frame = _belt_frame()
    images = spec.images([frame, frame, frame], ["cam1", "cam2", "cam3"])
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    with pytest.raises(PreprocessError, match="unknown preprocessing format"):
        PreprocessSpec.from_dict({**json.loads(spec.to_json()), "format": "other/9"})


def test_decoding_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(PreprocessError, match="broken.jpg"):
        PreprocessSpec().images([bad])


def test_checkpoint_alone_reproduces_the_model_input_bit_for_bit(tmp_path):
    """What training fed the model == what the recorded spec gives (numpy only, as at the edge)."""
    spec = PreprocessSpec(image_size=48, crop=Crop("item", side=100))
    frames = [_belt_frame(cx, 120 + i, seed=i) for i, cx in enumerate((90, 160, 230))]
    paths = []
    for i, f in enumerate(frames):
        paths.append(tmp_path / f"{i:06d}.jpg")
        cv2.imwrite(str(paths[-1]), f, [cv2.IMWRITE_JPEG_QUALITY, 90])
    # the training / evaluation path: spec -> uint8 images -> torch normalisation
    train_input = preprocess(spec.images(paths)).numpy()

    torch.manual_seed(0)
    model = build_model(3, width=4, image_size=48).eval()
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(model, ckpt, metadata={"classes": '["a", "b", "c"]'}, preprocess=spec)
    loaded, meta = load_checkpoint(ckpt)
    edge_input = checkpoint_spec(meta).tensor(paths)  # numpy + OpenCV only

    assert edge_input.dtype == np.float32 and edge_input.shape == (3, 3, 48, 48)
    assert edge_input.tobytes() == train_input.tobytes()
    with torch.inference_mode():
        logits = loaded(torch.from_numpy(edge_input)).numpy()
    probs = predict_proba(model, spec.images(paths))  # the evaluation path, same weights
    np.testing.assert_array_equal(torch.softmax(torch.from_numpy(logits), 1).numpy(), probs)


def test_preprocess_module_needs_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, training.preprocess as p; p.PreprocessSpec().tensor([__import__('numpy')"
        ".zeros((240, 320, 3), 'uint8')]); bad = {'torch', 'dagster', 'polars'} & set(sys.modules);"
        " assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_normalisation_reads_the_specs_mean_and_std():
    """training.data takes mean/std from the spec (not module constants): same bits as numpy."""
    from training.data import ArrayLoader

    spec = PreprocessSpec(image_size=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    images = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    want = spec.normalize(images)
    got = preprocess(images, mean=spec.mean, std=spec.std).numpy()
    assert np.array_equal(got, want)
    assert not np.array_equal(preprocess(images).numpy(), want)  # the defaults are other numbers
    loader = ArrayLoader(images, np.zeros(5), batch_size=5, mean=spec.mean, std=spec.std)
    [(x, _)] = list(loader)
    assert torch.equal(x, torch.from_numpy(want))


def _locate_item_numpy(bgr):
    """locate_item as first written (numpy percentile and mask): the OpenCV version must agree."""
    h, w = bgr.shape[:2]
    hsv = cv2.cvtColor(cv2.GaussianBlur(bgr, (7, 7), 0), cv2.COLOR_BGR2HSV)
    value, sat = hsv[..., 2], hsv[..., 1]
    raw = ((value > max(float(np.percentile(value, 75)), 60.0)) & (sat < 90)).astype(np.uint8)
    opened = cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    n, _, stats, centroids = cv2.connectedComponentsWithStats(closed)
    best, best_area = None, 0.002 * h * w
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if bw > 0.6 * w or bh > 0.8 * h or max(bw, bh) > 3.0 * max(1, min(bw, bh)):
            continue
        if area > best_area:
            best, best_area = i, area
    if best is None:
        return w / 2.0, h / 2.0
    return float(centroids[best][0]), float(centroids[best][1])


@pytest.mark.parametrize("seed", range(6))
def test_locate_item_equals_the_numpy_formulation(seed):
    """The serve loop's GIL-free locate_item (cv2.calcHist + cv2.inRange) finds the same centre
    as numpy's percentile and boolean mask, bright, dark and noisy frames alike."""
    rng = np.random.default_rng(seed)
    frame = _belt_frame(cx=int(rng.integers(40, 280)), cy=int(rng.integers(40, 200)), seed=seed)
    noisy = np.clip(frame.astype(int) + rng.integers(-60, 60, frame.shape), 0, 255).astype(np.uint8)
    for img in (frame, (frame * 0.25).astype(np.uint8), noisy, np.full_like(frame, 200)):
        assert locate_item(img) == _locate_item_numpy(img)

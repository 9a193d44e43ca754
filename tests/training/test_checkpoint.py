"""Checkpoints: safetensors round trip; anything corrupt, truncated or tampered is refused by name."""

import json
import struct

import numpy as np
import pytest
import torch

from edge_export.fsutil import sha256_file
from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.evaluate import predict_proba
from training.model import build_model
from training.preprocess import PreprocessSpec

CLASSES = ["dent", "good", "scratch"]


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(3, width=4, image_size=16).eval()
    path = tmp_path / "models" / "m.safetensors"
    sha = save_checkpoint(
        model,
        path,
        metadata={"classes": json.dumps(CLASSES), "config": '{"lr": 0.01}'},
        preprocess=PreprocessSpec(image_size=16),
    )
    return model, path, sha


def _images():
    return np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)


def test_round_trip_rebuilds_the_same_model(saved):
    model, path, sha = saved
    assert sha == sha256_file(path)
    loaded, meta = load_checkpoint(path, expected_sha256=sha)
    assert json.loads(meta["classes"]) == CLASSES
    assert json.loads(meta["config"]) == {"lr": 0.01}
    assert json.loads(meta["architecture"])["width"] == 4
    assert json.loads(meta["preprocess"])["channel_order"] == "RGB"
    assert loaded.config == model.config
    np.testing.assert_array_equal(predict_proba(loaded, _images()), predict_proba(model, _images()))
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temp file


def test_the_same_model_and_metadata_always_give_the_same_file(saved, tmp_path):
    # safetensors orders its header from a hash map: unsorted, every save differed, and so did
    # the model version (the file's sha256) of identical weights
    model, path, sha = saved
    meta = {
        "config": '{"lr": 0.01}',
        "classes": json.dumps(CLASSES),
        **{f"k{i}": "v" for i in range(8)},
    }
    shas = {
        save_checkpoint(model, tmp_path / f"again{i}.safetensors", metadata=meta,
                        preprocess=PreprocessSpec(image_size=16))
        for i in range(5)
    }  # fmt: skip
    assert len(shas) == 1
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0 and list(json.loads(blob[8 : 8 + n])) == sorted(json.loads(blob[8 : 8 + n]))
    load_checkpoint(tmp_path / "again0.safetensors", expected_sha256=shas.pop())


def test_sha_mismatch_is_refused(saved):
    _, path, sha = saved
    with pytest.raises(CheckpointError, match="sha256 mismatch") as err:
        load_checkpoint(path, expected_sha256="0" * 64)
    assert str(path) in str(err.value)


def test_flipped_tensor_bytes_are_caught_without_a_sha(saved):
    _, path, _ = saved
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF  # inside the last tensor's data
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="digest") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_bad_header_and_truncation(saved, tmp_path):
    _, path, _ = saved
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    broken = tmp_path / "header.safetensors"
    broken.write_bytes(blob[:8] + b"{" * n + blob[8 + n :])
    with pytest.raises(CheckpointError, match="bad header") as err:
        load_checkpoint(broken)
    assert "header.safetensors" in str(err.value)

    short = tmp_path / "short.safetensors"
    short.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(short)
    assert "short.safetensors" in str(err.value)

    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(blob[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tiny)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.safetensors")


def _rewrite(path, state, meta, out):
    from safetensors.torch import save_file

    save_file(state, str(out), metadata=meta)
    return out


def test_missing_tensor_wrong_shape_and_wrong_metadata(saved, tmp_path):
    from safetensors import safe_open

    _, path, _ = saved
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118

    missing = {k: v for k, v in state.items() if k != "head.bias"}
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_checkpoint(_rewrite(path, missing, meta, tmp_path / "missing.safetensors"))

    wrong_shape = {**state, "head.bias": torch.zeros(5)}
    with pytest.raises(CheckpointError, match="head.bias"):
        load_checkpoint(_rewrite(path, wrong_shape, meta, tmp_path / "shape.safetensors"))

    two_classes = {**meta, "classes": json.dumps(["good", "bad"])}
    with pytest.raises(CheckpointError, match="classes"):
        load_checkpoint(_rewrite(path, state, two_classes, tmp_path / "classes.safetensors"))

    wider = {**meta, "architecture": meta["architecture"].replace('"width": 4', '"width": 8')}
    with pytest.raises(CheckpointError, match="architecture needs"):
        load_checkpoint(_rewrite(path, state, wider, tmp_path / "wider.safetensors"))

    foreign = {k: v for k, v in meta.items() if k != "format"}
    with pytest.raises(CheckpointError, match="not a Lensline checkpoint"):
        load_checkpoint(_rewrite(path, state, foreign, tmp_path / "foreign.safetensors"))


def test_save_validates_metadata(tmp_path):
    model = build_model(3, width=4)
    with pytest.raises(ValueError, match="classes"):
        save_checkpoint(
            model,
            tmp_path / "a.safetensors",
            metadata={"classes": json.dumps(["a", "b"])},
            preprocess=PreprocessSpec(),
        )
    with pytest.raises(TypeError):
        save_checkpoint(
            model,
            tmp_path / "a.safetensors",
            metadata={"classes": CLASSES},
            preprocess=PreprocessSpec(),
        )
    with pytest.raises(ValueError, match="format"):
        save_checkpoint(
            model,
            tmp_path / "a.safetensors",
            metadata={"classes": json.dumps(CLASSES), "format": "x"},
            preprocess=PreprocessSpec(),
        )

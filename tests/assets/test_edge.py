"""Edge export assets through real Dagster runs: every gate passes on a good champion and the
bundle verifies; a deliberately broken ONNX export or a wrong INT8 calibration fails its
blocking check and no edge bundle is built."""

from __future__ import annotations

import json

import cv2
import dagster as dg
import numpy as np
import polars as pl
import pytest

from lake.storage import LensStorage
from lake.tables import TABLES

CLASSES = ["dent", "good"]
SIZE = 32
SMALL = {"ops": {k: {"config": {"latency_iters": 3, "calibration_frames": 48}}
                 for k in ("onnx_model", "int8_onnx", "openvino_model")}}  # fmt: skip


def _frame(label: str, rng) -> np.ndarray:
    """A 96x128 belt frame: a bright part, with a dark dent blob for ``dent``."""
    img = rng.integers(20, 40, (96, 128, 3), dtype=np.uint8)
    cx, cy = int(rng.integers(40, 88)), int(rng.integers(35, 60))
    cv2.circle(img, (cx, cy), 26, (210, 210, 210), -1)
    if label == "dent":
        cv2.circle(img, (cx + int(rng.integers(-8, 8)), cy), 9, (60, 60, 60), -1)
    return img


@pytest.fixture
def classes():
    """The champion's class map (defect first); tests of other class maps override it."""
    return CLASSES


@pytest.fixture
def champion_lake(home, classes):
    """A lake with frames, a curated dataset, videos and a registered champion (tiny CNN)."""
    from training.checkpoint import save_checkpoint
    from training.preprocess import Crop, PreprocessSpec
    from training.train import TrainConfig, train_model

    storage = LensStorage()
    rng = np.random.default_rng(0)
    spec = PreprocessSpec(image_size=SIZE, crop=Crop("full"))
    rows, bgr = [], []
    for v, split in enumerate(["train", "train", "train", "test"]):
        for i in range(40):
            label = classes[(i + v) % 2]
            img = _frame("dent" if label == classes[0] else "good", rng)
            uri = storage.uri("artifacts", "frames", f"cam1__v{v}", f"{i:06d}.jpg")
            ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            storage.write_bytes(uri, jpg.tobytes())
            rows.append({"video_id": f"cam1__v{v}", "camera_id": "cam1", "frame_index": i,
                         "uri": uri, "sha256": _sha(jpg.tobytes()), "label": label, "split": split})  # fmt: skip
            bgr.append(cv2.imdecode(jpg, cv2.IMREAD_COLOR))
    table = pl.DataFrame(rows)
    storage.write_table(TABLES["frames"].conform(table.drop("label", "split")), "frames")
    version = storage.write_table(
        table.select("video_id", "frame_index", "label", "split").with_columns(
            action=pl.lit("keep"), original_label=pl.col("label")
        ),
        "dataset",
    )
    videos = table.select("video_id").unique()
    videos = videos.with_columns(sha256=pl.lit("0" * 64), status=pl.lit("ok"))
    storage.write_table(TABLES["videos"].conform(videos), "videos")
    train = table["split"] == "train"
    images = spec.images(bgr)
    y = np.array([classes.index(v) for v in table["label"]])
    result = train_model(
        images[train.to_numpy()], y[train.to_numpy()], classes=classes,
        config=TrainConfig(epochs=6, image_size=SIZE, width=4, batch_size=16, seed=0),
    )  # fmt: skip
    local = home / "model.safetensors"
    sha = save_checkpoint(
        result.model, local, metadata=result.checkpoint_metadata(), preprocess=spec
    )
    uri = storage.uri("artifacts", "models", f"m-{sha[:12]}", "model.safetensors")
    storage.write_bytes(uri, local.read_bytes())
    registry = storage.registry()
    model_version = registry.register_challenger(
        checkpoint_uri=uri, checkpoint_sha256=sha, metrics={"accuracy": 1.0},
        config=result.config.to_json(), dataset_version=version, label_version=0, code_version="t",
    )  # fmt: skip
    registry.promote(model_version, reason="test champion")
    return storage, model_version, table


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _materialize(instance):
    from assets.bundle import edge_bundle
    from assets.export import int8_onnx, onnx_model, openvino_model, tensorrt_engine

    return dg.materialize(
        [onnx_model, int8_onnx, openvino_model, tensorrt_engine, edge_bundle],
        resources={"storage": LensStorage()},
        instance=instance,
        run_config=SMALL,
        raise_on_error=False,
    )


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("classes", "enabled"),
    [(["dent", "no defect"], True), (["3", "7"], False)],
    ids=["readme-names", "digits"],
)
def test_a_class_map_without_good_ships_its_bundle(champion_lake, classes, enabled):
    """Issue 15.1: the README's example names (``no defect``: a known ok name, alarms on) and
    digits (no ok class: alarms off, WARN ``alarm_rules`` check naming how to turn them on)
    both ship a bundle; the graph does not fail."""
    from edge_export.bundle import open_bundle

    storage, version, _ = champion_lake
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(instance)
        assert result.success, [e.message for e in result.get_step_failure_events()]
        check = next(
            e for e in result.get_asset_check_evaluations() if e.check_name == "alarm_rules"
        )
        assert check.passed == enabled and check.severity == dg.AssetCheckSeverity.WARN
        reason = check.metadata["reasons"].value
    row = storage.read_table("edge_bundles").row(0, named=True)
    with open_bundle(row["uri"]) as bundle:
        rules = bundle.postprocess
        assert bundle.model_version == version and rules.enabled == enabled
    if enabled:
        assert rules.ok_classes == ("no defect",) and rules.defect_classes == ("dent",)
    else:
        assert "no class in the class map ['3', '7'] is a known ok class" in reason
        assert "set ok_classes" in reason and rules.disabled_reason == reason


@pytest.mark.slow
def test_gates_pass_and_the_bundle_verifies_and_runs(champion_lake, tmp_path):
    from edge_export.bundle import open_bundle

    storage, version, table = champion_lake
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(instance)
        assert result.success, [e.message for e in result.get_step_failure_events()]
        checks = _checks(result)
        assert checks["onnx_parity"] and checks["int8_accuracy"] and checks["openvino_parity"]
        skipped = instance.get_latest_materialization_event(dg.AssetKey("tensorrt_engine"))
        assert skipped is None  # no TensorRT here: skipped with the reason, never a fake engine

    row = storage.read_table("edge_bundles").row(0, named=True)
    assert row["model_version"] == version
    targets = json.loads(row["targets"])
    assert targets["onnx"] == "ok" and targets["tensorrt"].startswith("skipped: ")
    # the NNCF INT8 IR ships only when its accuracy check passed; otherwise the manifest says why
    assert (targets["openvino_int8"] == "ok") == checks["openvino_int8_accuracy"]
    with open_bundle(row["uri"]) as bundle:
        assert bundle.targets == targets
        assert bundle.model_version == version and bundle.classes == CLASSES
        assert bundle.lineage["dataset_version"] is not None
        assert bundle.model_card["gates_passed"]["onnx_model/onnx_parity"] is True
        assert bundle.signature.kind == "unsigned"

    # the standalone runner on the test frames agrees with the champion (torch) frame by frame
    from edge_export.runner import main as edge_main
    from training.checkpoint import load_checkpoint
    from training.evaluate import predict_proba
    from training.preprocess import PreprocessSpec

    test = table.filter(pl.col("split") == "test")
    folder = tmp_path / "cam1__v3"
    folder.mkdir()
    for r in test.iter_rows(named=True):
        (folder / f"{r['frame_index']:06d}.jpg").write_bytes(storage.read_bytes(r["uri"]))
    out = tmp_path / "out.jsonl"
    assert edge_main(["run", row["uri"], str(folder), "--out", str(out), "--quiet"]) == 0
    edge = [json.loads(line) for line in out.read_text().splitlines()]
    model, meta = load_checkpoint(
        storage.fetch_local([storage.read_table("models")["checkpoint_uri"][0]])[0]
    )
    spec = PreprocessSpec.from_json(meta["preprocess"])
    torch_labels = [
        CLASSES[i] for i in predict_proba(model, spec.images(test["uri"].to_list())).argmax(1)
    ]
    assert [e["label"] for e in sorted(edge, key=lambda e: e["frame_index"])] == torch_labels


@pytest.mark.slow
def test_broken_onnx_export_fails_parity_and_blocks_the_bundle(champion_lake, monkeypatch):
    import onnx
    from onnx import numpy_helper

    import edge_export.onnx as onnx_export

    real = onnx_export.export_onnx

    def broken(model, path, **kwargs):  # a silently corrupted export: one weight perturbed
        out = real(model, path, **kwargs)
        proto = onnx.load(str(out))
        init = next(t for t in proto.graph.initializer if t.name.startswith("stem"))
        arr = numpy_helper.to_array(init).copy()
        arr.flat[: max(1, arr.size // 4)] *= 1.5
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
        onnx.save(proto, str(out))
        return out

    monkeypatch.setattr(onnx_export, "export_onnx", broken)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(instance)
        assert not result.success
        assert _checks(result)["onnx_parity"] is False
        assert instance.get_latest_materialization_event(dg.AssetKey("edge_bundle")) is None
    assert champion_lake[0].read_table("edge_bundles") is None


@pytest.mark.slow
def test_wrong_int8_calibration_fails_the_accuracy_gate_and_blocks_the_bundle(
    champion_lake, monkeypatch
):
    import edge_export.int8 as int8

    real = int8.quantize_int8

    def miscalibrated(fp32, out, calibration, **kwargs):  # blank frames: ranges collapse
        return real(fp32, out, np.zeros_like(calibration), **kwargs)

    monkeypatch.setattr(int8, "quantize_int8", miscalibrated)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(instance)
        checks = _checks(result)
        assert checks["onnx_parity"] is True and checks["int8_accuracy"] is False
        assert instance.get_latest_materialization_event(dg.AssetKey("edge_bundle")) is None


@pytest.mark.slow
def test_a_failing_optional_int8_ir_is_left_out_of_the_bundle_with_the_reason(
    champion_lake, monkeypatch
):
    import edge_export.openvino as ov

    real = ov.quantize_ir

    def blank(onnx_path, out, calibration, **kwargs):  # ranges from blank frames
        return real(onnx_path, out, np.zeros_like(calibration), **kwargs)

    monkeypatch.setattr(ov, "quantize_ir", blank)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(instance)
        checks = _checks(result)
        assert checks["openvino_parity"] and checks["openvino_int8_accuracy"] is False
        assert result.success  # a WARN check: the champion's bundle is still built
    targets = json.loads(champion_lake[0].read_table("edge_bundles")["targets"][0])
    assert targets["openvino_int8"].startswith("skipped: failed openvino_int8_accuracy")
    assert targets["openvino"] == "ok" and targets["int8"] == "ok"

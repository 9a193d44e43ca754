"""Ensembles (TrainConfig.members > 1): N networks of N seeds, one module, one checkpoint, one
ONNX graph whose output a softmax reads as the mean of the members' probabilities."""

import json

import numpy as np
import pytest
import torch

from tests.training.test_train import TINY, _same_weights, _squares
from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.model import LenslineEnsemble, LenslineNet, ModelConfig, build_network
from training.preprocess import PreprocessSpec
from training.train import TrainConfig, _init_model, train_model

CLASSES = ["dark", "bright"]
SPEC = PreprocessSpec(image_size=TINY["image_size"])


def _train(x, y, **kw):
    return train_model(
        x, y, classes=CLASSES, config=TrainConfig(**{**TINY, "epochs": 2, "seed": 2, **kw}),
        val_images=x[:16], val_labels=y[:16], progress=kw.pop("progress", None),
    )  # fmt: skip


def test_members_are_the_one_network_runs_of_their_seeds_and_the_output_their_mean_probability():
    x, y = _squares(48, 0)
    rows = []
    ens = train_model(
        x, y, classes=CLASSES, config=TrainConfig(**{**TINY, "epochs": 2, "seed": 2, "members": 3}),
        val_images=x[:16], val_labels=y[:16], progress=rows.append,
    )  # fmt: skip
    assert isinstance(ens.model, LenslineEnsemble) and not ens.model.training
    assert ens.model.config.members == 3 and ens.config.members == 3
    singles = [_train(x, y, seed=2 * 3 + i) for i in range(3)]  # member i: seed * members + i
    for member, single in zip(ens.model.members, singles, strict=True):
        assert _same_weights(member, single.model)
    xt = torch.from_numpy(np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype("f4"))
    with torch.no_grad():
        mean = torch.stack([torch.softmax(s.model(xt), 1) for s in singles]).mean(0)
        assert torch.allclose(torch.softmax(ens.model(xt), 1), mean, atol=1e-6)
        assert ens.model.features(xt).shape == (5, 3 * singles[0].model.embedding_dim)
    # progress says which member; the history is the members' mean; val_acc the ensemble's own
    assert [(r["member"], r["epoch"]) for r in rows] == [(m, e) for m in (1, 2, 3) for e in (1, 2)]
    assert ens.history[-1]["loss"] == pytest.approx(
        np.mean([s.history[-1]["loss"] for s in singles])
    )
    pred = torch.softmax(ens.model(torch.from_numpy(_norm(x[:16]))), 1).argmax(1).numpy()
    assert ens.val_acc == pytest.approx(float((pred == y[:16]).mean()))
    assert singles[0].val_acc == singles[0].history[singles[0].best_epoch - 1]["val_acc"]


def _norm(x):
    from training.data import ArrayLoader

    return next(iter(ArrayLoader(x, np.zeros(len(x), int), batch_size=len(x))))[0].numpy()


def test_an_ensemble_checkpoint_round_trips_and_a_member_short_is_named(tmp_path):
    x, y = _squares(32, 0)
    ens = _train(x, y, members=2)
    path = tmp_path / "ens.safetensors"
    save_checkpoint(ens.model, path, metadata=ens.checkpoint_metadata(), preprocess=SPEC)
    loaded, meta = load_checkpoint(path)
    assert isinstance(loaded, LenslineEnsemble) and _same_weights(loaded, ens.model)
    assert json.loads(meta["architecture"])["members"] == 2
    assert TrainConfig.from_dict(json.loads(meta["config"])).members == 2
    # an architecture that says 3 members over 2 members' tensors
    from safetensors.torch import load, save

    state = load(path.read_bytes())
    header = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])
    bad_meta = {**header["__metadata__"]}
    bad_meta["architecture"] = json.dumps({**json.loads(bad_meta["architecture"]), "members": 3})
    (tmp_path / "bad.safetensors").write_bytes(save(state, metadata=bad_meta))
    with pytest.raises(CheckpointError, match=r"bad.safetensors: missing tensors \['members.2"):
        load_checkpoint(tmp_path / "bad.safetensors")
    # checkpoints written before ensembles (no 'members' in the architecture) load as one network
    one = ModelConfig(num_classes=2, width=4, image_size=32)
    legacy = {k: v for k, v in one.to_dict().items() if k != "members"}
    assert isinstance(build_network(ModelConfig(**legacy)), LenslineNet)


def test_a_warm_start_from_an_ensemble_starts_each_member_from_its_counterpart(tmp_path):
    x, y = _squares(32, 0)
    parent = _train(x, y, members=2)
    path = tmp_path / "parent.safetensors"
    save_checkpoint(parent.model, path, metadata=parent.checkpoint_metadata(), preprocess=SPEC)
    cfg = TrainConfig(**{**TINY, "members": 2, "init_checkpoint": str(path)})
    for i in range(2):
        started = _init_model(CLASSES, cfg, member=i)
        assert _same_weights(started, parent.model.members[i])
    child = train_model(x, y, classes=CLASSES, config=TrainConfig(**{**TINY, "epochs": 1,
                        "members": 2, "init_checkpoint": str(path)}))  # fmt: skip
    assert isinstance(child.model, LenslineEnsemble)


def test_bad_member_counts_are_refused():
    with pytest.raises(ValueError, match="members must be 1..16"):
        TrainConfig(members=0)
    with pytest.raises(ValueError, match="at least 2 members"):
        LenslineEnsemble([build_network(ModelConfig(num_classes=2, width=4))])
    with pytest.raises(ValueError, match="share one architecture"):
        LenslineEnsemble([build_network(ModelConfig(num_classes=2, width=w)) for w in (4, 8)])
    with pytest.raises(ValueError, match="members=2 is an ensemble"):
        LenslineNet(ModelConfig(num_classes=2, members=2))


def test_an_ensemble_exports_as_one_onnx_graph_with_parity_and_quantises(tmp_path):
    import onnx

    from edge_export.int8 import quantize_int8, verify_accuracy
    from edge_export.onnx import export_onnx, torch_logits, verify_parity

    x, y = _squares(48, 0)
    ens = _train(x, y, members=3, epochs=3)
    xt = _norm(x)
    path = export_onnx(ens.model, tmp_path / "ens.onnx", image_size=TINY["image_size"])
    graph = onnx.load(str(path)).graph
    assert len(graph.input) == len(graph.output) == 1  # one graph: three networks inside
    assert sum(n.op_type == "Gemm" for n in graph.node) == 3
    report = verify_parity(ens.model, path, xt, threads=1)
    assert report.passed, report
    q = quantize_int8(path, tmp_path / "ens_int8.onnx", xt[:32], activations="uint8")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: xt})[0]
    acc = verify_accuracy(torch_logits(ens.model, xt), out, y, CLASSES)
    assert acc.passed, acc

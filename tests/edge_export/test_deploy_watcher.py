"""The box's DesiredStateWatcher on real signed bundles published by lake.deployments."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from edge_export.bundle import build_bundle, generate_signing_key
from edge_export.fsutil import sha256_file
from edge_export.postprocess import AlarmRules
from edge_export.service.deploy import Change, DesiredStateWatcher, sign_document
from lake.deployments import deploy, publish, rollback
from lake.storage import LensStorage
from training.preprocess import PreprocessSpec


@pytest.fixture(scope="module")
def keys():
    return generate_signing_key(), generate_signing_key()  # (trusted pair, another pair)


@pytest.fixture
def lake(brightness_onnx, keys, tmp_path):
    """``lake(version, key=trusted)``: build a signed bundle, store it and its edge_bundles row."""
    storage = LensStorage()

    def _add(version: str, key: bytes | None = None) -> str:
        info = build_bundle(
            tmp_path / "build" / version / "bundle.tar.gz",
            files={"model.onnx": brightness_onnx.path}, model_version=version,
            classes=brightness_onnx.classes, preprocess=PreprocessSpec(image_size=32),
            postprocess=AlarmRules(raise_after=2, clear_after=2), model_card={},
            lineage={"model": version}, targets={"onnx": "ok"},
            signing_key=key or keys[0][0], created_at="2026-01-02T03:04:05+00:00",
        )  # fmt: skip
        uri = storage.uri("artifacts", "bundles", version, "bundle.tar.gz")
        storage.write_bytes(uri, Path(info.path).read_bytes())
        row = {
            "model_version": [version], "uri": [uri], "sha256": [sha256_file(info.path)],
            "targets": ['{"onnx": "ok"}'], "signed": [True],
        }  # fmt: skip
        frame = pl.DataFrame(row).with_columns(pl.lit(None).alias("created_at"))
        storage.write_table(
            frame, "edge_bundles", replace_where=storage.eq_predicate("model_version", version)
        )
        return uri

    _add.storage = storage  # type: ignore[attr-defined]
    return _add


def watcher(source, keys, tmp_path) -> DesiredStateWatcher:
    return DesiredStateWatcher(
        source, "b1", trusted_key=keys[0][1], cache_dir=tmp_path / "cache", poll_s=0.1
    )


def versions(change: Change) -> dict[str, dict[str, str]]:
    return {
        c: {r: b.model_version for r, b in roles.items()} for c, roles in change.cameras.items()
    }


def test_a_published_deployment_is_downloaded_and_verified(home, lake, keys, tmp_path):
    lake("m-001"), lake("m-002")
    storage = lake.storage
    w = watcher(home, keys, tmp_path)
    assert w.poll() is None and "nothing published yet" in w.last_problem
    deploy(storage, "m-001", box="b1", by="ana")
    deploy(storage, "m-002", box="b1", role="shadow", by="ana")
    deploy(storage, "m-002", box="b1", camera="cam2", by="ana")
    publish(storage, "b1", signing_key=keys[0][0])

    change = w.poll()
    assert change is not None and change.ok and change.seq == 3
    assert versions(change) == {
        "*": {"champion": "m-001", "shadow": "m-002"},
        "cam2": {"champion": "m-002"},
    }
    champion = change.cameras["*"]["champion"]
    assert champion.signature.kind == "trusted"
    assert champion.path == tmp_path / "cache" / f"{champion.sha256}.tar.gz"
    assert (champion.root / "model.onnx").is_file()  # extracted, ready to load
    assert {r: b.model_version for r, b in change.for_camera("cam2").items()} == {
        "champion": "m-002", "shadow": "m-002"
    }  # fmt: skip
    assert w.poll() is None  # nothing new


def test_tampered_document_or_bundle_is_refused_and_the_previous_kept(home, lake, keys, tmp_path):
    lake("m-001"), lake("m-002")
    lake("m-003", key=keys[1][0])  # a bundle signed by another key
    storage = lake.storage
    deploy(storage, "m-001", box="b1", by="ana")
    doc = Path(publish(storage, "b1", signing_key=keys[0][0]).uri)
    w = watcher(home, keys, tmp_path)
    applied = w.poll()
    assert applied is not None and applied.ok

    good = json.loads(doc.read_bytes())
    edited = json.loads(doc.read_bytes())
    edited["payload"]["cameras"]["*"]["champion"]["model_version"] = "m-002"
    doc.write_text(json.dumps(edited))
    refused = w.poll()
    assert refused is not None and not refused.ok and refused.cameras == {}
    assert "bad signature" in refused.problems[0]
    assert w.current is applied and w.poll() is None  # reported once, the old state in force

    for key, why in ((keys[1][0], "not by the trusted key"), (None, "unsigned")):
        doc.write_bytes(sign_document(good["payload"] | {"seq": 5}, key))
        refused = w.poll()
        assert refused is not None and why in refused.problems[0]

    deploy(storage, "m-003", box="b1", by="ana")
    publish(storage, "b1", signing_key=keys[0][0])
    refused = w.poll()
    assert refused is not None and "m-003" in refused.problems[0]
    assert "not by the trusted key" in refused.problems[0]  # the bundle verifier refused it

    deploy(storage, "m-002", box="b1", by="ana")
    publish(storage, "b1", signing_key=keys[0][0])
    bundle = Path(storage.uri("artifacts", "bundles", "m-002", "bundle.tar.gz"))
    real = bundle.read_bytes()
    bundle.write_bytes(real[:-10] + b"0123456789")
    refused = w.poll()
    assert refused is not None and "does not match the deployment's" in refused.problems[0]
    assert w.current is applied
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.tar.gz")) == [
        f"{applied.cameras['*']['champion'].sha256}.tar.gz"
    ]
    bundle.write_bytes(real)  # repaired at the source: the next poll takes it
    change = w.poll()
    assert change is not None and change.ok and versions(change) == {"*": {"champion": "m-002"}}


def test_rollback_needs_no_download_and_a_replayed_document_is_refused(home, lake, keys, tmp_path):
    lake("m-001"), lake("m-002")
    storage = lake.storage
    w = watcher(home, keys, tmp_path)
    deploy(storage, "m-001", box="b1", by="ana")
    doc = Path(publish(storage, "b1", signing_key=keys[0][0]).uri)
    assert w.poll() is not None
    old = doc.read_bytes()
    deploy(storage, "m-002", box="b1", by="ana")
    publish(storage, "b1", signing_key=keys[0][0])
    assert versions(w.poll()) == {"*": {"champion": "m-002"}}

    for version in ("m-001", "m-002"):  # the source loses the bundles: the cache must do
        Path(storage.uri("artifacts", "bundles", version, "bundle.tar.gz")).unlink()
    rollback(storage, box="b1", by="bo", reason="false rejects")
    publish(storage, "b1", signing_key=keys[0][0])
    back = w.poll()
    assert back is not None and back.ok and versions(back) == {"*": {"champion": "m-001"}}
    assert back.seq == 3

    doc.write_bytes(old)  # a validly signed, older document replayed
    refused = w.poll()
    assert refused is not None and "older than the state in force" in refused.problems[0]


def test_the_watcher_reads_an_s3_prefix(s3_env, lake, keys, tmp_path):
    lake("m-001")
    storage = lake.storage
    deploy(storage, "m-001", box="b1", by="ana")
    done = publish(storage, "b1", signing_key=keys[0][0])
    assert done.uri == f"{s3_env}/deployments/b1.json"
    change = watcher(s3_env, keys, tmp_path).poll()
    assert change is not None and change.ok, change
    bundle = change.cameras["*"]["champion"]
    assert bundle.model_version == "m-001" and bundle.signature.kind == "trusted"
    assert bundle.path.parent == tmp_path / "cache"


def test_the_cache_keeps_what_runs_and_the_last_few_for_rollback(home, lake, keys, tmp_path):
    """A box runs for months: each change prunes the cache to the bundles in force plus the
    ``keep_bundles`` most recently in force; going back to a pruned one downloads it again."""
    storage = lake.storage
    w = DesiredStateWatcher(home, "b1", trusted_key=keys[0][1], cache_dir=tmp_path / "cache",
                            keep_bundles=2)  # fmt: skip
    sha = {}
    for i in range(1, 7):
        version = f"m-00{i}"
        lake(version)
        deploy(storage, version, box="b1", by="ana")
        publish(storage, "b1", signing_key=keys[0][0])
        change = w.poll()
        assert change is not None and change.ok, w.last_problem
        sha[version] = change.cameras["*"]["champion"].sha256
    cached = {p.name.removesuffix(".tar.gz") for p in (tmp_path / "cache").glob("*.tar.gz")}
    assert cached == {sha["m-006"], sha["m-005"], sha["m-004"]}
    assert {p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()} <= cached
    deploy(storage, "m-001", box="b1", by="ana", reason="back to the first")
    publish(storage, "b1", signing_key=keys[0][0])
    change = w.poll()
    assert change is not None and change.ok
    assert change.cameras["*"]["champion"].model_version == "m-001"
    assert (tmp_path / "cache" / f"{sha['m-001']}.tar.gz").is_file()  # fetched and verified again

"""Deployments as desired state on real Delta tables in a temp home: deploy, rollback, publish."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from edge_export.bundle import generate_signing_key, load_trusted_key
from edge_export.service.deploy import DocumentError, read_document
from lake.deployments import DeploymentError, deploy, desired_state, history, publish, rollback
from lake.storage import LensStorage


def add_bundle(storage: LensStorage, version: str, sha: str | None = None) -> str:
    """An ``edge_bundles`` row for ``version`` (the file itself is not needed here)."""
    uri = storage.uri("artifacts", "bundles", version, "bundle.tar.gz")
    row = {
        "model_version": [version], "uri": [uri], "sha256": [sha or version[-1] * 64],
        "targets": ['{"onnx": "ok"}'], "signed": [True], "created_at": [datetime.now(UTC)],
    }  # fmt: skip
    storage.write_table(
        pl.DataFrame(row),
        "edge_bundles",
        replace_where=storage.eq_predicate("model_version", version),
    )
    return uri


@pytest.fixture
def storage(home) -> LensStorage:
    s = LensStorage()
    for v in ("m-1", "m-2", "m-3"):
        add_bundle(s, v)
    return s


def champion(state: dict, scope: str = "*") -> str:
    return state["cameras"][scope]["champion"]["model_version"]


def test_deploy_is_one_commit_and_idempotent(storage):
    first = deploy(storage, "m-1", box="b1", by="ana", reason="first line")
    assert (first.seq, first.action, first.role, first.camera) == (1, "deploy", "champion", None)
    assert first.bundle_sha256 == "1" * 64
    version = storage.table_version("deployments")
    again = deploy(storage, "m-1", box="b1", by="ana", reason="rerun")
    assert again == first and storage.table_version("deployments") == version
    state = desired_state(storage, "b1")
    entry = state["cameras"]["*"]["champion"]
    assert state["seq"] == 1 and entry["model_version"] == "m-1"
    assert entry["bundle_key"] == "artifacts/bundles/m-1/bundle.tar.gz"
    assert entry["by"] == "ana" and entry["reason"] == "first line"
    assert desired_state(storage, "b2") == {"box": "b2", "seq": 0, "cameras": {}}


def test_a_version_without_a_bundle_is_refused_naming_what_is_missing(storage):
    registry = storage.registry()
    known = registry.register_challenger(
        checkpoint_uri="c", checkpoint_sha256="c" * 64, metrics={"accuracy": 0.9}, config={}
    )
    with pytest.raises(
        DeploymentError, match=f"no edge bundle for {known}: materialise edge_bundle"
    ):
        deploy(storage, known, box="b1", by="ana")
    with pytest.raises(DeploymentError, match="unknown model version 'm-nope'"):
        deploy(storage, "m-nope", box="b1", by="ana")
    with pytest.raises(DeploymentError, match="box 'b 1'"):
        deploy(storage, "m-1", box="b 1", by="ana")
    assert storage.read_table("deployments") is None  # nothing was written


def test_shadow_camera_override_and_rollback_stack(storage):
    deploy(storage, "m-1", box="b1", by="ana")
    deploy(storage, "m-2", box="b1", role="shadow", by="ana", reason="try m-2")
    deploy(storage, "m-3", box="b1", camera="cam2", by="ana", reason="cam2 only")
    with pytest.raises(DeploymentError, match="m-1 is the champion on box b1"):
        deploy(storage, "m-1", box="b1", role="shadow", by="ana")
    state = desired_state(storage, "b1")
    assert champion(state) == "m-1" and champion(state, "cam2") == "m-3"
    assert state["cameras"]["*"]["shadow"]["model_version"] == "m-2"

    deploy(storage, "m-2", box="b1", by="ana", reason="promote")  # the shadow becomes champion
    state = desired_state(storage, "b1")
    assert champion(state) == "m-2" and "shadow" not in state["cameras"]["*"]

    back = rollback(storage, box="b1", by="bo", reason="false rejects")
    assert (back.action, back.model_version, back.bundle_sha256) == ("rollback", "m-1", "1" * 64)
    assert champion(desired_state(storage, "b1")) == "m-1"
    with pytest.raises(DeploymentError, match="no previous champion deployment on box b1"):
        rollback(storage, box="b1", by="bo")

    rollback(storage, box="b1", camera="cam2", by="bo")  # cam2 falls back to the box's champion
    assert "cam2" not in desired_state(storage, "b1")["cameras"]
    ended = rollback(storage, box="b1", role="shadow", by="bo", reason="enough")
    assert ended.model_version is None
    assert desired_state(storage, "b1")["cameras"] == {
        "*": {"champion": desired_state(storage, "b1")["cameras"]["*"]["champion"]}
    }
    with pytest.raises(DeploymentError, match="no shadow deployed on box b1"):
        rollback(storage, box="b1", role="shadow", by="bo")

    rows = history(storage, "b1")
    assert [d.seq for d, _ in rows] == [7, 6, 5, 4, 3, 2, 1]
    assert [d.seq for d, live in rows if live] == [1]


def test_publish_is_signed_atomic_and_idempotent(storage, home):
    private, public = generate_signing_key()
    deploy(storage, "m-1", box="b1", by="ana")
    done = publish(storage, "b1", signing_key=private)
    path = Path(done.uri)
    assert done.changed and done.signed and path == home / "deployments" / "b1.json"
    data = path.read_bytes()
    payload = read_document(data, trusted=load_trusted_key(public))
    assert payload == desired_state(storage, "b1")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left

    again = publish(storage, "b1", signing_key=private)
    assert not again.changed and path.read_bytes() == data

    doc = json.loads(data)
    doc["payload"]["cameras"]["*"]["champion"]["model_version"] = "m-2"
    with pytest.raises(DocumentError, match="bad signature"):
        read_document(json.dumps(doc).encode(), trusted=load_trusted_key(public))

    unsigned = publish(storage, "b1", signing_key=None)
    assert unsigned.changed and not unsigned.signed
    assert "UNSIGNED" in path.read_text()
    assert read_document(path.read_bytes(), trusted=None)["seq"] == 1
    with pytest.raises(DocumentError, match="unsigned, but a trusted key is configured"):
        read_document(path.read_bytes(), trusted=load_trusted_key(public))


def test_a_crash_between_commit_and_publish_is_fixed_by_the_rerun(storage):
    private, public = generate_signing_key()
    deploy(storage, "m-1", box="b1", by="ana")
    publish(storage, "b1", signing_key=private)
    deploy(storage, "m-2", box="b1", by="ana")  # ... and the process dies before publishing
    path = Path(storage.uri("deployments", "b1.json"))
    assert champion(read_document(path.read_bytes(), trusted=None)) == "m-1"
    version = storage.table_version("deployments")
    deploy(storage, "m-2", box="b1", by="ana")  # the rerun commits nothing ...
    publish(storage, "b1", signing_key=private)  # ... and publishes
    assert storage.table_version("deployments") == version
    assert champion(read_document(path.read_bytes(), trusted=load_trusted_key(public))) == "m-2"

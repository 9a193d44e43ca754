"""The ``deployments`` asset through real Dagster runs on real Delta tables in a temp home:
republishing repairs a tampered or lost document, a rebuilt bundle reaches the boxes, and a new
champion reaches only the listed boxes, only when ``auto_deploy_champion`` is on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.deployments import deployments
from edge_export.bundle import generate_signing_key, load_trusted_key
from edge_export.service.deploy import read_document
from lake.deployments import deploy, desired_state, rollback
from lake.storage import LensStorage


def add_bundle(storage: LensStorage, version: str, sha: str) -> None:
    """An ``edge_bundles`` row for ``version`` (the bundle file itself is not read here)."""
    row = {
        "model_version": [version],
        "uri": [storage.uri("artifacts", "bundles", version, "bundle.tar.gz")],
        "sha256": [sha * 64], "targets": ["{}"], "signed": [True],
        "created_at": [datetime.now(UTC)],
    }  # fmt: skip
    where = storage.eq_predicate("model_version", version)
    storage.write_table(pl.DataFrame(row), "edge_bundles", replace_where=where)


@pytest.fixture
def lake(home, monkeypatch):
    """Two registered versions with bundles, the first the champion, running on b1 and b2."""
    private, public = generate_signing_key()
    monkeypatch.setenv("LENSLINE_SIGNING_KEY", private.decode())
    monkeypatch.delenv("LENSLINE_SIGNING_KEY_FILE", raising=False)
    storage = LensStorage()
    registry = storage.registry()
    versions = [
        registry.register_challenger(
            checkpoint_uri=c, checkpoint_sha256=c * 64, metrics={"accuracy": 0.9}, config={}
        )
        for c in "ab"
    ]
    for version, sha in zip(versions, "12", strict=True):
        add_bundle(storage, version, sha)
    registry.promote(versions[0], reason="first model")
    for box in ("b1", "b2"):
        deploy(storage, versions[0], box=box, by="ana", reason="first line")
    return storage, versions, load_trusted_key(public)


def run(instance, **config) -> tuple[str, dict]:
    """Materialise ``deployments``; its data version and metadata."""
    result = dg.materialize(
        [deployments],
        resources={"storage": LensStorage()},
        instance=instance,
        run_config={"ops": {"deployments": {"config": config}}},
    )
    assert result.success
    event = result.asset_materializations_for_node("deployments")[0]
    return event.tags["dagster/data_version"], event.metadata


def champion(storage: LensStorage, box: str) -> str:
    return desired_state(storage, box)["cameras"]["*"]["champion"]["model_version"]


def test_republishes_a_tampered_or_missing_document_and_reruns_idempotently(lake, home):
    storage, (v1, _), trusted = lake
    b1, b2 = home / "deployments" / "b1.json", home / "deployments" / "b2.json"
    with dg.DagsterInstance.ephemeral() as instance:
        version, meta = run(instance)  # a crash after the deploy commits: nothing published yet
        assert meta["boxes"].value == 2 and meta["changed"].value == 2
        assert "| b1 | " + v1 in meta["desired_state"].value
        assert "True" in meta["desired_state"].value  # signed
        assert private_key_absent(meta)
        for path, box in ((b1, "b1"), (b2, "b2")):
            assert read_document(path.read_bytes(), trusted=trusted) == desired_state(storage, box)

        good = b1.read_bytes()
        doc = json.loads(good)
        doc["payload"]["cameras"]["*"]["champion"]["bundle_sha256"] = "f" * 64
        b1.write_text(json.dumps(doc))
        b2.unlink()
        again, meta = run(instance)
        assert again == version and meta["changed"].value == 2
        assert b1.read_bytes() == good and b2.exists()

        mtime = b1.stat().st_mtime_ns
        third, meta = run(instance)  # nothing changed: same data version, nothing rewritten
        assert third == version and meta["changed"].value == 0
        assert b1.stat().st_mtime_ns == mtime


def private_key_absent(meta) -> bool:
    return not any("PRIVATE KEY" in str(v.value) for v in meta.values())


def test_a_rebuilt_bundle_is_redeployed_under_the_same_version(lake, home):
    storage, (v1, _), trusted = lake
    with dg.DagsterInstance.ephemeral() as instance:
        before, _ = run(instance)
        add_bundle(storage, v1, "9")  # edge_bundle rebuilt v1 (e.g. re-signed with a new key)
        after, meta = run(instance)
    assert after != before and "bundle rebuilt" in meta["changes"].value
    for box in ("b1", "b2"):
        payload = read_document(
            (home / "deployments" / f"{box}.json").read_bytes(), trusted=trusted
        )
        entry = payload["cameras"]["*"]["champion"]
        assert (entry["model_version"], entry["bundle_sha256"]) == (v1, "9" * 64)


def test_a_new_champion_reaches_the_listed_boxes_only_when_auto_deploy_is_on(lake, home):
    storage, (v1, v2), trusted = lake
    storage.registry().promote(v2, reason="better at night")
    with dg.DagsterInstance.ephemeral() as instance:
        off, _ = run(instance, auto_deploy_boxes=["b1"])  # the setting is off by default
        assert (champion(storage, "b1"), champion(storage, "b2")) == (v1, v1)

        on, meta = run(instance, auto_deploy_champion=True, auto_deploy_boxes=["b1"])
        assert on != off and (champion(storage, "b1"), champion(storage, "b2")) == (v2, v1)
        entry = desired_state(storage, "b1")["cameras"]["*"]["champion"]
        assert entry["by"] == "lensline automation"
        assert entry["reason"] == "promoted: better at night"
        payload = read_document((home / "deployments/b1.json").read_bytes(), trusted=trusted)
        assert payload["cameras"]["*"]["champion"]["model_version"] == v2
        assert f"| b1 | {v2} |" in meta["desired_state"].value

        again, _ = run(instance, auto_deploy_champion=True, auto_deploy_boxes=["b1"])
        assert again == on and storage.read_table("deployments").height == 3

        # a plant rolls b1 back: the next run does not undo it
        rollback(storage, box="b1", by="bo", reason="false rejects")
        _, meta = run(instance, auto_deploy_champion=True, auto_deploy_boxes=["b1"])
    assert champion(storage, "b1") == v1 and "not redeployed" in meta["changes"].value


def test_no_boxes_yet_publishes_nothing(home):
    with dg.DagsterInstance.ephemeral() as instance:
        _, meta = run(instance, auto_deploy_champion=True, auto_deploy_boxes=["b1"])
    assert meta["boxes"].value == 0 and "no champion" in meta["changes"].value
    assert not Path(home / "deployments").exists()

"""Model registry on real Delta tables: promotion gate, champion/challenger, rollback, no deletes."""

import json

import polars as pl
import pytest
from deltalake import DeltaTable

from training.registry import ModelRegistry, RegistryError, decide_promotion


def _metrics(accuracy, **recalls):
    recalls = {"dent": 0.9, "good": 0.95, "scratch": 0.9, **recalls}
    return {
        "n": 200,
        "accuracy": accuracy,
        "per_class": {k: {"recall": r} for k, r in recalls.items()},
    }


def _register(reg, name, metrics, **kw):
    return reg.register_challenger(
        checkpoint_uri=f"/artifacts/models/{name}.safetensors",
        checkpoint_sha256=name * 64,
        metrics=metrics,
        config={"lr": 0.003},
        dataset_version=7,
        label_version=3,
        code_version="abc123",
        **kw,
    )


def _stored_aliases(uri):
    table = pl.from_arrow(DeltaTable(uri).to_pyarrow_table())
    return dict(zip(table["model_version"], table["alias"], strict=True))


def test_first_model_becomes_champion_via_the_gate(tmp_path):
    reg = ModelRegistry(str(tmp_path / "lake" / "models"))
    assert reg.champion() is None and reg.list().is_empty()
    v1 = _register(reg, "a", _metrics(0.80))
    assert reg.get(v1).alias == "challenger"
    decision = decide_promotion(reg.get(v1).metrics, None, margin=0.01, recall_tolerance=0.02)
    assert decision.promote and "no champion" in decision.reasons[0]
    reg.promote(v1, reason="; ".join(decision.reasons))
    champ = reg.champion()
    assert champ.model_version == v1 and champ.metrics["accuracy"] == 0.80
    assert champ.dataset_version == 7 and champ.config == {"lr": 0.003}
    assert _stored_aliases(reg.table_uri) == {
        v1: "champion"
    }  # the table itself, not just the overlay
    reg.promote(v1, reason="again")  # idempotent: no new events
    assert len(reg.events()) == 2


def test_register_is_idempotent_and_conflicts_are_refused(tmp_path):
    reg = ModelRegistry(str(tmp_path / "models"))
    v = _register(reg, "a", _metrics(0.8))
    assert _register(reg, "a", _metrics(0.8)) == v
    assert len(reg.list()) == 1 and len(reg.events()) == 1
    with pytest.raises(RegistryError, match="already registered"):
        reg.register_challenger(
            checkpoint_uri="x", checkpoint_sha256="f" * 64, metrics={}, config={}, model_version=v
        )
    with pytest.raises(RegistryError, match="unknown model version"):
        reg.promote("nope", reason="x")


def test_worse_challenger_is_not_promoted_and_reasons_name_the_metric():
    decision = decide_promotion(_metrics(0.85), _metrics(0.90), margin=0.01, recall_tolerance=0.05)
    assert not decision.promote
    assert any("accuracy" in r and "does not beat" in r for r in decision.reasons)
    # better, but not by the margin
    assert not decide_promotion(
        _metrics(0.905), _metrics(0.90), margin=0.01, recall_tolerance=0.05
    ).promote
    # equal is not "beats", even with margin 0
    assert not decide_promotion(
        _metrics(0.90), _metrics(0.90), margin=0.0, recall_tolerance=0.05
    ).promote
    assert decide_promotion(
        _metrics(0.92), _metrics(0.90), margin=0.01, recall_tolerance=0.05
    ).promote


def test_per_class_recall_regression_blocks_promotion():
    decision = decide_promotion(
        _metrics(0.95, dent=0.70), _metrics(0.90), margin=0.01, recall_tolerance=0.05
    )
    assert not decision.promote
    assert any("recall[dent]" in r for r in decision.reasons)
    assert decide_promotion(
        _metrics(0.95, dent=0.86), _metrics(0.90), margin=0.01, recall_tolerance=0.05
    ).promote


def test_different_test_sets_and_lower_is_better_metrics():
    a, b = {**_metrics(0.95), "n": 100}, _metrics(0.90)
    decision = decide_promotion(a, b, margin=0.0, recall_tolerance=1.0)
    assert not decision.promote and "not comparable" in decision.reasons[0]
    low, high = {**_metrics(0.9), "ece": 0.02}, {**_metrics(0.9), "ece": 0.08}
    assert decide_promotion(low, high, margin=0.01, recall_tolerance=0.0, metric="ece").promote
    assert not decide_promotion(high, low, margin=0.01, recall_tolerance=0.0, metric="ece").promote
    assert not decide_promotion({"n": 200}, b, margin=0.0, recall_tolerance=0.0).promote


def test_rollback_restores_previous_champion_and_nothing_is_deleted(tmp_path):
    reg = ModelRegistry(str(tmp_path / "lake" / "models"))
    v1 = _register(reg, "a", _metrics(0.80))
    reg.promote(v1, reason="first")
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback(reason="nothing before")
    v2 = _register(reg, "b", _metrics(0.85), parent_version=v1)
    reg.promote(v2, reason="better")
    v3 = _register(reg, "c", _metrics(0.88), parent_version=v2)
    reg.promote(v3, reason="better still")
    assert _stored_aliases(reg.table_uri) == {v1: "archived", v2: "archived", v3: "champion"}

    assert reg.rollback(reason="false rejects on line 2") == v2
    assert reg.champion().model_version == v2
    assert _stored_aliases(reg.table_uri) == {v1: "archived", v2: "champion", v3: "archived"}
    last = reg.events().tail(2)
    assert last["event"].to_list() == ["rollback", "rollback"]
    assert last["reason"].to_list() == ["false rejects on line 2"] * 2

    assert reg.rollback(reason="walk back further") == v1  # successive rollbacks walk the stack
    assert _stored_aliases(reg.table_uri) == {v1: "champion", v2: "archived", v3: "archived"}

    # nothing deleted: every version is still there, events only ever appended
    assert sorted(reg.list()["model_version"]) == sorted([v1, v2, v3])
    assert reg.events()["seq"].to_list() == list(range(len(reg.events())))
    for uri in (reg.table_uri, reg.events_uri):
        ops = {h["operation"] for h in DeltaTable(uri).history()}
        assert ops <= {"CREATE TABLE", "WRITE", "MERGE"}, ops
    assert reg.events_uri.endswith("/lake/model_events")


def test_archive_and_repair_after_a_crash(tmp_path):
    reg = ModelRegistry(str(tmp_path / "models"))
    v1 = _register(reg, "a", _metrics(0.8))
    reg.promote(v1, reason="first")
    v2 = _register(reg, "b", _metrics(0.7))
    with pytest.raises(RegistryError, match="champion"):
        reg.archive(v1, reason="no")
    reg.archive(v2, reason="gate: accuracy does not beat champion")
    assert reg.get(v2).alias == "archived"
    # simulate a crash between the event append and the alias projection
    reg._append_events(
        [(v2, "promote", "archived", "champion", "x"), (v1, "promote", "champion", "archived", "x")]
    )
    assert reg.champion().model_version == v2  # reads follow the events
    assert _stored_aliases(reg.table_uri)[v2] == "archived"  # table is stale ...
    assert reg.repair() is True  # ... until repaired (or the next write)
    assert _stored_aliases(reg.table_uri) == {v1: "archived", v2: "champion"}
    assert reg.repair() is False


def test_a_rerun_after_a_crash_between_event_and_alias_finishes_the_alias(tmp_path):
    """Killed after the archive (or promote) event was appended, before the alias MERGE: the
    rerun's archive/promote finds the event already there and still re-projects the table
    (tests/reliability/test_kill_anywhere.py landed exactly there once: models.alias stayed
    'challenger' while the events said 'archived')."""
    reg = ModelRegistry(str(tmp_path / "models"))
    v1 = _register(reg, "a", _metrics(0.8))
    reg.promote(v1, reason="first")
    v2 = _register(reg, "b", _metrics(0.7))
    reg._append_events([(v2, "archive", "challenger", "archived", "gate")])  # then the kill
    assert _stored_aliases(reg.table_uri)[v2] == "challenger"
    reg.archive(v2, reason="gate")  # the rerun: no new event, the table repaired
    assert _stored_aliases(reg.table_uri)[v2] == "archived"
    assert reg.events().filter(pl.col("model_version") == v2).height == 2  # register, archive
    v3 = _register(reg, "c", _metrics(0.9))
    reg._append_events([(v1, "promote", "champion", "archived", "r"),
                        (v3, "promote", "challenger", "champion", "r")])  # fmt: skip
    reg.promote(v3, reason="r")
    assert _stored_aliases(reg.table_uri) == {v1: "archived", v2: "archived", v3: "champion"}


def test_metrics_json_is_strict(tmp_path):
    reg = ModelRegistry(str(tmp_path / "models"))
    v = _register(reg, "a", {"accuracy": float("nan"), "ece": 0.1})
    raw = reg.list()["metrics"][0]
    assert json.loads(raw) == {"accuracy": None, "ece": 0.1} and "NaN" not in raw
    assert reg.get(v).metrics["accuracy"] is None


@pytest.mark.slow
def test_registry_on_s3(s3_env, moto_server):
    """The same promote/rollback cycle on a Delta table in (moto's) S3."""
    opts = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    reg = ModelRegistry(f"{s3_env}/lake/models", storage_options=opts)
    assert reg.events_uri == f"{s3_env}/lake/model_events"
    v1 = _register(reg, "a", _metrics(0.8))
    reg.promote(v1, reason="first")
    v2 = _register(reg, "b", _metrics(0.9))
    reg.promote(v2, reason="better")
    assert reg.rollback(reason="regression on line 2") == v1
    table = pl.from_arrow(DeltaTable(reg.table_uri, storage_options=opts).to_pyarrow_table())
    assert dict(zip(table["model_version"], table["alias"], strict=True)) == {
        v1: "champion",
        v2: "archived",
    }

"""The lensline command line: models list/promote/rollback on a real registry table."""

from __future__ import annotations

from orchestration.cli import main
from orchestration.storage import LensStorage
from training.registry import ModelRegistry


def test_models_commands(home, capsys):
    assert main(["models", "list"]) == 0
    assert "no models registered yet" in capsys.readouterr().out
    storage = LensStorage()
    registry = ModelRegistry(storage.table_uri("models"))
    metrics = {"accuracy": 0.9, "n": 10, "per_class": {}}
    first = registry.register_challenger(
        checkpoint_uri="a", checkpoint_sha256="a" * 64, metrics=metrics, config={}
    )
    second = registry.register_challenger(
        checkpoint_uri="b", checkpoint_sha256="b" * 64, metrics=metrics, config={}
    )
    assert main(["models", "rollback"]) == 2  # nothing to roll back to
    assert "no previous champion" in capsys.readouterr().out
    assert main(["models", "promote", first]) == 0
    assert main(["models", "promote", second]) == 0
    assert registry.champion().model_version == second
    assert main(["models", "rollback", "--reason", "bad night shift"]) == 0
    assert registry.champion().model_version == first
    out = capsys.readouterr().out
    assert f"{first} is the champion again" in out
    aliases = dict(registry.list().select("model_version", "alias").iter_rows())
    assert aliases == {first: "champion", second: "archived"}
    assert main(["models", "promote", "m-nope"]) == 2

"""The lensline command line: models list/promote/rollback on a real registry table."""

from __future__ import annotations

from lake.storage import LensStorage
from orchestration.cli import main


def test_models_commands(home, capsys):
    assert main(["models", "list"]) == 0
    assert "no models registered yet" in capsys.readouterr().out
    storage = LensStorage()
    registry = storage.registry()
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


def test_lensline_run_console_script(home, tmp_path, write_video):
    """The installed `lensline run` on a home with one video and no labels: ingests, says why it stops."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    write_video(home / "landing/videos/cam1/a.mp4", 10)
    exe = shutil.which("lensline") or str(Path(sys.executable).parent / "lensline")
    env = {k: v for k, v in __import__("os").environ.items() if k != "DAGSTER_HOME"}
    out = subprocess.run(
        [exe, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "cam1__a" in out.stdout and "no label files" in out.stdout
    import dagster as dg

    with (
        dg.DagsterInstance.get() as instance
    ):  # the fixture's DAGSTER_HOME = <LENSLINE_HOME>/dagster
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"lensline/trigger": "lensline run"}))
        assert [r.tags.get("dagster/partition") for r in runs] == ["cam1__a"]
    assert LensStorage().read_table("videos")["status"].to_list() == ["ok"]


def test_deploy_commands(home, capsys, monkeypatch):
    """`lensline deploy`: usage errors (2), a refused version (3), deploy, --list, --rollback."""
    import json
    from datetime import UTC, datetime

    import polars as pl

    monkeypatch.setenv("COLUMNS", "200")  # the --list table whole
    monkeypatch.delenv("LENSLINE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("LENSLINE_SIGNING_KEY_FILE", raising=False)
    storage = LensStorage()
    for version in ("m-1", "m-2"):
        row = {
            "model_version": [version], "uri": [storage.uri("artifacts", version)],
            "sha256": [version[-1] * 64], "targets": ["{}"], "signed": [False],
            "created_at": [datetime.now(UTC)],
        }  # fmt: skip
        storage.write_table(pl.DataFrame(row), "edge_bundles", mode="append")

    assert main(["deploy", "m-1"]) == 2
    assert "--box BOX is required" in capsys.readouterr().out
    assert main(["deploy", "m-1", "--rollback", "--box", "b1"]) == 2
    assert main(["deploy", "--list", "--shadow"]) == 2
    assert main(["deploy", "m-nope", "--box", "b1"]) == 3
    assert "unknown model version 'm-nope'" in capsys.readouterr().out

    assert main(["deploy", "m-1", "--box", "b1", "--reason", "first"]) == 0
    out = capsys.readouterr().out
    assert "m-1 is the champion on box b1" in out and "UNSIGNED" in out
    assert main(["deploy", "m-2", "--box", "b1", "--shadow"]) == 0
    assert main(["deploy", "m-2", "--box", "b1"]) == 0
    doc = json.loads((home / "deployments" / "b1.json").read_text())
    assert doc["payload"]["cameras"]["*"]["champion"]["model_version"] == "m-2"

    assert main(["deploy", "--rollback", "--box", "b1"]) == 0
    assert "rolled back champion on box b1: m-1" in capsys.readouterr().out
    doc = json.loads((home / "deployments" / "b1.json").read_text())
    assert doc["payload"]["cameras"]["*"]["champion"]["model_version"] == "m-1"
    assert main(["deploy", "--rollback", "--box", "b1"]) == 3  # nothing before m-1

    capsys.readouterr()
    assert main(["deploy", "--list", "--box", "b1"]) == 0
    out = capsys.readouterr().out
    assert "rollback" in out and "first" in out and "shadow" in out


def test_models_promote_deploy(home, capsys, monkeypatch):
    """`lensline models promote VERSION --deploy BOX`: the new champion on those boxes only,
    published; a bad signing key is refused before anything changes; no --deploy, no box change."""
    import json
    from datetime import UTC, datetime

    import polars as pl

    from lake.deployments import deploy, desired_state

    monkeypatch.delenv("LENSLINE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("LENSLINE_SIGNING_KEY_FILE", raising=False)
    storage = LensStorage()
    registry = storage.registry()
    versions = [
        registry.register_challenger(
            checkpoint_uri=c, checkpoint_sha256=c * 64, metrics={"accuracy": 0.9}, config={}
        )
        for c in "abc"
    ]
    for version in versions:
        row = {
            "model_version": [version], "uri": [storage.uri("artifacts", version)],
            "sha256": [version[-1] * 64], "targets": ["{}"], "signed": [False],
            "created_at": [datetime.now(UTC)],
        }  # fmt: skip
        storage.write_table(pl.DataFrame(row), "edge_bundles", mode="append")
    registry.promote(versions[0], reason="first")
    for box in ("b1", "b2", "b3"):
        deploy(storage, versions[0], box=box, by="ana")

    def champion(box: str) -> str:
        return desired_state(storage, box)["cameras"]["*"]["champion"]["model_version"]

    assert main(["models", "promote", versions[1]]) == 0  # no --deploy: the line is unchanged
    assert [champion(b) for b in ("b1", "b2", "b3")] == [versions[0]] * 3

    monkeypatch.setenv("LENSLINE_SIGNING_KEY_FILE", str(home / "missing.pem"))
    assert main(["models", "promote", versions[2], "--deploy", "b1"]) == 3
    assert registry.champion().model_version == versions[1]  # refused before promoting
    monkeypatch.delenv("LENSLINE_SIGNING_KEY_FILE")

    capsys.readouterr()
    argv = ["models", "promote", versions[2], "--deploy", "b1", "--deploy", "b2"]
    assert main([*argv, "--reason", "night shift"]) == 0
    out = capsys.readouterr().out
    assert f"{versions[2]} is the champion on box b1" in out and "UNSIGNED" in out
    assert [champion(b) for b in ("b1", "b2", "b3")] == [versions[2], versions[2], versions[0]]
    doc = json.loads((home / "deployments" / "b2.json").read_text())
    entry = doc["payload"]["cameras"]["*"]["champion"]
    assert (entry["model_version"], entry["reason"]) == (versions[2], "promoted: night shift")
    assert main(["models", "promote", versions[2], "--deploy", "nope box"]) == 3

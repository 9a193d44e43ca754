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

"""``lensline init --profile``: the instance files each profile writes, and that they load."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from orchestration.cli import main
from orchestration.instance_home import INSTANCE_YAML
from orchestration.profiles import ENV_EXAMPLE, instance_yaml


def test_embedded_is_the_runner_default(home):
    (home / "dagster" / "dagster.yaml").unlink()
    assert main(["init"]) == 0
    assert (home / "dagster" / "dagster.yaml").read_text() == INSTANCE_YAML
    assert not (home / "dagster" / ".env.example").exists()


def test_production_files_hold_names_not_secrets(home, monkeypatch):
    monkeypatch.setenv("LENSLINE_PG_PASSWORD", "s3cr3t-do-not-write")
    assert main(["init", "--profile", "production"]) == 2  # the home's file is left alone
    assert main(["init", "--profile", "production", "--force"]) == 0
    text = (home / "dagster" / "dagster.yaml").read_text()
    config = yaml.safe_load(text)
    pg = config["storage"]["postgres"]["postgres_db"]
    assert pg["password"] == {"env": "LENSLINE_PG_PASSWORD"}
    assert all(v == {"env": v["env"]} for k, v in pg.items() if k != "scheme")
    assert pg["scheme"] == "postgresql+psycopg2"
    assert config["concurrency"]["pools"] == {"granularity": "run", "default_limit": 1}
    assert config["run_monitoring"]["enabled"] is True
    env_example = (home / "dagster" / ".env.example").read_text()
    assert env_example == ENV_EXAMPLE
    assert "s3cr3t" not in text + env_example
    names = {line.split("=")[0].lstrip("# ") for line in env_example.splitlines() if "=" in line}
    assert {"LENSLINE_PG_PASSWORD", "LENSLINE_EXECUTOR", "LENSLINE_CELERY_BROKER"} <= names
    assert main(["init", "--profile", "production"]) == 0  # same content: nothing to refuse


def test_unknown_profile_is_a_usage_error(home):
    with pytest.raises(SystemExit) as exc:
        main(["init", "--profile", "cluster"])
    assert exc.value.code == 2
    with pytest.raises(ValueError):
        instance_yaml("cluster")


@pytest.mark.slow
def test_production_instance_loads_on_postgres(home, postgres):
    """The written dagster.yaml validates and stores runs in Postgres from env vars alone."""
    assert main(["init", "--profile", "production", "--force"]) == 0
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.run_monitoring_enabled
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
    assert postgres.query(f"SELECT count(*) FROM runs WHERE run_id = '{run.run_id}'") == [(1,)]

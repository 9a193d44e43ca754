"""Dagster run/event/schedule storage on a real PostgreSQL: both config forms ingest a video.

Dagster documents ``storage: postgres: postgres_db: {...}``; that form builds a driver-less
``postgresql://`` URL, which SQLAlchemy 2.1 maps to psycopg 3 (missing, or when installed it
breaks dagster-postgres's ``NOTIFY run_events, $1``). requirements.lock therefore pins
SQLAlchemy 2.0, whose default PostgreSQL driver is psycopg2 (what dagster-postgres ships);
``test_default_postgres_driver_is_psycopg2`` fails first if that pin is ever lifted.
"""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from lake.storage import LensStorage
from orchestration.definitions import defs
from orchestration.instance_home import INSTANCE_YAML
from orchestration.runner import run_pending

INGEST = "group:ingest"


def postgres_db_form() -> dict:
    """Dagster's documented form, every value from the environment."""
    return {
        "postgres_db": {
            "hostname": {"env": "LENSLINE_PG_HOST"},
            "port": {"env": "LENSLINE_PG_PORT"},
            "username": {"env": "LENSLINE_PG_USER"},
            "password": {"env": "LENSLINE_PG_PASSWORD"},
            "db_name": {"env": "LENSLINE_PG_DB"},
        }
    }


def postgres_url_form() -> dict:
    return {"postgres_url": {"env": "LENSLINE_PG_URL"}}


def test_default_postgres_driver_is_psycopg2():
    """The pin that makes ``postgres_db`` work: ``postgresql://`` must mean psycopg2."""
    import sqlalchemy as sa

    url = sa.engine.make_url("postgresql://u@127.0.0.1:5432/db")
    assert url.get_dialect().driver == "psycopg2", (
        f"SQLAlchemy {sa.__version__} maps postgresql:// to {url.get_dialect().driver}; "
        "dagster-postgres needs psycopg2 (see requirements.lock)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("form", [postgres_db_form, postgres_url_form], ids=["postgres_db", "url"])
def test_lensline_run_with_run_storage_in_postgres(form, home, postgres, monkeypatch, write_video):
    """An instance whose dagster.yaml stores everything in Postgres ingests a tiny video."""
    monkeypatch.setenv("LENSLINE_PG_URL", postgres.url)
    config = yaml.safe_load(INSTANCE_YAML)
    config["storage"] = {"postgres": form()}
    (home / "dagster" / "dagster.yaml").write_text(yaml.safe_dump(config))
    write_video(home / "landing/videos/cam1/a.mp4", 20)

    def sessions() -> int:  # connections ever opened to this database
        sql = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        return postgres.query(sql)[0][0]

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        opened = sessions()
        summary = run_pending(defs, instance, select=INGEST)
        opened = sessions() - opened
        assert [o.status for o in summary.ingested] == ["ok"] and summary.exit_code == 0
        run_ids = {r.run_id for r in instance.get_runs()}
    assert LensStorage().read_table("frames").height >= 2
    in_pg = {r[0] for r in postgres.query("SELECT run_id FROM runs WHERE status = 'SUCCESS'")}
    assert run_ids and run_ids <= in_pg
    events = postgres.query("SELECT count(*) FROM event_logs WHERE asset_key IS NOT NULL")[0][0]
    assert events > 0
    # lensline run keeps its connections (orchestration.launcher.keep_connections), not one
    # per event and query as dagster-postgres's NullPool does (measured: 32 against 220)
    assert opened < 80, opened
    assert not (home / "dagster" / "history" / "runs.db").exists()  # nothing went to SQLite

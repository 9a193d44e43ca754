"""``lensline init --profile embedded|production``: the Dagster instance a home runs on.

Both profiles run the same code; only ``<LENSLINE_HOME>/dagster/dagster.yaml`` and the
environment differ (README "Production profile").

- ``embedded`` (the default, what ``lensline run`` writes when there is no file): SQLite
  run/event/schedule storage in the home, the run queue that admits runs by the lake's
  concurrency pools (``lake.pools``) and one run per video at a time, run monitoring on.
- ``production``: the same queue and monitoring, with run/event/schedule storage on PostgreSQL
  (dagster-postgres). Every connection setting is an ``env:`` reference, so the file holds no
  secret; ``.env.example`` beside it lists the variable NAMES to set (storage on S3, Postgres,
  the executor and the Celery broker), never values.

Files are written with a temp file, fsync and ``os.replace``; an existing different file is
left alone unless ``--force`` (exit 2 says so).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge_export.fsutil import atomic_write

PROFILES = ("embedded", "production")

# Dagster's documented postgres_db form; the scheme names the driver so that a future
# SQLAlchemy whose bare ``postgresql://`` means psycopg 3 cannot change it (see pyproject.toml).
PRODUCTION_STORAGE = """storage:
  postgres:
    postgres_db:
      hostname:
        env: LENSLINE_PG_HOST
      port:
        env: LENSLINE_PG_PORT
      username:
        env: LENSLINE_PG_USER
      password:
        env: LENSLINE_PG_PASSWORD
      db_name:
        env: LENSLINE_PG_DB
      scheme: postgresql+psycopg2
"""

RUN_MONITORING = """run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  poll_interval_seconds: 30
"""

ENV_EXAMPLE = """\
# Lensline production profile: the environment `lensline`, `dagster-daemon`, `dagster-webserver`
# and every `dagster-celery worker` need. Names only: put the values in your secret store or
# service manager (or a git-ignored .env), never in this file or in dagster.yaml.

# A plant: the promotion gate blocks a condition with too few test frames to protect it.
LENSLINE_PROFILE=production

# Lake and artifacts in object storage; credentials from the standard AWS chain.
LENSLINE_STORAGE=s3://BUCKET/PREFIX
AWS_REGION=
# AWS_ACCESS_KEY_ID=            (or an instance profile / IRSA role instead)
# AWS_SECRET_ACCESS_KEY=
# AWS_ENDPOINT_URL=             (MinIO or another S3-compatible endpoint)

# Dagster run/event/schedule storage (dagster.yaml reads these through env:).
LENSLINE_PG_HOST=
LENSLINE_PG_PORT=5432
LENSLINE_PG_USER=
LENSLINE_PG_PASSWORD=
LENSLINE_PG_DB=

# Where steps run: in_process | multiprocess | celery (orchestration/executors.py).
LENSLINE_EXECUTOR=celery
# LENSLINE_MAX_CONCURRENT=      (multiprocess: processes per run; default the CPU count)
# LENSLINE_RUN_WORKERS=         (lensline run with no daemon alive: runs it executes at once;
#                                default the CPU count; with celery, two per Celery worker)
LENSLINE_CELERY_BROKER=redis://REDIS_HOST:6379/0
LENSLINE_CELERY_BACKEND=redis://REDIS_HOST:6379/1
"""


def instance_yaml(profile: str) -> str:
    """The ``dagster.yaml`` text of ``profile`` (``embedded`` or ``production``)."""
    from orchestration.instance_home import INSTANCE_YAML

    if profile == "embedded":
        return INSTANCE_YAML
    if profile != "production":
        raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    # the embedded file minus its one-line run_monitoring block, plus storage and monitoring
    base = INSTANCE_YAML.replace("run_monitoring:\n  enabled: true\n", "")
    return base + PRODUCTION_STORAGE + RUN_MONITORING


def write_profile(dagster_home: Path, profile: str, *, force: bool = False) -> list[Path]:
    """Write ``dagster.yaml`` (and ``.env.example`` for production) into ``dagster_home``.

    Returns the files written. Raises ``FileExistsError`` naming a file that exists with other
    content, unless ``force``.
    """
    files = {dagster_home / "dagster.yaml": instance_yaml(profile)}
    if profile == "production":
        files[dagster_home / ".env.example"] = ENV_EXAMPLE
    clashes = [p for p, text in files.items() if p.exists() and p.read_text() != text]
    if clashes and not force:
        raise FileExistsError(", ".join(map(str, clashes)))
    dagster_home.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        with atomic_write(path, "w") as f:
            f.write(text)
    return list(files)


def cmd_init(args: argparse.Namespace) -> int:
    from lake.storage import lensline_home

    home = lensline_home()
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster")
    try:
        written = write_profile(dagster_home, args.profile, force=args.force)
    except FileExistsError as exc:
        print(f"usage error: already there with other content: {exc}; add --force to replace it")
        return 2
    for path in written:
        print(f"wrote {path}")
    if args.profile == "production":
        print(
            f"set the variables named in {dagster_home / '.env.example'} (values in your secret "
            f"store, not in files), then run with DAGSTER_HOME={dagster_home}"
        )
    return 0


def add_init_parser(sub) -> None:
    """Register ``lensline init`` on the CLI's subparsers."""
    init = sub.add_parser(
        "init", help="write this home's Dagster instance config (embedded or production profile)"
    )
    init.add_argument("--profile", choices=PROFILES, default="embedded")
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.set_defaults(func=cmd_init)

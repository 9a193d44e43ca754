"""Real servers for the production profile, each on a free 127.0.0.1 port and stopped by PID.

``postgres``: a throw-away PostgreSQL 15 cluster (Debian's binaries) run as the ``postgres``
system user, since postgres refuses to run as root. Where the binaries or the user are missing
the tests skip with the reason, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, unavailable

PG_BIN = Path(os.environ.get("LENSLINE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    db: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL with the driver explicit (``postgresql+psycopg2``)."""
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{self.db}"
        )

    def env(self) -> dict[str, str]:
        """The variables the production ``dagster.yaml`` reads (see orchestration/profiles.py)."""
        return {
            "LENSLINE_PG_HOST": self.host,
            "LENSLINE_PG_PORT": str(self.port),
            "LENSLINE_PG_USER": self.user,
            "LENSLINE_PG_PASSWORD": self.password,
            "LENSLINE_PG_DB": self.db,
        }

    def query(self, sql: str) -> list[tuple]:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql))]
        finally:
            engine.dispose()

    def fresh_db(self) -> Postgres:
        """A new empty database on the same cluster (one per test keeps tests independent)."""
        import uuid

        import sqlalchemy as sa

        name = f"lensline_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return Postgres(self.host, self.port, self.user, self.password, name)


def _as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ("runuser", "-u", PG_USER, "--", *cmd)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL 15 cluster in a temp dir owned by ``postgres``; password auth over TCP."""
    if not (PG_BIN / "initdb").exists():
        unavailable(f"no PostgreSQL binaries in {PG_BIN}")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(PG_USER)
        except KeyError:
            unavailable(f"no {PG_USER!r} system user to run postgres as")
    root = Path(tempfile.mkdtemp(prefix="lensline-pg-"))
    data, log = root / "data", root / "server.log"
    password = "pw-" + os.urandom(8).hex()
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    os.chmod(root, 0o700)
    os.chmod(pwfile, 0o600)
    _as_postgres(
        str(PG_BIN / "initdb"),
        "-D",
        str(data),
        "-U",
        PG_USER,
        "--auth=scram-sha-256",
        f"--pwfile={pwfile}",
        "-E",
        "UTF8",
        "--no-sync",
    )
    port = free_port()
    cmd = [
        str(PG_BIN / "postgres"),
        "-D",
        str(data),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-k",
        str(root),  # unix socket in the temp dir, not /var/run/postgresql
        "-c",
        "fsync=off",
        "-c",
        "max_connections=200",
    ]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", PG_USER, "--", *cmd]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = Postgres("127.0.0.1", port, PG_USER, password, "postgres")
    deadline = time.time() + 30
    while True:
        try:
            server.query("SELECT 1")
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"postgres did not start on port {port}:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
    yield server
    # runuser forwards SIGTERM to postgres (smart shutdown); the postmaster pid file names it too
    pid_file = data / "postmaster.pid"
    pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else proc.pid
    os.kill(pid, signal.SIGINT)  # fast shutdown: disconnect clients
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres(postgres_server, monkeypatch) -> Postgres:
    """A fresh database on the session cluster, its settings in the LENSLINE_PG_* variables."""
    db = postgres_server.fresh_db()
    for k, v in db.env().items():
        monkeypatch.setenv(k, v)
    return db


def _stop(proc: subprocess.Popen, *, timeout: float = 20) -> None:
    """SIGTERM ``proc`` and every process it started (each by PID), then SIGKILL stragglers."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free 127.0.0.1 port, no persistence; its URL (db 0)."""
    exe = shutil.which("redis-server") or ""
    if not exe:
        unavailable("no redis-server (apt-get install redis-server; .ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.time() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    _stop(proc)


@dataclass
class CeleryWorker:
    proc: subprocess.Popen
    name: str
    log: Path

    def pids(self) -> set[int]:
        """The worker's process tree: dagster-celery, celery and its pool processes."""
        import psutil

        top = psutil.Process(self.proc.pid)
        return {top.pid, *(p.pid for p in top.children(recursive=True))}


@contextlib.contextmanager
def celery_worker(
    broker: str, backend: str, workdir: Path, *, suffix: str = ""
) -> Iterator[CeleryWorker]:
    """``dagster-celery worker start`` in this environment (instance, storage, AWS), one pool
    process, repo root on PYTHONPATH; ready once it answers a ping; stopped by PID."""
    import sys

    import celery
    import yaml

    exe = Path(sys.executable).parent / "dagster-celery"
    config = workdir / f"celery{suffix}.yaml"
    # the same block as the executor's run config (dagster-celery reads execution.config)
    config.write_text(
        yaml.safe_dump({"execution": {"config": {"broker": broker, "backend": backend}}})
    )
    name = f"lensline-test-{os.getpid()}{suffix}"
    log = workdir / f"worker{suffix}.log"
    repo = Path(__file__).resolve().parents[2]
    # dagster-celery execs `celery` from PATH: the one beside this interpreter
    path = os.pathsep.join([str(exe.parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PYTHONPATH": str(repo), "PATH": path}
    cmd = [str(exe), "worker", "start", "-A", "orchestration.celery_app", "-y", str(config)]
    cmd += ["-n", name, "--", "--concurrency=1", "--prefetch-multiplier=1", "-O", "fair"]
    cmd += ["--without-heartbeat", "--without-gossip"]  # one task reserved at a time: fair
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    app = celery.Celery(broker=broker, backend=backend)
    deadline = time.time() + 60
    try:
        while not any(name in k for r in app.control.ping(timeout=1.0) for k in r):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"celery worker did not start:\n{log.read_text()[-3000:]}")
        yield CeleryWorker(proc, name, log)
    finally:
        _stop(proc)

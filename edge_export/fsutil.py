"""File-system helpers every Lensline writer shares: atomic writes, file digests, live pids.

Standard library only, so the standalone edge runner may import it (no numpy, torch, Dagster
or polars).

- :func:`atomic_write`: write a file so that a reader (or a crash) sees either the previous
  file or the complete new one: a temp file beside the target, flushed and fsynced, moved into
  place with ``os.replace``; on an error the temp file is removed and the target untouched.
  A crash at the wrong moment leaves at worst a hidden ``.<name>.*.tmp`` beside the target.
- :func:`fsync_dir`: make a rename in a folder durable (best effort).
- :func:`sha256_file`: hex sha256 of a file's bytes, read in blocks.
- :func:`process_alive`: whether a local process id still exists (``os.kill(pid, 0)``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "fsync_dir", "process_alive", "sha256_file"]


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` for writing; on a clean exit move it over ``path``.

    Parameters
    ----------
    path
        The destination; its parent folders are created.
    mode
        ``"wb"`` (default) or ``"w"`` (text).

    Yields
    ------
    The open temp file. When the ``with`` block ends without an exception it is flushed,
    fsynced and moved to ``path`` with ``os.replace``; with one it is removed and ``path`` is
    left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL on a fresh name, mode 0o666 less the umask: permissions as a plain open() gives
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder so that a rename inside it survives a power cut (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (this process counts as alive).

    A process that exists but belongs to another user (``PermissionError``) is alive; a zombie
    (exited, not yet reaped: a killed process whose parent died too, where no init reaps) is not.
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): existence is all we know
    return stat.rpartition(")")[2].split()[:1] != ["Z"]

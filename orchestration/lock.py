"""One writer per Lensline home: the lock ``lensline run`` holds while it writes the lake.

- **Local** (``LENSLINE_HOME`` or a local ``LENSLINE_STORAGE``): ``<root>/lensline.lock``, an OS
  file lock (``filelock``; the kernel frees it when the holder dies, so it is never stale), and
  ``<root>/lensline.lock.json`` with the holder (pid, host, started, command).
- **S3** (``LENSLINE_STORAGE=s3://bucket/prefix``): the object ``<prefix>/lensline.lock``, created
  with a conditional put (``IfNoneMatch='*'``: only one writer can create it) and holding the
  same owner JSON. The holder rewrites it every ``stale_s / 3`` seconds (``IfMatch`` its own
  ETag); a lock not refreshed for ``stale_s`` (``LENSLINE_LOCK_STALE_S``, default 600 s) is
  stale and is taken over with a conditional delete (``IfMatch`` the stale ETag), so two
  waiters can never both take it; so is, at once, a lock whose holder is a dead process of
  the same host (a killed run, or one that could not delete it while S3 was down). Credentials come from the AWS environment only.

Usage::

    with home_lock(LensStorage()).hold(wait=True, on_wait=print):
        ...  # write the lake
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge_export.fsutil import atomic_write, process_alive
from lake.storage import LensStorage

__all__ = ["HomeLocked", "LocalLock", "Owner", "S3Lock", "home_lock"]

LOCK_NAME = "lensline.lock"
STALE_ENV = "LENSLINE_LOCK_STALE_S"


@dataclass
class Owner:
    """Who holds (or held) the lock."""

    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    command: str = field(
        default_factory=lambda: (
            " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""
        )
    )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.started} ({self.command.strip()})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Owner | None:
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in ("pid", "host", "started", "command")})
        except (ValueError, KeyError, TypeError):
            return None


class HomeLocked(RuntimeError):
    """Raised by ``hold(wait=False)`` when another process holds the lock."""

    def __init__(self, where: str, owner: Owner | None):
        self.where, self.owner = where, owner
        who = owner.describe() if owner else "an unknown process"
        super().__init__(f"{where} is locked by {who}")


class _Lock:
    where: str

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def owner(self) -> Owner | None:
        raise NotImplementedError

    @contextlib.contextmanager
    def hold(
        self,
        *,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
    ) -> Iterator[_Lock]:
        """Hold the lock for the block; wait for it (saying who holds it) or raise ``HomeLocked``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        told: str | None = None
        while not self.try_acquire():
            owner = self.owner()
            if not wait or (deadline is not None and time.monotonic() > deadline):
                raise HomeLocked(self.where, owner)
            text = f"waiting for {self.where}: held by " + (
                owner.describe() if owner else "an unknown process"
            )
            if on_wait and text != told:
                on_wait(text)
                told = text
            time.sleep(poll_s)
        try:
            yield self
        finally:
            self.release()


class LocalLock(_Lock):
    """An OS file lock on ``<root>/lensline.lock`` plus the holder in ``lensline.lock.json``."""

    def __init__(self, root: Path):
        from filelock import FileLock

        root.mkdir(parents=True, exist_ok=True)
        self.where = str(root / LOCK_NAME)
        self._info = root / f"{LOCK_NAME}.json"
        self._lock = FileLock(self.where, is_singleton=False)

    def try_acquire(self) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        with atomic_write(self._info, "w") as f:
            f.write(Owner().to_json())
        return True

    def release(self) -> None:
        self._info.unlink(missing_ok=True)
        self._lock.release()

    def owner(self) -> Owner | None:
        try:
            return Owner.from_json(self._info.read_text())
        except OSError:
            return None


class S3Lock(_Lock):
    """A lock object created with a conditional put, refreshed by a heartbeat, stale after ``stale_s``."""

    def __init__(self, storage: LensStorage, *, stale_s: float | None = None):
        self._storage = storage
        self.where = storage.uri(LOCK_NAME)
        self._bucket, self._key = storage._split(self.where)
        self.stale_s = float(stale_s or os.environ.get(STALE_ENV) or 600)
        self._etag: str | None = None
        self._owner = Owner()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost = False

    def _client(self):
        return self._storage._s3()

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def try_acquire(self) -> bool:
        from botocore.exceptions import ClientError

        self._owner = Owner()
        body = self._owner.to_json().encode()
        try:
            out = self._client().put_object(
                Bucket=self._bucket, Key=self._key, Body=body, IfNoneMatch="*"
            )
        except ClientError as exc:
            if self._code(exc) not in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
                raise
            self._take_over_if_stale()
            return False
        self._etag = out["ETag"]
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="lensline-lock")
        self._beat.start()
        return True

    def _take_over_if_stale(self) -> None:
        """Delete the lock object if nobody refreshed it for ``stale_s``, or if its holder is a
        process of this host that no longer runs (killed, or it could not delete the object
        while the endpoint was down); only that version of the object."""
        from botocore.exceptions import ClientError

        try:
            head = self._client().get_object(Bucket=self._bucket, Key=self._key)
            owner = Owner.from_json(head["Body"].read())
        except ClientError:
            return  # gone meanwhile: the next try_acquire may win
        age = time.time() - head["LastModified"].timestamp()
        dead = (
            owner is not None
            and owner.host == socket.gethostname()
            and not process_alive(owner.pid)
        )
        if age <= self.stale_s and not dead:
            return
        with contextlib.suppress(ClientError):  # someone else took it over first
            self._client().delete_object(Bucket=self._bucket, Key=self._key, IfMatch=head["ETag"])

    def _heartbeat(self) -> None:
        from botocore.exceptions import ClientError

        while not self._stop.wait(self.stale_s / 3):
            try:
                out = self._client().put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=self._owner.to_json().encode(),
                    IfMatch=self._etag,
                )
                self._etag = out["ETag"]
            except ClientError:
                self.lost = True  # taken over as stale: the holder's writes are no longer exclusive
                return

    def release(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
        if self._etag and not self.lost:
            # an endpoint that is down leaves the object; the next run on this host takes it
            # over at once (its holder is dead), elsewhere once it is stale
            with contextlib.suppress(ClientError, BotoCoreError):
                self._client().delete_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag)
        self._etag = None

    def owner(self) -> Owner | None:
        from botocore.exceptions import ClientError

        try:
            body = self._client().get_object(Bucket=self._bucket, Key=self._key)["Body"].read()
        except ClientError:
            return None
        return Owner.from_json(body)


def home_lock(storage: LensStorage | None = None) -> LocalLock | S3Lock:
    """The writer lock for the storage root of this home (local folder or S3 prefix)."""
    storage = storage or LensStorage()
    if storage.is_s3:
        return S3Lock(storage)
    return LocalLock(Path(storage.resolved_root()))

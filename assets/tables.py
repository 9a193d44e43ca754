"""Small tables for asset metadata (markdown renders in the Dagster UI)."""

import polars as pl


def md_table(df: pl.DataFrame, *, max_rows: int = 30, digits: int = 3) -> str:
    """A markdown table of ``df`` (first ``max_rows`` rows, floats rounded)."""
    if df.is_empty():
        return "_empty_"
    df = df.head(max_rows).with_columns(pl.col(pl.Float64, pl.Float32).round(digits))
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "\n".join(
        "| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in df.iter_rows()
    )

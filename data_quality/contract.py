"""Frame keys and the column schemas of the two tables ingestion writes (``videos``, ``frames``).

Domain code (no Dagster): ingestion conforms its rows to these. Every table's schema, these two
included, is registered once in :mod:`lake.tables`, which the lake's writes are checked against.
"""

from __future__ import annotations

import polars as pl

__all__ = ["FRAMES", "KEYS", "VIDEOS", "conform"]

KEYS = ["video_id", "frame_index"]  # a frame's key in every per-frame table

VIDEOS: dict[str, pl.DataType] = {
    "video_id": pl.String(),
    "camera_id": pl.String(),
    "uri": pl.String(),
    "sha256": pl.String(),
    "size_bytes": pl.Int64(),
    "source_mtime": pl.Float64(),
    "container": pl.String(),
    "codec": pl.String(),
    "fps": pl.Float64(),
    "width": pl.Int64(),
    "height": pl.Int64(),
    "frame_count": pl.Int64(),
    "declared_frame_count": pl.Int64(),
    "duration_s": pl.Float64(),
    "has_audio": pl.Boolean(),
    "timestamp_gaps": pl.Int64(),
    "max_gap_s": pl.Float64(),
    "kept_frames": pl.Int64(),
    "status": pl.String(),
    "error": pl.String(),
    "ingested_at": pl.Datetime("us", "UTC"),
}

FRAMES: dict[str, pl.DataType] = {
    "video_id": pl.String(),
    "camera_id": pl.String(),
    "frame_index": pl.Int64(),
    "timestamp_s": pl.Float64(),
    "uri": pl.String(),
    "sha256": pl.String(),
    "width": pl.Int64(),
    "height": pl.Int64(),
    "brightness": pl.Float64(),
    "contrast": pl.Float64(),
    "sharpness": pl.Float64(),
    "labeled": pl.Boolean(),
    "item_presence": pl.Float64(),  # data_quality.presence: null in lakes ingested before it
    "item_present": pl.Boolean(),
}


def conform(rows: list[dict] | pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows as a frame with exactly ``schema``'s columns, in order and types (missing -> null)."""
    df = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, infer_schema_length=None)
    unknown = set(df.columns) - set(schema)
    if unknown:
        raise ValueError(f"columns not in the table contract: {sorted(unknown)}")
    return (
        pl.DataFrame(
            [
                df[c].cast(t) if c in df.columns else pl.Series(c, [None] * len(df), dtype=t)
                for c, t in schema.items()
            ]
        )
        if len(df)
        else pl.DataFrame(schema=schema)
    )

"""Which frames of a video do label files point at? (So sampling never drops a labeled frame.)"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable

import polars as pl

__all__ = ["referenced_frames"]


def referenced_frames(csv_files: Iterable[bytes], names: Collection[str]) -> set[int]:
    """Frame indices that label CSVs give for a video known by any of ``names``.

    Parameters
    ----------
    csv_files
        Raw bytes of label CSVs with at least the columns ``video`` and ``frame_index``.
    names
        Every way a label file may name the video: its video_id, file name and stem.

    A file that cannot be parsed is skipped here: the label import reports it with the rows.
    """
    wanted = set(names)
    frames: set[int] = set()
    for data in csv_files:
        try:
            df = pl.read_csv(io.BytesIO(data), columns=["video", "frame_index"], infer_schema=False)
        except (pl.exceptions.PolarsError, ValueError):
            continue
        hits = df.filter(pl.col("video").is_in(list(wanted)))["frame_index"]
        frames.update(int(v) for v in hits.cast(pl.Int64, strict=False).drop_nulls() if v >= 0)
    return frames

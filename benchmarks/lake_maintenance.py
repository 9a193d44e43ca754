"""Read time of a table grown by many small commits, before and after ``lake_maintenance``
(issue 19, "a lake that stays fast").

Reproduce (repo root)::

    python benchmarks/lake_maintenance.py                  # 300 commits of 200 rows
    python benchmarks/lake_maintenance.py --commits 1000   # the issue's 1,000 ingestion commits

In a temp ``LENSLINE_HOME``: ``--commits`` appends to the ``frames`` table, each one video's
``--rows`` sampled frames (the shape ingestion writes: keys, camera, uri, sha256, statistics;
``--cameras`` cameras), one Delta commit and one small file each. Then, in the same process:

* baseline: the unmaintained table: a full scan (``LensStorage.read_table``, as every reader
  does) and a filtered read (one camera, ``polars.scan_delta`` with the filter pushed down),
  each the best of ``--repeat``;
* ``lake.maintenance.maintain_lake`` on the table (compaction, checkpoint, vacuum), timed;
* the same two reads on the maintained table, whose rows must equal the baseline's.

Prints active files, commits and read times before vs after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import polars as pl


def video_rows(i: int, rows: int, cameras: int, rng: np.random.Generator) -> pl.DataFrame:
    camera = f"cam{i % cameras + 1}"
    return pl.DataFrame({
        "video_id": [f"{camera}__v{i:05d}"] * rows,
        "frame_index": np.arange(rows, dtype=np.int64),
        "camera_id": [camera] * rows,
        "uri": [f"artifacts/frames/{camera}/v{i:05d}/{k:06d}.jpg" for k in range(rows)],
        "sha256": [f"{i:08x}{k:056x}" for k in range(rows)],
        "brightness": rng.random(rows),
        "blur": rng.random(rows),
    })  # fmt: skip


def best(fn, repeat: int) -> tuple[float, pl.DataFrame]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    assert out is not None
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--rows", type=int, default=200, help="rows (frames) per commit")
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="lensline-bench-")
    os.environ["LENSLINE_HOME"] = home
    os.environ.pop("LENSLINE_STORAGE", None)
    from deltalake import DeltaTable, write_deltalake

    from lake.maintenance import maintain_lake
    from lake.storage import LensStorage

    storage = LensStorage()
    uri = storage.table_uri("frames")
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for i in range(args.commits):
        write_deltalake(uri, video_rows(i, args.rows, args.cameras, rng).to_arrow(), mode="append")
    written = time.perf_counter() - t

    def full() -> pl.DataFrame:
        df = storage.read_table("frames")
        assert df is not None
        return df

    def one_camera() -> pl.DataFrame:
        return pl.scan_delta(uri).filter(pl.col("camera_id") == "cam7").collect()

    def measure() -> dict[str, float | int | pl.DataFrame]:
        table = DeltaTable(uri)
        full_s, full_df = best(full, args.repeat)
        cam_s, cam_df = best(one_camera, args.repeat)
        return {"files": table.get_add_actions().num_rows, "version": table.version(),
                "full_s": full_s, "camera_s": cam_s, "full": full_df, "camera": cam_df}  # fmt: skip

    before = measure()
    t = time.perf_counter()
    (report,) = maintain_lake(storage, tables=["frames"])
    maintained = time.perf_counter() - t
    after = measure()
    for key in ("full", "camera"):
        b, a = before[key], after[key]
        assert isinstance(b, pl.DataFrame) and isinstance(a, pl.DataFrame)
        assert b.sort("video_id", "frame_index").equals(a.sort("video_id", "frame_index"))

    rows = args.commits * args.rows
    print(f"frames: {args.commits} commits x {args.rows} rows = {rows:,} rows, "
          f"{args.cameras} cameras (written in {written:.1f}s); best of {args.repeat}")  # fmt: skip
    print(f"maintenance: {maintained:.2f}s, compaction {report.compacted}, "
          f"checkpoint {report.checkpoint}, {len(report.vacuumed)} files vacuumed "
          f"(removed files are kept {report.retention_hours} h)")  # fmt: skip
    print(f"{'':24}{'before':>12}{'after':>12}{'speed-up':>10}")
    print(f"{'active files':24}{before['files']:>12}{after['files']:>12}")
    print(f"{'table version':24}{before['version']:>12}{after['version']:>12}")
    for key, label in (("full_s", "full scan (s)"), ("camera_s", "one camera (s)")):
        b, a = before[key], after[key]
        assert isinstance(b, float) and isinstance(a, float)
        print(f"{label:24}{b:>12.3f}{a:>12.3f}{b / a:>9.1f}x")


if __name__ == "__main__":
    main()

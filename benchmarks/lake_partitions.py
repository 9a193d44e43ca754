"""Reads of the ``frames`` table partitioned by ``camera_id`` vs unpartitioned (the baseline),
and the per-video write (issue 19, "a lake that stays fast"; docs/lake.md "Partitioning").

Reproduce (repo root)::

    python benchmarks/lake_partitions.py                          # 20 cameras x 50 videos
    python benchmarks/lake_partitions.py --cameras 4 --videos 5   # a quick look

In two temp lakes, in one process: ``--cameras`` x ``--videos`` videos of ``--rows`` synthetic
frame rows each are written one video per commit, as ingestion does (``LensStorage.write_table``
with a per-video ``replace_where``; videos interleaved across cameras, as they land):

* **partitioned**: the table as Lensline creates it now (``partition_by=("camera_id",)``,
  predicate ``camera_id = 'c' AND video_id = 'v'``);
* **unpartitioned** (baseline): the table as homes made before partitioning have it (one
  folder; predicate ``video_id = 'v'``).

Then, best of ``--repeat`` each: one camera's frames (``lake.frames.camera_frames``), one video's
frames (``lake.frames.video_frames`` with its camera), the whole table
(``LensStorage.read_table``); rows are checked equal between the two layouts. The same reads again
once both are compacted: the partitioned one by ``lake_maintenance``, the baseline by deltalake's
``optimize.compact`` and a checkpoint (``lake_maintenance`` would repartition it). Prints one table
with ratios (unpartitioned / partitioned: above 1 means partitioned is faster).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def video_rows(camera: str, video: str, rows: int, rng: np.random.Generator) -> pl.DataFrame:
    from lake.tables import TABLES

    return TABLES["frames"].conform(
        pl.DataFrame({
            "video_id": [video] * rows,
            "camera_id": [camera] * rows,
            "frame_index": np.arange(rows, dtype=np.int64),
            "timestamp_s": np.arange(rows) * 0.5,
            "uri": [f"artifacts/frames/{video}/{k:06d}.jpg" for k in range(rows)],
            "sha256": [f"{abs(hash(video)) % 16**8:08x}{k:056x}" for k in range(rows)],
            "width": [640] * rows,
            "height": [480] * rows,
            "brightness": rng.random(rows),
            "contrast": rng.random(rows),
            "sharpness": rng.random(rows),
            "labeled": [False] * rows,
        })
    )  # fmt: skip


def fill(storage, *, partitioned: bool, cameras: int, videos: int, rows: int) -> list[float]:
    """Write every video, one commit each; the seconds each write took."""
    rng = np.random.default_rng(0)
    times = []
    for v in range(videos):
        for c in range(cameras):
            camera, video = f"cam{c + 1:02d}", f"cam{c + 1:02d}__v{v:04d}"
            df = video_rows(camera, video, rows, rng)
            if not partitioned and storage.table_version("frames") is None:
                df.write_delta(storage.table_uri("frames"))  # an old home's table: one folder
                continue
            where = (
                storage.and_predicate(camera_id=camera, video_id=video)
                if partitioned
                else storage.eq_predicate("video_id", video)
            )
            t = time.perf_counter()
            storage.write_table(df, "frames", replace_where=where)
            times.append(time.perf_counter() - t)
    return times


def best(fn, repeat: int) -> tuple[float, pl.DataFrame]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    assert out is not None
    return min(times), out.sort("video_id", "frame_index")


def reads(storage, video: str, repeat: int) -> dict[str, tuple[float, pl.DataFrame]]:
    from lake.frames import camera_frames, video_frames

    return {
        "one camera": best(lambda: camera_frames(storage, "cam01"), repeat),
        "one video": best(lambda: video_frames(storage, video, camera_id="cam01"), repeat),
        "whole table": best(lambda: storage.require_table("frames"), repeat),
    }


def compact(storage) -> None:
    """What lake_maintenance did to an unpartitioned table before it repartitioned ``frames``:
    compaction and a checkpoint (left to it now, it would partition the baseline)."""
    from deltalake import DeltaTable

    table = DeltaTable(storage.table_uri("frames"))
    table.optimize.compact()
    DeltaTable(storage.table_uri("frames")).create_checkpoint()


def files(storage) -> int:
    from deltalake import DeltaTable

    return len(DeltaTable(storage.table_uri("frames")).get_add_actions())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--videos", type=int, default=50, help="videos per camera")
    parser.add_argument("--rows", type=int, default=200, help="rows (frames) per video")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from lake.maintenance import maintain_lake
    from lake.storage import LensStorage

    tmp = Path(tempfile.mkdtemp(prefix="lensline-partitions-"))
    lakes = {
        "partitioned": LensStorage(root=str(tmp / "partitioned")),
        "unpartitioned": LensStorage(root=str(tmp / "unpartitioned")),
    }
    kw = {"cameras": args.cameras, "videos": args.videos, "rows": args.rows}
    writes = {name: fill(s, partitioned=name == "partitioned", **kw) for name, s in lakes.items()}
    n = args.cameras * args.videos
    print(f"frames: {args.cameras} cameras x {args.videos} videos x {args.rows} rows = "
          f"{n * args.rows:,} rows, {n} per-video commits per table; best of {args.repeat}\n")  # fmt: skip

    print("| read | stage | unpartitioned (files) | partitioned (files) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for stage in ("as ingested", "compacted"):
        if stage != "as ingested":
            compact(lakes["unpartitioned"])
            maintain_lake(lakes["partitioned"], tables=["frames"])
        nfiles = {name: files(s) for name, s in lakes.items()}
        video = f"cam01__v{args.videos // 2:04d}"
        got = {name: reads(s, video, args.repeat) for name, s in lakes.items()}
        for what, (t_part, rows_part) in got["partitioned"].items():
            t_base, rows_base = got["unpartitioned"][what]
            assert rows_part.equals(rows_base), f"{what}: rows differ"
            print(f"| {what} ({rows_part.height:,} rows) | {stage} | {t_base * 1000:.1f} ms "
                  f"({nfiles['unpartitioned']}) | {t_part * 1000:.1f} ms ({nfiles['partitioned']}) "
                  f"| {t_base / t_part:.1f}x |")  # fmt: skip

    print("\n| per-video write | unpartitioned | partitioned |")
    print("| --- | --- | --- |")
    for label, fn in (("median", statistics.median), ("mean", statistics.fmean)):
        w = {name: fn(t) * 1000 for name, t in writes.items()}
        print(f"| {label} | {w['unpartitioned']:.1f} ms | {w['partitioned']:.1f} ms |")
    last = {name: statistics.median(t[-args.cameras :]) * 1000 for name, t in writes.items()}
    print(f"| median, last {args.cameras} | {last['unpartitioned']:.1f} ms | "
          f"{last['partitioned']:.1f} ms |")  # fmt: skip
    print(f"\n(lakes left in {tmp})")


if __name__ == "__main__":
    main()

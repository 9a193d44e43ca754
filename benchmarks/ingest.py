"""Ingestion throughput against bare PyAV decoding, and the cost of one more video.

Reproduce:  .venv/bin/python benchmarks/ingest.py            (about 2 minutes on 2 cores)
            .venv/bin/python benchmarks/ingest.py --quick    (smaller, ~30 s)

Baselines, measured in the same process on the same file:
- the physical floor of any ingestion that proves integrity is decoding every frame once: a bare
  PyAV loop ``for f in container.decode(video=0): pass``, with FFmpeg's default threading and with
  frame+slice threads (``thread_type="AUTO"``) — the stronger of the two is the baseline;
- Lensline's number is the whole ``ingest_video`` Dagster run for one partition (checksum, full
  decode, JPEG encoding of sampled frames at the default 2 fps, quality stats, Delta commits of
  the ``videos`` and ``frames`` tables, metadata), and the domain pass alone (``scan_video``).
Incremental: 20 videos already ingested, one more lands: ``lensline run`` cost versus a full
rebuild of all 21 in a fresh home.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, repeat: int) -> float:
    """Best of ``repeat``: the least disturbed by whatever else the machine does."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def step_seconds(instance, run_id: str) -> float:
    """Wall time of the ingest step itself (asset body + Delta commits), from the run's events."""
    logs = instance.all_logs(run_id)
    start = next(
        e.timestamp
        for e in logs
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
    )
    end = next(
        e.timestamp
        for e in logs
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"
    )
    return end - start


def bare_decode(path: Path, threads: bool) -> int:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if threads:
            s.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


def use_home(home: Path) -> None:
    os.environ["LENSLINE_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def run_all() -> float:
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.runner import run_pending

    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        summary = run_pending(defs, instance, select="group:ingest")
    assert all(o.status == "ok" for o in summary.ingested), summary.rejected
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the throughput video")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument(
        "--videos", type=int, default=20, help="already-ingested videos for the incremental test"
    )
    ap.add_argument("--video-seconds", type=float, default=6.0)
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.videos, args.video_seconds = 20.0, 8, 3.0
    w, h = (int(x) for x in args.size.split("x"))

    import dagster as dg

    from data_quality.frame_quality import FrameEncoder
    from data_quality.video import scan_video
    from demo import render_video
    from orchestration.definitions import defs

    work = Path(tempfile.mkdtemp(prefix="lensline-bench-"))
    try:
        home = work / "one"
        use_home(home)
        video = home / "landing/videos/cam1/long.mp4"
        video.parent.mkdir(parents=True)
        render_video(
            video, seed=1, camera_id="cam1", seconds=args.seconds, fps=args.fps, size=(w, h)
        )
        n = bare_decode(video, threads=False)
        print(
            f"video: {video.name} {w}x{h} @ {args.fps} fps, {n} frames, {video.stat().st_size / 1e6:.1f} MB"
        )

        t_plain = timed(lambda: bare_decode(video, threads=False), 3)
        t_thr = timed(lambda: bare_decode(video, threads=True), 3)

        def core() -> None:
            encoder = FrameEncoder()
            scan_video(video, sample_fps=2.0, sink=encoder, lazy_sink=True)
            encoder.results()

        t_core = timed(core, 3)
        job = defs.resolve_job_def("ingest_video")
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("videos", ["cam1__long"])
            quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
            runs = []

            def asset_run() -> None:
                runs.append(
                    job.execute_in_process(
                        partition_key="cam1__long", instance=instance, run_config=quiet
                    )
                )

            t_asset = timed(asset_run, 3)
            t_step = min(step_seconds(instance, r.run_id) for r in runs)
            t_body = min(
                e.materialization.metadata["ingest_s"].value
                for r in runs
                for e in r.get_asset_materialization_events()
                if e.asset_key == dg.AssetKey("raw_video")
            )
        base = min(t_plain, t_thr)
        rows = [
            ("PyAV decode only, default threads", t_plain),
            ("PyAV decode only, thread_type=AUTO", t_thr),
            ("Lensline scan_video (decode+sample+JPEG)", t_core),
            ("Lensline ingestion (asset work, Delta commits)", t_body),
            ("Lensline ingest step (+ Dagster event writes)", t_step),
            ("Lensline ingest_video Dagster run, end to end", t_asset),
        ]
        print(f"\n{'what':<50}{'seconds':>9}{'frames/s':>11}{'vs best decode':>16}")
        for name, t in rows:
            print(f"{name:<50}{t:>9.3f}{n / t:>11.0f}{base / t:>15.2f}x")
        print(f"\ningestion / decode-only throughput: {base / t_body:.2f}x (target >= 0.80x)")
        print(
            f"ingest step / decode-only:         {base / t_step:.2f}x (Dagster writes each event to SQLite)"
        )
        print(
            f"whole Dagster run / decode-only:        {base / t_asset:.2f}x "
            f"(includes {t_asset - t_step:.2f}s of fixed per-run bookkeeping in the SQLite instance)"
        )

        # incremental: N ingested + 1 new  vs  all N+1 from scratch
        inc = work / "inc"
        use_home(inc)
        for i in range(args.videos + 1):
            cam = f"cam{i % 3 + 1}"
            target = inc / f"landing/videos/{cam}/v{i:03d}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            render_video(
                target,
                seed=100 + i,
                camera_id=cam,
                seconds=args.video_seconds,
                fps=15,
                size=(320, 240),
            )
        last = sorted((inc / "landing/videos").rglob("v*.mp4"))[-1]
        held = work / last.name
        shutil.move(last, held)
        run_all()
        shutil.move(held, last)
        t_inc = run_all()
        full = work / "full"
        shutil.copytree(inc / "landing", full / "landing")
        use_home(full)
        t_full = run_all()
        print(
            f"\nadd 1 video to {args.videos} ingested: {t_inc:.2f}s   full rebuild of {args.videos + 1}: {t_full:.2f}s"
        )
        print(f"incremental / full: {t_inc / t_full:.1%} (target <= 10%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""A backlog of videos through the real dagster-daemon: new_video_sensor's batches against one
run per video (what the sensor asked before).

Reproduce:  .venv/bin/python benchmarks/sensor_backlog.py              (about 3 minutes on 2 cores)
            .venv/bin/python benchmarks/sensor_backlog.py --videos 8

Each case is a fresh home (embedded profile: SQLite instance, local lake) with the same landed
videos, and a ``dagster-daemon run`` of the repository's workspace.yaml: the sensor daemon
evaluates ``new_video_sensor``, the queue daemon admits its runs by the lake's pools, and the
daemon's run launcher (Dagster's default: a new process per run) executes them.

- **one run per video** (the baseline: the sensor before batches): ``LENSLINE_RUN_WORKERS`` set
  to the number of videos, so the planner gives every video a run of its own;
- **batches**: the default (``LENSLINE_RUN_WORKERS`` unset: the CPU count), runs of up to 8
  consecutive videos.

Measured: from the first run's creation to the last run's end (the ingestion itself, without
the daemon's start and the sensor's first tick), and from the daemon's start to the last video
in the lake. Run it on a quiet machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent


def run_case(src: Path, root: Path, videos: int, workers: int | None) -> dict:
    """Land ``src``'s videos in a fresh home, run a daemon until all are in the lake."""
    import dagster as dg

    home = Path(tempfile.mkdtemp(prefix="home-", dir=root))
    for path in sorted(src.rglob("*.mp4")):
        dest = home / "landing/videos" / path.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / path.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LENSLINE_", "DAGSTER_"))}
    env.update(LENSLINE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    if workers is not None:
        env["LENSLINE_RUN_WORKERS"] = str(workers)
    subprocess.run([str(BIN / "lensline"), "init"], env=env, check=True, capture_output=True)
    log = open(home / "daemon.log", "wb")  # noqa: SIM115 (closed below)
    started = time.time()
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    os.environ.update(DAGSTER_HOME=env["DAGSTER_HOME"], LENSLINE_HOME=env["LENSLINE_HOME"])
    try:
        from lake.storage import LensStorage

        deadline = time.time() + 900
        while True:
            time.sleep(1.0)
            if daemon.poll() is not None or time.time() > deadline:
                raise RuntimeError((home / "daemon.log").read_text()[-3000:])
            table = LensStorage().read_table("videos")
            done = 0 if table is None else int((table["status"] == "ok").sum())
            if done == videos:
                landed = time.time() - started
                break
        with dg.DagsterInstance.get() as instance:
            deadline = time.time() + 120
            while True:
                runs = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_video"))
                if all(r.is_finished for r in runs) or time.time() > deadline:
                    break
                time.sleep(0.5)
            records = instance.get_run_records(filters=dg.RunsFilter(job_name="ingest_video"))
            first = min(r.create_timestamp.timestamp() for r in records)
            last = max(r.end_time or time.time() for r in records)
            ok = sum(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
    return {"runs": len(records), "ok": ok, "ingest": last - first, "landed": landed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each demo video")
    args = ap.parse_args()
    from demo import make_demo_set

    root = Path(tempfile.mkdtemp(prefix="lensline-backlog-"))
    src = root / "src"
    make_demo_set(src, cameras=2, videos_per_camera=-(-args.videos // 2), seconds=args.seconds)
    videos = len(list(src.rglob("*.mp4")))
    print(
        f"{videos} demo videos of {args.seconds:g} s landed at once; dagster-daemon, embedded "
        f"profile; cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}\n"
    )
    cases = [("one run per video (before)", videos), ("batches (now)", None)]
    rows = [(name, run_case(src, root, videos, workers)) for name, workers in cases]
    shutil.rmtree(root, ignore_errors=True)
    base = rows[0][1]["ingest"]
    print(f"{'case':30s} {'runs':>5s} {'ok':>4s} {'ingest':>8s} {'per video':>10s} {'speed-up':>9s} "
          f"{'daemon start -> all landed':>27s}")  # fmt: skip
    for name, r in rows:
        print(
            f"{name:30s} {r['runs']:5d} {r['ok']:4d} {r['ingest']:7.1f}s {r['ingest'] / videos:9.2f}s "
            f"{base / r['ingest']:8.2f}x {r['landed']:26.1f}s"
        )


if __name__ == "__main__":
    main()

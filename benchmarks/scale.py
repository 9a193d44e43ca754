"""Ingestion at scale: the embedded profile versus the production profile with Celery workers.

Reproduce:  .venv/bin/python benchmarks/scale.py              (about 6 minutes on 2 cores)
            .venv/bin/python benchmarks/scale.py --videos 4   (quicker)

What is measured, each in a fresh home and a fresh process:
- **in process, one by one** (the baseline: what ``lensline run`` did before it was a queue
  client): one ``execute_in_process`` run per video, SQLite instance, local lake.
- **embedded, N run workers**: ``lensline run``'s ingestion (``run_pending``, ``--select
  key:raw_video``): every run QUEUED in the SQLite instance, admitted by the lake's pools
  (``lake_ingest``: videos side by side), executed by ``lensline run``'s own run workers
  (``LENSLINE_RUN_WORKERS``), no daemon.
- **celery, N workers**: the production profile (``lensline init --profile production``:
  run/event storage in a real PostgreSQL 15, Redis broker, ``LENSLINE_EXECUTOR=celery``): the
  same ``run_pending``, its runs queued in Postgres, each step a Celery task executed by one of
  N real ``dagster-celery worker`` processes (``--concurrency=1`` each), ``lensline run`` with
  2N run workers (a run waits for its two steps in turn). Workers start before the clock.
- **bare PyAV** (the physical baseline): decoding every frame of the same videos in one
  process, nothing else: what one core can decode.
- per-run overhead: a 1-video run's wall time minus the time its steps spent executing
  (STEP_START -> STEP_SUCCESS from the run's events) ("start-up"); and for the N videos, the
  worker-seconds not spent in steps (idle run workers included), per run and per video: runs
  ingest batches of videos (partition ranges, ``orchestration.batches``), so the fixed cost of
  a run is shared by its videos.
- cores busy: the machine's busy CPU seconds (psutil, all processes) over the wall time: what a
  case keeps busy of the machine (run it on a quiet machine: the load average is printed). The
  ceiling for N workers is N x, or cores / (cores one worker keeps busy) when that is less: one
  run worker already uses more than one core (FFmpeg's decoder threads, JPEG encoding on two
  threads, Delta writes). frames/core-s: sampled frames per busy CPU second, what sizing
  divides by (equal for 1 and 2 workers = throughput grows with the cores given).
- projection: 20 cameras x 24 h sampled at 2 fps = 40 sampled frames/s and 20 video-seconds per
  wall-second, against what each profile sustained here (demo videos: 320x240 at 15 fps; every
  frame is decoded to prove integrity, 2 fps are kept).

Servers (PostgreSQL as the ``postgres`` user, redis-server, the workers) run on free 127.0.0.1
ports and are stopped by PID; the Celery rows are skipped with the reason when a server is
missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PG_BIN = Path(os.environ.get("LENSLINE_PG_BIN", "/usr/lib/postgresql/15/bin"))
CAMERAS, HOURS, SAMPLE_FPS = 20, 24, 2.0


def ingest_video_job():
    """The code location's ``ingest_video`` job (a reconstructable pointer for the workers)."""
    from orchestration.definitions import defs

    return defs.resolve_job_def("ingest_video")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM ``proc`` and its children (each by PID), then SIGKILL stragglers."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait(timeout=10)


# --------------------------------------------------------------------------- servers


@contextlib.contextmanager
def postgres() -> Iterator[dict[str, str]]:
    """A throw-away PostgreSQL 15 cluster (as in tests/production); its LENSLINE_PG_* settings."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"no PostgreSQL binaries in {PG_BIN}")
    root = Path(tempfile.mkdtemp(prefix="lensline-pg-"))
    as_pg: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_pg = ["runuser", "-u", "postgres", "--"]
    password = "pw-" + os.urandom(8).hex()
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if as_pg:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    data = root / "data"
    initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--no-sync"]
    initdb += ["--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"]
    subprocess.run(as_pg + initdb, check=True, capture_output=True)
    port = free_port()
    cmd = [str(PG_BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
    cmd += ["-k", str(root), "-c", "fsync=off", "-c", "max_connections=200"]
    with open(root / "server.log", "wb") as out:
        proc = subprocess.Popen(as_pg + cmd, stdout=out, stderr=subprocess.STDOUT)
    env = {
        "LENSLINE_PG_HOST": "127.0.0.1",
        "LENSLINE_PG_PORT": str(port),
        "LENSLINE_PG_USER": "postgres",
        "LENSLINE_PG_PASSWORD": password,
        "LENSLINE_PG_DB": "postgres",
    }
    try:
        deadline = time.time() + 30
        while _pg_sql(env, "SELECT 1") is None:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"postgres did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.3)
        yield env
    finally:
        pid_file = data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _pg_sql(env: dict[str, str], sql: str, db: str | None = None):
    import sqlalchemy as sa

    url = (
        f"postgresql+psycopg2://{env['LENSLINE_PG_USER']}:{env['LENSLINE_PG_PASSWORD']}"
        f"@127.0.0.1:{env['LENSLINE_PG_PORT']}/{db or env['LENSLINE_PG_DB']}"
    )
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(sql))
            return result.fetchall() if result.returns_rows else True
    except sa.exc.OperationalError as exc:
        if not sql.startswith("SELECT"):
            print(exc, file=sys.stderr)
        return None
    finally:
        engine.dispose()


@contextlib.contextmanager
def redis() -> Iterator[str]:
    exe = shutil.which("redis-server")
    if not exe:
        raise RuntimeError("no redis-server (apt-get install redis-server)")
    port = free_port()
    cmd = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)


@contextlib.contextmanager
def celery_workers(n: int, broker: str, backend: str, workdir: Path) -> Iterator[float]:
    """``n`` ``dagster-celery worker`` processes (one pool process each); yields seconds until
    all answer a ping; stops them by PID."""
    import celery
    import yaml

    exe = Path(sys.executable).parent / "dagster-celery"
    config = workdir / "celery.yaml"
    config.write_text(
        yaml.safe_dump({"execution": {"config": {"broker": broker, "backend": backend}}})
    )
    path = os.pathsep.join([str(exe.parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": path}
    started = time.perf_counter()
    procs = []
    try:
        for i in range(n):
            name = f"lensline-bench-{os.getpid()}-{i}"
            cmd = [str(exe), "worker", "start", "-A", "orchestration.celery_app", "-y", str(config)]
            cmd += ["-n", name, "--", "--concurrency=1", "--prefetch-multiplier=1", "-O", "fair"]
            cmd += ["--without-heartbeat", "--without-gossip"]
            log = open(workdir / f"worker{i}.log", "wb")  # noqa: SIM115 (closed with the worker)
            procs.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log), log))
        app = celery.Celery(broker=broker, backend=backend)
        deadline = time.time() + 180
        while len(app.control.ping(timeout=1.0)) < n:
            if any(p.poll() is not None for p, _ in procs) or time.time() > deadline:
                raise RuntimeError((workdir / "worker0.log").read_text()[-2000:])
        yield time.perf_counter() - started
    finally:
        for proc, log in procs:
            _stop(proc)
            log.close()


# --------------------------------------------------------------------------- measurements


def _step_seconds(instance, run_id: str) -> float:
    """Seconds the run's steps spent executing (STEP_START -> STEP_SUCCESS/FAILURE)."""
    starts, total = {}, 0.0
    for e in instance.all_logs(run_id):
        ev = e.dagster_event
        if ev is None:
            continue
        if ev.event_type_value == "STEP_START":
            starts[ev.step_key] = e.timestamp
        elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key in starts:
            total += e.timestamp - starts.pop(ev.step_key)
    return total


def _lake_totals() -> dict[str, float]:
    from lake.storage import LensStorage

    storage = LensStorage()
    videos, frames = storage.read_table("videos"), storage.read_table("frames")
    return {
        "videos_ok": int((videos["status"] == "ok").sum()) if videos is not None else 0,
        "video_s": float(videos["duration_s"].sum()) if videos is not None else 0.0,
        "frames": frames.height if frames is not None else 0,
    }


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process): the case's own
    processes on a quiet machine (the load average is printed with the results)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def measure(profile: str, home: Path, workers: int) -> dict:
    """One measurement in this (fresh) process; ``home`` holds the landed videos."""
    import dagster as dg

    from lake.landing import discover_videos
    from orchestration.profiles import write_profile

    os.environ.update(LENSLINE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    # Celery: runs mostly wait for their steps, two per run in turn: two runs per worker keep
    # every worker busy
    os.environ["LENSLINE_RUN_WORKERS"] = str(max(workers, 1) * (2 if profile == "celery" else 1))
    write_profile(home / "dagster", "production" if profile == "celery" else "embedded")
    from orchestration.definitions import defs
    from orchestration.queue import QUIET
    from orchestration.runner import run_pending

    with dg.DagsterInstance.get() as instance:
        ready = 0.0
        busy0 = _busy_seconds()
        if profile == "inprocess":
            videos = sorted(discover_videos(defs.resources["storage"]))
            job = defs.resolve_job_def("ingest_video")
            t0 = time.perf_counter()
            instance.add_dynamic_partitions("videos", videos)
            for vid in videos:
                result = job.execute_in_process(
                    partition_key=vid, instance=instance, run_config=QUIET, raise_on_error=False
                )
                assert result.success
            wall = time.perf_counter() - t0
            busy = _busy_seconds() - busy0
        elif profile == "embedded":
            t0 = time.perf_counter()
            summary = run_pending(defs, instance, select="key:raw_video")
            wall = time.perf_counter() - t0
            busy = _busy_seconds() - busy0
            assert all(o.status == "ok" for o in summary.ingested), summary.ingested
        else:
            backend = os.environ["LENSLINE_CELERY_BROKER"].rsplit("/", 1)[0] + "/1"
            os.environ["LENSLINE_CELERY_BACKEND"] = backend
            workdir = Path(tempfile.mkdtemp(prefix="lensline-celery-"))
            with celery_workers(
                workers, os.environ["LENSLINE_CELERY_BROKER"], backend, workdir
            ) as ready:
                busy0 = _busy_seconds()
                t0 = time.perf_counter()
                summary = run_pending(defs, instance, select="key:raw_video")
                wall = time.perf_counter() - t0
                busy = _busy_seconds() - busy0
                assert all(o.status == "ok" for o in summary.ingested), (
                    workdir / "worker0.log"
                ).read_text()[-3000:]
            shutil.rmtree(workdir, ignore_errors=True)
        run_ids = [r.run_id for r in instance.get_runs()]
        steps = sum(_step_seconds(instance, r) for r in run_ids)
    slots = 1 if profile == "inprocess" else max(workers, 1)
    return {
        "wall": wall,
        "busy": busy,
        "runs": len(run_ids),
        "steps": steps,
        "ready": ready,
        "slots": slots,
        **_lake_totals(),
    }


def bare_decode(src: Path, videos: int) -> dict:
    """Every frame of the same videos decoded with PyAV in this process, nothing kept."""
    import av

    chosen = sorted(src.glob("videos/*/*.mp4"))[:videos]
    t0 = time.perf_counter()
    seconds = 0.0
    for path in chosen:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            seconds += frames / float(stream.average_rate or 15)
    wall = time.perf_counter() - t0
    return {"wall": wall, "video_s": seconds}


def _landed_home(src: Path, root: Path, videos: int) -> Path:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=root))
    chosen = sorted(src.glob("videos/*/*.mp4"))[:videos]
    for path in chosen:
        dest = home / "landing" / path.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return home


def run_case(profile: str, workers: int, videos: int, src: Path, root: Path, env: dict) -> dict:
    """``measure`` in a fresh interpreter (fresh imports, its own env), its result as a dict."""
    home = _landed_home(src, root, videos)
    if profile == "celery":
        db = f"bench_{os.urandom(4).hex()}"
        if _pg_sql(env, f'CREATE DATABASE "{db}"') is None:
            raise RuntimeError(f"could not create database {db}")
        env = {**env, "LENSLINE_PG_DB": db}
    cmd = [sys.executable, __file__, "--measure", profile, "--home", str(home)]
    cmd += ["--workers", str(workers)]
    out = subprocess.run(
        cmd, env={**os.environ, **env}, cwd=root, capture_output=True, text=True, timeout=1800
    )
    if out.returncode:
        raise RuntimeError(f"{profile} x{workers} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each demo video")
    ap.add_argument("--no-celery", action="store_true", help="skip the Celery rows")
    ap.add_argument(
        "--measure", choices=["inprocess", "embedded", "celery"], help=argparse.SUPPRESS
    )
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.home, args.workers)))
        return

    from demo import make_demo_set

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LENSLINE_", "DAGSTER_"))}
    os.environ.clear()
    os.environ.update(clean)
    root = Path(tempfile.mkdtemp(prefix="lensline-scale-"))
    src = root / "src"
    per_camera = -(-args.videos // 2)
    make_demo_set(src, cameras=2, videos_per_camera=per_camera, seconds=args.seconds)
    print(
        f"{args.videos} demo videos of {args.seconds:g} s (320x240, 15 fps); cores: {os.cpu_count()}; "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )

    rows: list[tuple[str, str, int, dict, dict]] = []
    cases = [("in process, one by one (before)", "inprocess", 1)]
    cases += [(f"embedded, {n} run worker{'s' * (n > 1)}", "embedded", n) for n in (1, 2)]
    for name, profile, n in cases:
        one = run_case(profile, n, 1, src, root, {})
        rows.append((name, profile, n, one, run_case(profile, n, args.videos, src, root, {})))
    celery_missing = "celery rows skipped (--no-celery)" if args.no_celery else ""
    if not args.no_celery:
        try:
            with postgres() as pg, redis() as broker:
                env = {**pg, "LENSLINE_EXECUTOR": "celery", "LENSLINE_CELERY_BROKER": broker}
                for workers in (1, 2):
                    one = run_case("celery", workers, 1, src, root, env)
                    many = run_case("celery", workers, args.videos, src, root, env)
                    name = f"celery, {workers} worker{'s' * (workers > 1)} (Postgres, Redis)"
                    rows.append((name, "celery", workers, one, many))
        except (RuntimeError, OSError, KeyError) as exc:
            celery_missing = f"celery rows missing: {exc}"
    bare = bare_decode(src, args.videos)
    shutil.rmtree(root, ignore_errors=True)
    report(rows, args.videos, celery_missing, bare)


def report(
    rows: list[tuple[str, str, int, dict, dict]], videos: int, celery_missing: str, bare: dict
) -> None:
    needed_fps = CAMERAS * SAMPLE_FPS
    print(
        f"\n{'profile':<38} {'wall N':>8} {'per video':>9} {'speed-up':>8} {'start-up':>8} "
        f"{'runs':>4} {'per run':>7} {'per video':>9} {'frames/s':>8} {'video-s/s':>9} "
        f"{'workers up':>10} {'cores busy':>10} {'frames/core-s':>13}"
    )
    base = rows[0][4]["wall"]
    one_worker = {profile: many for _, profile, n, _, many in rows if n == 1}
    cores = os.cpu_count() or 1
    for name, profile, workers, one, many in rows:
        assert many["videos_ok"] == videos, (name, many)
        startup = one["wall"] - one["steps"]  # a 1-video run: all that is not its steps
        # worker-seconds of the N-video run not spent in steps (idle slots included), per run
        # and per video (a run ingests a batch of videos)
        idle = many["slots"] * many["wall"] - many["steps"]
        speed = base / many["wall"]
        extra = ""
        if workers > 1 and profile in one_worker:
            alone = one_worker[profile]
            # the most N workers can give: N x, unless one worker already keeps more than
            # cores/N cores busy (its decoder's and encoder's threads, the Delta writes)
            ceiling = min(workers, cores / max(alone["busy"] / alone["wall"], 1e-9))
            extra = f" (x{alone['wall'] / many['wall']:.2f} vs 1; ceiling x{ceiling:.2f})"
        print(
            f"{name:<38} {many['wall']:>7.1f}s {many['wall'] / videos:>8.2f}s {speed:>7.2f}x "
            f"{startup:>7.2f}s {many['runs']:>4} {idle / many['runs']:>6.2f}s "
            f"{idle / videos:>8.2f}s {many['frames'] / many['wall']:>8.1f} "
            f"{many['video_s'] / many['wall']:>9.1f} {many['ready']:>9.1f}s "
            f"{many['busy'] / many['wall']:>10.2f} {many['frames'] / max(many['busy'], 1e-9):>13.1f}"
            f"{extra}"
        )
    if celery_missing:
        print(celery_missing)
    print(
        f"{'bare PyAV decode, 1 process (ceiling)':<38} {bare['wall']:>7.1f}s "
        f"{bare['wall'] / videos:>8.2f}s {base / bare['wall']:>7.2f}x {'':>8} {'':>7} {'':>8} "
        f"{bare['video_s'] / bare['wall']:>9.1f}"
    )
    print(
        f"\nprojection: {CAMERAS} cameras x {HOURS} h at {SAMPLE_FPS:g} fps = "
        f"{needed_fps * 3600 * HOURS:,.0f} sampled frames/day: needs {needed_fps:.0f} frames/s "
        f"and {CAMERAS} video-s/s sustained"
    )
    for name, _, _, _, many in rows:
        fps = many["frames"] / many["wall"]
        realtime = many["video_s"] / many["wall"]
        verdict = "keeps up" if fps >= needed_fps and realtime >= CAMERAS else "falls behind"
        print(
            f"  {name:<38} {fps:6.1f} frames/s = {fps / needed_fps:5.2f}x needed, "
            f"{realtime:5.1f} video-s/s: {verdict}"
        )


if __name__ == "__main__":
    main()

"""The run workers ``lensline run`` executes admitted runs on when no daemon does.

:class:`ProcessRunLauncher` is the Dagster run launcher :class:`orchestration.queue.QueueClient`
puts on its own handle of the instance (the stored ``dagster.yaml`` is not changed): a run of the
code location executes in one of ``LENSLINE_RUN_WORKERS`` warm run-worker processes, forks of a
fork server that imported the heavy libraries once (:data:`PRELOAD`); a run of other definitions
(a test's smaller graph), or one waited for alone, executes in the calling process. Worker
processes die with ``lensline run``; the next one marks their runs failed
(``orchestration.instance_home.fail_dead_runs``). Split from ``orchestration.queue`` (the client) so
each stays readable: this module starts and feeds processes, that one talks to the queue.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import dagster as dg

from orchestration.dagster_internals import (
    SQLITE_STORAGE_MODULE,
    ConfigurableClass,
    RunLauncher,
)

LOCATION = "lensline"  # the code location's name in workspace.yaml
MODULE, ATTRIBUTE = "orchestration.definitions", "defs"
REPOSITORY = "__repository__"
REPO_ROOT = Path(__file__).resolve().parents[1]
WORKERS_ENV = "LENSLINE_RUN_WORKERS"
WORKER_PID_TAG = "lensline/worker_pid"
WORKER_HOST_TAG = "lensline/worker_host"
# imported once by the fork server, so each run's fork starts warm: third-party libraries whose
# import reads no Lensline setting (Lensline's own modules read the environment: each fork
# imports them after taking the submitter's environment). scipy.stats is the drift step's
# (data_quality.drift): 0.5 s of every fresh worker's first ingestion run otherwise. Dagster's
# SQLite instance storage (SQLAlchemy, alembic) is imported when an instance is first opened:
# 0.5 s per worker, 3.4 s when two workers started at once beside lensline run's planning
PRELOAD = ["dagster", "av", "cv2", "polars", "deltalake", "pyarrow.dataset", "PIL.Image"]
PRELOAD += ["scipy.stats", SQLITE_STORAGE_MODULE]
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

# run id -> what executes it here (set by QueueClient.submit, read by ProcessRunLauncher; all
# in the driving thread: launch_run is called from its admission passes)
_JOBS: dict[str, object] = {}
# runs waited for alone: nothing to run beside them, so they execute in this process, no worker
_INLINE: set[str] = set()


def run_workers() -> int:
    """Runs this process executes at once: ``LENSLINE_RUN_WORKERS``, default the CPU count
    (at most 8). The queue's pools decide which runs may overlap; this bounds the threads."""
    raw = os.environ.get(WORKERS_ENV, "")
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{WORKERS_ENV}={raw!r} is not a whole number") from None
        if value < 1:
            raise ValueError(f"{WORKERS_ENV}={raw!r}: at least 1")
        return value
    return max(1, min(8, os.cpu_count() or 1))


class ProcessRunLauncher(RunLauncher, ConfigurableClass):
    """Executes the runs the queue admits for ``lensline run`` when no daemon does.

    A run of the code location's definitions executes in one of ``workers`` warm run-worker
    processes (spawned once per ``lensline run``, definitions imported once; its executor as
    configured), so runs the queue admits side by side run side by side. Dagster executes one
    run per process: two runs in threads of one process deadlock in its log handlers. A run
    submitted from other definitions (a test's smaller graph) executes here, in the calling
    thread, one at a time. A queued run of another client (a sensor's, while no daemon runs)
    executes from its recorded code origin, as a daemon's run worker would.
    """

    def __init__(self, workers: int = 1, inst_data=None):
        self._inst_data = inst_data
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        # the one thread that touches the pool (warm-up, hand-overs): starting the fork server
        # takes ~2 s, during which the admission loop goes on creating the next runs
        self._handoff: ThreadPoolExecutor | None = None
        self.futures: dict[str, Future] = {}
        super().__init__()

    @property
    def inst_data(self):
        return self._inst_data

    @classmethod
    def config_type(cls):
        return {"workers": dg.Field(int, default_value=1)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(workers=config_value["workers"], inst_data=inst_data)

    def launch_run(self, context) -> None:
        from orchestration.dagster_internals import ReconstructableJob

        run = context.dagster_run
        job = _JOBS.get(run.run_id)
        if job is not None and (not isinstance(job, ReconstructableJob) or run.run_id in _INLINE):
            _execute_here(job, run.run_id, self._instance)  # type: ignore[arg-type]
            return
        env = dict(os.environ)  # the fork server keeps the environment it started with
        cwd, run_id = os.getcwd(), run.run_id
        done: Future = Future()
        done.set_running_or_notify_cancel()

        def hand_over() -> None:
            try:
                worker = self._ensure_pool().submit(_execute_in_worker, run_id, env, cwd)
            except BaseException as exc:  # noqa: BLE001 (the pool is broken: the run fails)
                done.set_exception(exc)
                return
            worker.add_done_callback(lambda f: _settle(done, f))

        self._in_handoff(hand_over)
        self.futures[run_id] = done

    def _in_handoff(self, fn: Callable[[], None]) -> None:
        if self._handoff is None:
            self._handoff = ThreadPoolExecutor(1, thread_name_prefix="lensline-launch")
        self._handoff.submit(fn)

    def _ensure_pool(self) -> ProcessPoolExecutor:
        """The run workers' pool (called in the hand-off thread only)."""
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            # forks of the warm fork server, kept for this lensline run's runs
            self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=context)
        return self._pool

    def warm(self, n: int) -> None:
        """Start ``n`` run workers and import the code location in each, in the hand-off
        thread, while the caller goes on planning and submitting: the first runs then start at
        once (the fork server's imports and a worker's take about 2 s)."""
        env, cwd = dict(os.environ), os.getcwd()

        def start() -> None:
            pool = self._ensure_pool()
            for _ in range(min(n, self._workers)):
                pool.submit(_warm_worker, env, cwd)

        self._in_handoff(start)

    def terminate(self, run_id: str) -> bool:
        return False  # the run ends with its worker; `dagster` marks it failed if it dies

    def dispose(self) -> None:
        if self._handoff is not None:
            self._handoff.shutdown(wait=True)
            self._handoff = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _settle(done: Future, worker: Future) -> None:
    """``done`` ends as the run worker's future ``worker`` ended."""
    if worker.cancelled():
        done.set_exception(RuntimeError("the run worker's task was cancelled"))
    elif worker.exception() is not None:
        done.set_exception(worker.exception())  # type: ignore[arg-type]
    else:
        done.set_result(worker.result())


def _execute_here(job, run_id: str, instance: dg.DagsterInstance | None) -> None:
    from orchestration.dagster_internals import execute_run

    assert instance is not None
    run = instance.get_run_by_id(run_id)
    assert run is not None
    try:
        execute_run(job, run, instance)
    except Exception as exc:  # noqa: BLE001 (a run that cannot start is failed, not lost)
        current = instance.get_run_by_id(run_id)
        if current is not None and current.status not in DONE:
            instance.report_run_failed(current, message=f"the run could not execute: {exc}")


def _warm_worker(env: Mapping[str, str], cwd: str) -> int:
    """In a new run worker: the submitter's environment and folder, the code location imported
    and the instance opened (what every run of it needs first: its storage's and run launcher's
    imports, and the storage's schema check), kept for the worker's runs."""
    import importlib

    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    importlib.import_module(MODULE)
    _worker_instance()
    return os.getpid()


def keep_connections(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """Keep ``instance``'s database connections open between queries, as ``dagster-webserver``
    does (``optimize_for_webserver``: one pooled connection per storage, more while threads
    need them; no statement timeout, since a run's own queries go through it). dagster-postgres
    otherwise opens a connection per query (7.5 ms each here: TCP and SCRAM), and a run's
    events, its queue admission and the status polls are each a query: ~0.5 s of a one-video
    run on Celery (``benchmarks/scale.py``). Nothing changes on SQLite. For processes that live
    across runs: ``lensline run`` and its run workers."""
    if instance not in _POOLED:  # once per instance: a second call would replace its pools
        instance.optimize_for_webserver(
            statement_timeout=0, pool_recycle=POOL_RECYCLE_S, max_overflow=8
        )
        _POOLED.add(instance)
    return instance


POOL_RECYCLE_S = 3600  # a pooled connection older than this is replaced before use
_POOLED: weakref.WeakSet[dg.DagsterInstance] = weakref.WeakSet()
# this run worker's instance, opened once and kept for its runs (its pooled connections with it)
_WORKER_INSTANCE: dict[str, dg.DagsterInstance] = {}


def _worker_instance() -> dg.DagsterInstance:
    """The instance of ``DAGSTER_HOME``, opened once per run worker (and per home)."""
    home = os.environ.get("DAGSTER_HOME", "")
    if home not in _WORKER_INSTANCE:
        _WORKER_INSTANCE[home] = keep_connections(dg.DagsterInstance.get())
    return _WORKER_INSTANCE[home]


def _execute_in_worker(run_id: str, env: Mapping[str, str], cwd: str) -> str:
    """In a run worker (a fork of the fork server): take the submitting process's environment
    and folder, then execute ``run_id`` from its code origin on the instance of
    ``DAGSTER_HOME``, recording this worker's pid on the run."""
    from orchestration.dagster_internals import recon_job_from_origin

    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    instance = _worker_instance()
    run = instance.get_run_by_id(run_id)
    if run is None:
        return "missing"
    instance.add_run_tags(
        run_id, {WORKER_PID_TAG: str(os.getpid()), WORKER_HOST_TAG: socket.gethostname()}
    )
    job = recon_job_from_origin(run.job_code_origin)  # type: ignore[arg-type]
    _execute_here(job, run_id, instance)
    return "done"


def _crash_message(exc: BaseException) -> str:
    return f"the run worker process failed before the run ended: {type(exc).__name__}: {exc}"

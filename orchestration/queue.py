"""``lensline run`` as a client of the Dagster instance's run queue.

Every run ``lensline run`` starts is created in the instance and *submitted* to its run
coordinator (``instance.submit_run``): it shows QUEUED in the UI and is admitted by Dagster's own
queue rules (asset pools, ``max_concurrent_runs``, tag limits: ``orchestration.pools``), the same
rules that hold sensor, schedule, automation and UI runs. Who then dequeues it:

- a ``dagster-daemon`` of this instance is alive (production, or ``dagster dev`` beside the
  command): the daemon does, and launches it with the instance's run launcher (a run worker
  process; its steps on the configured executor, e.g. Celery workers). ``lensline run`` waits.
- no daemon (the embedded default: nothing to start by hand): ``lensline run`` drives the queue
  itself with Dagster's queue daemon logic (``QueuedRunCoordinatorDaemon.run_iteration``) and
  launches what it admits on :class:`orchestration.launcher.ProcessRunLauncher`: warm run-worker
  processes of its own (``LENSLINE_RUN_WORKERS``, default the CPU count), each executing one
  run at a time on the run's executor, so runs the queue admits side by side (ingestion of
  different videos) run side by side. They die with ``lensline run``; the next one marks their runs failed. A run
  waited for alone (a graph stage, one video) executes in ``lensline run``'s own process: no
  worker to start for nothing to run beside it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field

import dagster as dg

from lake.pools import ensure_pool_slots
from orchestration.launcher import (
    _INLINE,
    _JOBS,
    ATTRIBUTE,
    DONE,
    LOCATION,
    MODULE,
    REPO_ROOT,
    REPOSITORY,
    ProcessRunLauncher,
    _crash_message,
    _execute_here,
    keep_connections,
    run_workers,
)

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # runs' console: warnings up
DAEMON_FRESH_S = 90.0  # a queue daemon heartbeat newer than this: the daemon dequeues


def daemon_alive(instance: dg.DagsterInstance, *, within_s: float = DAEMON_FRESH_S) -> bool:
    """A ``dagster-daemon`` of this instance ran its queue coordinator within ``within_s``."""
    try:
        beats = instance.get_daemon_heartbeats()
    except Exception:  # noqa: BLE001 (a storage without heartbeats: no daemon to rely on)
        return False
    beat = beats.get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < within_s


def is_queued_instance(instance: dg.DagsterInstance) -> bool:
    """The instance has a run queue and storage other processes can see (not ephemeral)."""
    return not instance.is_ephemeral and isinstance(
        instance.run_coordinator, dg.QueuedRunCoordinator
    )


def _origins(job_name: str):
    """(remote origin, python origin) of ``job_name`` in the ``lensline`` code location, as
    ``dagster dev``/the daemon load it from workspace.yaml: the UI can re-execute the run and a
    daemon's run launcher can find its code."""
    from orchestration.dagster_internals import (
        LoadableTargetOrigin,
        ManagedGrpcPythonEnvCodeLocationOrigin,
        ModuleCodePointer,
        ReconstructableRepository,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )

    target = LoadableTargetOrigin(
        executable_path=sys.executable,
        module_name=MODULE,
        attribute=ATTRIBUTE,
        working_directory=str(REPO_ROOT),
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, location_name=LOCATION)
    remote = RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY), job_name)
    pointer = ModuleCodePointer(MODULE, ATTRIBUTE, str(REPO_ROOT))
    recon = ReconstructableRepository(pointer, executable_path=sys.executable)
    return remote, recon.get_reconstructable_job(job_name)


def _is_code_location_defs(defs: dg.Definitions) -> bool:
    module = sys.modules.get(MODULE)
    return module is not None and getattr(module, ATTRIBUTE, None) is defs


@dataclass
class _Workspace:
    """What the queue daemon needs of a workspace: the instance (launching goes through our
    launcher, which needs no code server)."""

    instance: dg.DagsterInstance

    def create_request_context(self, source=None):
        return None


@dataclass
class QueueClient:
    """Submit runs to ``instance``'s queue and wait for them (module docstring)."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    workers: int = field(default_factory=run_workers)
    submitted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from orchestration.dagster_internals import ConfigurableClassData

        ref = self.instance.get_ref() if not self.instance.is_ephemeral else None
        launcher = ConfigurableClassData(
            "orchestration.launcher", "ProcessRunLauncher", f"workers: {self.workers}\n"
        )
        # the same instance (storage, queue, pools) with this process's run workers as its run
        # launcher; the stored dagster.yaml is not changed
        self._queued = is_queued_instance(self.instance)
        self._driver = (
            dg.DagsterInstance.from_ref(ref._replace(run_launcher_data=launcher))
            if self._queued and ref is not None
            else self.instance
        )
        self._reconstructable = _is_code_location_defs(self.defs)
        self._daemon = None
        self._daemon_checked, self._daemon_up = 0.0, False
        if self._queued:
            ensure_pool_slots(self.instance)
            for instance in {id(i): i for i in (self.instance, self._driver)}.values():
                keep_connections(instance)  # lensline run lives across its runs

    def close(self) -> None:
        for run_id in self.submitted:
            _JOBS.pop(run_id, None)
            _INLINE.discard(run_id)
        if self._daemon is not None:
            self._daemon.__exit__(None, None, None)
            self._daemon = None
        if self._driver is not self.instance:
            self._driver.run_launcher.dispose()
            self._driver.dispose()

    def cancel_queued(self) -> list[str]:
        """Cancel this client's runs that are still queued (e.g. the store went away)."""
        cancelled = []
        for run in self.instance.get_runs(
            filters=dg.RunsFilter(run_ids=self.submitted, statuses=[dg.DagsterRunStatus.QUEUED])
        ):
            if self.instance.run_coordinator.cancel_run(run.run_id):
                cancelled.append(run.run_id)
        return cancelled

    def __enter__(self) -> QueueClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(
        self,
        job_def: dg.JobDefinition,
        *,
        tags: Mapping[str, str],
        run_config: Mapping[str, object] | None = None,
        asset_selection: Iterable[dg.AssetKey] | None = None,
        partition_key: str | None = None,
        partition_range: tuple[str, str] | None = None,
    ) -> str:
        """Create the run of ``job_def`` (subset to ``asset_selection``, for one partition or
        an inclusive range of them) and queue it."""
        from orchestration.batches import RANGE_END_TAG, RANGE_START_TAG
        from orchestration.dagster_internals import InMemoryJob, create_execution_plan

        if not self._reconstructable:  # other definitions execute here, step after step
            job_def = job_def.with_executor_def(dg.in_process_executor)
        selection = frozenset(asset_selection) if asset_selection is not None else None
        run_tags = {**job_def.tags, **tags}
        if partition_key is not None:
            run_tags["dagster/partition"] = partition_key
        if partition_range is not None:
            run_tags[RANGE_START_TAG], run_tags[RANGE_END_TAG] = partition_range
        subset = job_def.get_subset(asset_selection=selection) if selection else job_def
        config = dict(run_config or {})
        plan = create_execution_plan(
            subset, run_config=config, instance_ref=self.instance.get_ref(), tags=run_tags
        )
        remote_origin, recon = _origins(job_def.name)
        run = self.instance.create_run_for_job(
            job_def=subset,
            execution_plan=plan,
            run_config=config,
            tags=run_tags,
            asset_selection=selection,
            remote_job_origin=remote_origin,
            job_code_origin=recon.get_python_origin(),
        )
        executes = recon if self._reconstructable else InMemoryJob(job_def)
        _JOBS[run.run_id] = executes
        self.submitted.append(run.run_id)
        if self._queued:
            self.instance.submit_run(run.run_id, None)  # type: ignore[arg-type]
        return run.run_id

    def wait(
        self,
        run_ids: list[str],
        *,
        on_done: Callable[[dg.DagsterRun], None] | None = None,
        poll_s: float = 0.1,
    ) -> dict[str, dg.DagsterRun]:
        """Drive the queue (when no daemon does) until every run in ``run_ids`` ended; calls
        ``on_done`` for each as it ends. Returns the ended runs by id."""

        ended: dict[str, dg.DagsterRun] = {}
        if not self._queued:  # an ephemeral or queue-less instance: one after another, here
            for run_id in run_ids:
                job = _JOBS[run_id]
                _execute_here(job, run_id, self.instance)
                run = self.instance.get_run_by_id(run_id)
                assert run is not None
                ended[run_id] = run
                if on_done:
                    on_done(run)
            return ended
        if len(run_ids) == 1:
            _INLINE.update(run_ids)
        futures = self._futures()
        admit_at, seen_done = 0.0, -1
        while len(ended) < len(run_ids):
            now = time.monotonic()
            done_now = sum(f.done() for f in futures.values())
            # admit when a worker freed up, else every 2 s (another client's run may have
            # ended): each pass reads the whole queue, so not at every poll
            if done_now != seen_done or now >= admit_at:
                self._admit()
                seen_done, admit_at = done_now, now + 2.0
            self._fail_crashed_workers(run_ids, ended)
            records = self.instance.get_runs(
                filters=dg.RunsFilter(run_ids=[r for r in run_ids if r not in ended])
            )
            for run in records:
                if run.status in DONE:
                    ended[run.run_id] = run
                    if on_done:
                        on_done(run)
            if len(ended) < len(run_ids):
                running = [f for f in futures.values() if not f.done()]
                if running:  # wake as soon as a run worker finishes
                    wait_futures(running, timeout=max(poll_s, 0.25), return_when=FIRST_COMPLETED)
                else:
                    time.sleep(poll_s)
        return ended

    def warm(self, runs: int) -> None:
        """About to submit ``runs`` runs that may run side by side: start this process's run
        workers for them now, unless a daemon launches them (or they run here)."""
        launcher = self._driver.run_launcher
        if (
            runs > 1
            and self._queued
            and self._reconstructable
            and isinstance(launcher, ProcessRunLauncher)
            and not daemon_alive(self.instance)
        ):
            launcher.warm(runs)

    def pump(self) -> None:
        """One admission pass now when a run worker is idle: runs start executing while more
        are still being submitted (each submission costs Dagster ~0.25 s of event writes)."""
        if self._queued and sum(not f.done() for f in self._futures().values()) < self.workers:
            self._admit()

    def _futures(self) -> dict[str, Future]:
        return getattr(self._driver.run_launcher, "futures", {})

    def _admit(self) -> None:
        """Dagster's queue daemon logic, one pass, unless a daemon of the instance does it."""
        from orchestration.dagster_internals import QueuedRunCoordinatorDaemon

        now = time.monotonic()
        if now - self._daemon_checked > 5.0:  # a daemon started or stopped meanwhile
            self._daemon_up, self._daemon_checked = daemon_alive(self.instance), now
        if self._daemon_up:
            return
        if self._daemon is None:
            self._daemon = QueuedRunCoordinatorDaemon(interval_seconds=1).__enter__()
        for _ in self._daemon.run_iteration(_Workspace(self._driver)):  # type: ignore[arg-type]
            pass

    def _fail_crashed_workers(self, run_ids: list[str], ended: Mapping[str, object]) -> None:
        """A run whose worker raised or died (the pool broken) is marked failed with why."""
        launcher = self._driver.run_launcher
        futures = getattr(launcher, "futures", {})
        for run_id in run_ids:
            future = futures.get(run_id)
            if run_id in ended or future is None or not future.done():
                continue
            exc = future.exception()
            run = self.instance.get_run_by_id(run_id)
            if exc is not None and run is not None and run.status not in DONE:
                self.instance.report_run_failed(run, message=_crash_message(exc))


def host_tags() -> dict[str, str]:
    """The tags that let the next ``lensline run`` tell a dead client's runs (``fail_dead_runs``)."""
    return {"lensline/pid": str(os.getpid()), "lensline/host": socket.gethostname()}

"""The one place Lensline reaches into Dagster's private API (``dagster._``), and why.

``lensline run`` is a client of the instance's run queue (``orchestration.queue``) that, with no
daemon alive, admits and launches the queued runs itself (``orchestration.launcher``). Dagster
has no public API for four things that takes:

==========================  ======================================================  =============
name                        what Lensline does with it                              who else does
==========================  ======================================================  =============
RunLauncher,                ``ProcessRunLauncher``: a run launcher is a subclass    dagster-k8s,
ConfigurableClass,          of both, named in ``dagster.yaml`` by its class data    dagster-docker,
ConfigurableClassData                                                               dagster-celery
QueuedRunCoordinatorDaemon  one admission pass of the queue (pools, tag limits,     dagster-daemon
                            ``max_concurrent_runs``) when no daemon is alive
ModuleCodePointer,          the origins a run created outside a code server         dagster's own
LoadableTargetOrigin,       records, so the UI can re-execute it and a daemon's     run creation
ReconstructableRepository,  launcher can find its code (``queue._origins``)
ManagedGrpcPythonEnv...,
RemoteJobOrigin,
RemoteRepositoryOrigin
ReconstructableJob,         build the execution plan of a run created here, and     dagster's run
InMemoryJob,                execute an existing run record (the public              worker
create_execution_plan,      ``execute_job`` creates a new run instead)              (``dagster api
execute_run,                                                                        execute_run``)
recon_job_from_origin
==========================  ======================================================  =============

Names resolve on first use (PEP 562), so importing this module imports nothing of Dagster's.
The versions are pinned (requirements.lock); ``tests/orchestration/test_dagster_internals.py``
resolves every name, so a Dagster upgrade that moves one fails there first, naming it.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> "module:attribute"
INTERNALS: dict[str, str] = {
    "RunLauncher": "dagster._core.launcher:RunLauncher",
    "ConfigurableClass": "dagster._serdes:ConfigurableClass",
    "ConfigurableClassData": "dagster._serdes:ConfigurableClassData",
    "QueuedRunCoordinatorDaemon": (
        "dagster._daemon.run_coordinator.queued_run_coordinator_daemon:QueuedRunCoordinatorDaemon"
    ),
    "ModuleCodePointer": "dagster._core.code_pointer:ModuleCodePointer",
    "LoadableTargetOrigin": "dagster._core.types.loadable_target_origin:LoadableTargetOrigin",
    "ReconstructableRepository": (
        "dagster._core.definitions.reconstruct:ReconstructableRepository"
    ),
    "ManagedGrpcPythonEnvCodeLocationOrigin": (
        "dagster._core.remote_origin:ManagedGrpcPythonEnvCodeLocationOrigin"
    ),
    "RemoteJobOrigin": "dagster._core.remote_origin:RemoteJobOrigin",
    "RemoteRepositoryOrigin": "dagster._core.remote_origin:RemoteRepositoryOrigin",
    "ReconstructableJob": "dagster._core.definitions.reconstruct:ReconstructableJob",
    "InMemoryJob": "dagster._core.definitions.job_base:InMemoryJob",
    "create_execution_plan": "dagster._core.execution.api:create_execution_plan",
    "execute_run": "dagster._core.execution.api:execute_run",
    "recon_job_from_origin": "dagster._utils.hosted_user_process:recon_job_from_origin",
}
# imported by the run workers' fork server so that a worker's first instance opens warm
SQLITE_STORAGE_MODULE = "dagster._core.storage.sqlite_storage"

__all__ = [*INTERNALS, "SQLITE_STORAGE_MODULE", "INTERNALS", "resolve"]


def resolve(name: str) -> Any:
    """The Dagster object behind ``name`` (a key of :data:`INTERNALS`)."""
    try:
        module, attribute = INTERNALS[name].split(":")
    except KeyError:
        raise AttributeError(f"{__name__} has no attribute {name!r}") from None
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        import dagster

        raise ImportError(
            f"Dagster {dagster.__version__} has no {INTERNALS[name]} ({exc}); Lensline uses it "
            f"as {name} (orchestration/dagster_internals.py says why): pin the Dagster of "
            "requirements.lock or port that use"
        ) from exc


def __getattr__(name: str) -> Any:
    value = resolve(name)
    globals()[name] = value  # resolved once
    return value

"""The Celery app Lensline's workers start with: dagster-celery's own app, pre-loaded.

    dagster-celery worker start -A orchestration.celery_app -y celery.yaml -- \\
        --prefetch-multiplier=1 -O fair

The tasks are dagster-celery's (``execute_plan``, ``execute_job``, ``resume_job``), registered
on dagster-celery's app exactly as ``-A dagster_celery.app`` does. What this module adds: the
worker's main process imports the code location (``orchestration.definitions``, its
repository built), the modules the ingestion steps import when they run, and the Postgres
storage before it forks its pool processes, so a pool process's first step does not pay those
imports (measured on the 2-core VM: the first step's dispatch 1.0 s -> 0.3 s, and the drift step
0.6 s of scipy imports). Nothing is connected before the fork: each task
opens its instance from the run's instance ref, as dagster-celery does.
"""

from __future__ import annotations

import contextlib
import logging

from dagster_celery.app import app, execute_job, execute_plan, resume_job

__all__ = ["app", "execute_job", "execute_plan", "resume_job"]

_log = logging.getLogger(__name__)
# imported inside the ingestion steps (lazily, so that `lensline` commands stay quick)
STEP_IMPORTS = ["data_quality.drift", "data_quality.video", "data_quality.presence"]


def preload() -> None:
    """Import the code location and the storage modules a step's task needs (no connection)."""
    import importlib

    # production storage: imported, never connected (an embedded instance has no need of it)
    with contextlib.suppress(ImportError):
        import dagster_postgres  # noqa: F401

    from orchestration.definitions import defs
    from orchestration.launcher import PRELOAD

    for module in [*PRELOAD, *STEP_IMPORTS]:
        importlib.import_module(module)
    defs.get_repository_def()  # the job graph the tasks' execution plans are built from


try:
    preload()
except Exception as exc:  # the worker still serves tasks; each then loads what it needs
    _log.warning("lensline celery app: could not preload the code location: %s", exc)

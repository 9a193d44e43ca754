"""Where a run's steps execute, chosen by configuration: ``LENSLINE_EXECUTOR``.

``lensline_executor`` is one Dagster executor that, when a run starts (never at import),
becomes Dagster's own executor of the chosen kind:

==============  ==========================================================================
in_process      every step in the run's process (the default; one machine, least overhead)
multiprocess    one child process per step, ``LENSLINE_MAX_CONCURRENT`` at a time
celery          each step is a task on a Celery queue (dagster-celery), executed by whichever
                ``dagster-celery worker`` takes it; broker and result backend from
                ``LENSLINE_CELERY_BROKER`` / ``LENSLINE_CELERY_BACKEND`` (e.g. Redis)
==============  ==========================================================================

Celery: the run's process polls its steps' results every ``LENSLINE_CELERY_POLL_S`` seconds
(default 0.1; dagster-celery's own loop sleeps ``core_execution_loop.TICK_SECONDS`` = 1 s, which
costs a run about 0.5 s per step and 1 s at its end: ``benchmarks/scale.py``). A poll is one
result-backend read per step in flight. Workers start with ``-A orchestration.celery_app``
(dagster-celery's app with the code location imported before the pool forks).

Run config (``execution: config: {kind: ..., broker: ...}``) overrides the environment for one
run. Assets never see which kind ran them. ``lensline run`` executes in process whatever is set
(it is the one-machine front-end); runs launched by sensors, schedules, the automation sensor or
the UI use this executor. The multiprocess and celery kinds need a reconstructable job and an
instance whose storage other processes can reach (SQLite files on one machine, Postgres beyond).

Wiring (orchestration/definitions.py)::

    from orchestration.executors import lensline_executor
    defs = dg.Definitions(..., executor=lensline_executor)

Kubernetes uses ``dagster_k8s.k8s_job_executor`` instead, set in the Helm deployment's run
config (deploy/k8s/values.yaml); that is configuration too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import dagster as dg

EXECUTOR_ENV = "LENSLINE_EXECUTOR"
KINDS = ("in_process", "multiprocess", "celery")
DEFAULT_POLL_S = 0.1


class ExecutorConfigError(ValueError):
    """An unknown executor kind or a celery executor without a broker."""


def _setting(config: Mapping[str, object], key: str, env: str) -> str | None:
    value = config.get(key)
    return str(value) if value not in (None, "") else os.environ.get(env) or None


def choose(config: Mapping[str, object]) -> tuple[str, dict]:
    """The executor kind and its settings from run config, else the environment.

    Returns ``(kind, settings)``; raises ``ExecutorConfigError`` for an unknown kind or a
    celery kind with no broker.
    """
    kind = _setting(config, "kind", EXECUTOR_ENV) or "in_process"
    if kind not in KINDS:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}={kind!r} is not an executor; use one of {', '.join(KINDS)}"
        )
    settings: dict = {}
    if kind == "multiprocess":
        raw = _setting(config, "max_concurrent", "LENSLINE_MAX_CONCURRENT")
        settings["max_concurrent"] = int(raw) if raw else None
    elif kind == "celery":
        settings["broker"] = _setting(config, "broker", "LENSLINE_CELERY_BROKER")
        settings["backend"] = _setting(config, "backend", "LENSLINE_CELERY_BACKEND") or "rpc://"
        poll = _setting(config, "poll_seconds", "LENSLINE_CELERY_POLL_S") or DEFAULT_POLL_S
        try:
            settings["poll_seconds"] = float(poll)
        except ValueError:
            settings["poll_seconds"] = -1.0
        if not 0 < settings["poll_seconds"] <= 10:
            raise ExecutorConfigError(
                f"LENSLINE_CELERY_POLL_S={poll!r}: the celery poll interval is seconds in (0, 10]"
            )
        if not settings["broker"]:
            raise ExecutorConfigError(
                "the celery executor needs a broker: set LENSLINE_CELERY_BROKER "
                "(e.g. redis://127.0.0.1:6379/0)"
            )
    return kind, settings


def _requirements(config: Mapping[str, object]) -> Sequence[dg.ExecutorRequirement]:
    """Cross-process kinds need a reconstructable job and a persistent instance (checked at
    run start, with Dagster's own messages)."""
    try:
        kind = choose(dict(config))[0]
    except ExecutorConfigError:
        kind = "in_process"  # the executor itself raises the clear error
    return [] if kind == "in_process" else dg.multiple_process_executor_requirements()


@dg.executor(
    name="lensline",
    requirements=_requirements,
    config_schema={
        "kind": dg.Field(
            dg.Noneable(dg.StringSource),
            default_value=None,
            description=f"in_process | multiprocess | celery; default ${EXECUTOR_ENV} or in_process",
        ),
        "max_concurrent": dg.Field(
            dg.Noneable(dg.IntSource),
            default_value=None,
            description="multiprocess: processes at a time; default $LENSLINE_MAX_CONCURRENT or "
            "the CPU count",
        ),
        "broker": dg.Field(
            dg.Noneable(dg.StringSource),
            default_value=None,
            description="celery: broker URL; default $LENSLINE_CELERY_BROKER",
        ),
        "backend": dg.Field(
            dg.Noneable(dg.StringSource),
            default_value=None,
            description="celery: result backend URL; default $LENSLINE_CELERY_BACKEND or rpc://",
        ),
        "poll_seconds": dg.Field(
            dg.Noneable(dg.StringSource),
            default_value=None,
            description="celery: seconds between polls of the steps' results; default "
            f"$LENSLINE_CELERY_POLL_S or {DEFAULT_POLL_S}",
        ),
    },
)
def lensline_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's in-process, multiprocess or Celery executor, as ``LENSLINE_EXECUTOR`` says."""
    kind, settings = choose(dict(init_context.executor_config))
    if kind == "in_process":
        return _create(dg.in_process_executor, init_context, {"retries": {"enabled": {}}})
    if kind == "multiprocess":
        config = {"retries": {"enabled": {}}, "max_concurrent": settings["max_concurrent"]}
        return _create(dg.multiprocess_executor, init_context, config)
    from dagster_celery import celery_executor, core_execution_loop

    # dagster-celery's loop reads this module constant on every tick (one value per process;
    # a run worker runs one run at a time)
    core_execution_loop.TICK_SECONDS = settings["poll_seconds"]
    config = {
        "broker": settings["broker"],
        "backend": settings["backend"],
        "retries": {"disabled": {}},
    }
    return _create(celery_executor, init_context, config)


def _create(
    executor_def: dg.ExecutorDefinition, init_context: dg.InitExecutorContext, config: dict
) -> dg.Executor:
    """Dagster's own executor ``executor_def`` with ``config``, through its public creation
    function (the same path as naming it in a job)."""
    context = dg.InitExecutorContext(
        job=init_context.job,
        executor_def=executor_def,
        executor_config=config,
        instance=init_context.instance,
    )
    return executor_def.executor_creation_fn(context)  # type: ignore[misc]

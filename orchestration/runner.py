"""Headless runs for cron/CI: register new videos, ingest what is new or changed, then refresh
the unpartitioned part of the graph. Every run goes through the Dagster instance, so it shows in
the UI exactly like a sensor-launched run.

The ingestion stage is ``orchestration.ingest_stage``; the instance a home gets and the runs a
killed ``lensline run`` leaves are ``orchestration.instance_home``.

The unpartitioned part runs in two stages: first ``labels`` (and ``label_reviews``) when the label
files, reviews or videos changed since the latest settled labels run; then everything else when
the tables it reads (frames, videos, labels, label classes) changed since the latest settled run
of that stage. A label file that is rejected changes no table, so it retrains nothing.
Every run is submitted to the instance's run queue (``orchestration.queue``): it is admitted by
the lake's concurrency pools (``lake.pools``) like any sensor or UI run, and executed by the
instance's daemon when one runs, else by this process's own run workers (ingestion of several
videos side by side). The caller holds the home's writer lock (``orchestration.lock``) while this
runs; runs that a killed ``lensline run`` left STARTED are then marked failed
(``fail_dead_runs``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

import dagster as dg

from lake.landing import LandingProblems, discover_videos, label_files
from lake.partitions import videos_partitions
from lake.storage import LensStorage
from orchestration.ingest_stage import ingest_pending
from orchestration.instance_home import RUNNER_TRIGGER, fail_dead_runs
from orchestration.queue import QUIET, QueueClient
from orchestration.run_report import (
    RunSummary,
    collect,
    label_rejections,
)

INGEST_KEYS = {dg.AssetKey("raw_video"), dg.AssetKey("frames")}
LABEL_KEYS = {dg.AssetKey("label_reviews"), dg.AssetKey("labels")}


class SelectionError(ValueError):
    """A ``--select`` string that is malformed or matches no asset (says which exist)."""


def resolve_selection(defs: dg.Definitions, select: str | None) -> set[dg.AssetKey]:
    """The asset keys ``select`` names (all without it); ``SelectionError`` if none or malformed."""
    graph = defs.resolve_asset_graph()
    everything = set(graph.get_all_asset_keys())
    if not select:
        return everything
    try:
        keys = dg.AssetSelection.from_string(select).resolve(graph)
    except dg.DagsterError as exc:
        reason = str(exc).strip().splitlines()[0]
    else:
        if keys:
            return set(keys)
        reason = "it matches no asset"
    names = ", ".join(sorted(k.to_user_string() for k in everything))
    groups = ", ".join(sorted({graph.get(k).group_name or "default" for k in everything}))
    raise SelectionError(
        f"--select {select!r}: {reason}. Asset keys: {names}. Groups: {groups} "
        "(e.g. 'key:labels+', 'group:ingest')"
    )


def run_pending(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    select: str | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    force: bool = False,
) -> RunSummary:
    """Materialise what is missing or stale, optionally limited to a Dagster ``select`` string.

    Videos are ingested when they are not complete in the lake (``landing.stale_videos``), or
    all of them with ``force``. The unpartitioned part of the graph runs in two stages (module
    docstring) when its inputs changed since the latest settled run of that stage, when an
    asset was never materialised, or with ``force``. ``run_config`` configures those runs (e.g.
    epochs). Raises ``SelectionError`` for a bad ``select``.

    Runs may execute in run-worker processes started from a fork server (``orchestration.queue``),
    which imports the calling script's main module: a script that calls this needs Python's
    ``if __name__ == "__main__":`` guard, as with any ``multiprocessing`` code.
    """
    with QueueClient(defs, instance) as queue:
        return _run_pending(
            queue, defs, instance, select=select, on_progress=on_progress, tags=tags,
            run_config=run_config, force=force,
        )  # fmt: skip


def _run_pending(
    queue: QueueClient,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    select: str | None,
    on_progress: Callable[[str, int, int], None] | None,
    tags: dict[str, str] | None,
    run_config: dict | None,
    force: bool,
) -> RunSummary:
    storage: LensStorage = defs.resources["storage"]  # type: ignore[assignment]
    graph = defs.resolve_asset_graph()
    selected = resolve_selection(defs, select)
    summary = RunSummary()
    run_tags = {
        "lensline/trigger": RUNNER_TRIGGER,
        "lensline/pid": str(os.getpid()),
        "lensline/host": socket.gethostname(),
        **(tags or {}),
    }
    summary.recovered_runs = fail_dead_runs(instance)

    problems = LandingProblems()
    videos = discover_videos(storage, problems=problems)
    summary.landing_problems = problems.messages()
    known = set(instance.get_dynamic_partitions(videos_partitions.name))
    summary.registered = sorted(set(videos) - known)
    if summary.registered:
        instance.add_dynamic_partitions(videos_partitions.name, summary.registered)

    if selected & INGEST_KEYS:
        ingest_pending(
            queue, storage, instance, summary, videos, job=defs.resolve_job_def("ingest_video"),
            run_tags=run_tags, force=force, on_progress=on_progress,
        )  # fmt: skip
        if summary.stopped_reason:
            return summary

    downstream = sorted(
        (
            k
            for k in selected - INGEST_KEYS
            if not graph.get(k).is_partitioned and graph.get(k).is_materializable
        ),
        key=lambda k: k.to_user_string(),
    )
    if not downstream:
        return summary
    if not label_files(storage):
        summary.stopped_reason = (
            f"no label files in {storage.uri('landing', 'labels')}: videos are ingested; add labels "
            "(CSV: video, frame_index, label[, annotator]) and run again"
        )
        return summary
    from orchestration.automation import CURSOR_KEY, has_cursor, tick
    from orchestration.sensors import drift_tags, pending_reviews

    if not has_cursor(instance):
        tick(defs, instance, [k for k in downstream if k not in LABEL_KEYS] or downstream)

    stages = [
        ("labels", [k for k in downstream if k in LABEL_KEYS]),
        ("graph", [k for k in downstream if k not in LABEL_KEYS]),
    ]
    reviews = pending_reviews(defs.resources["fiftyone"])  # type: ignore[arg-type]
    cursor_requested: Mapping[str, str] | None = None
    for stage, keys in stages:
        if not keys:
            continue
        if stage == "graph" and _no_valid_labels(storage):
            summary.stopped_reason = (
                f"no valid labels yet in {storage.uri('landing', 'labels')}: fix the rejected "
                "label file(s) above and run again"
            )
            break
        fingerprint = (
            labels_fingerprint(storage, reviews, keys)
            if stage == "labels"
            else inputs_fingerprint(storage, keys)
        )
        # optional outputs (tensorrt_engine without TensorRT) may legitimately never exist
        never = [
            k
            for k in keys
            if instance.get_latest_materialization_event(k) is None
            and not defs.resolve_assets_def(k).specs_by_key[k].skippable
        ]
        reason = "forced" if force else "never materialised" if never else "inputs changed"
        if stage == "graph" and not (force or never):
            # the same declarations as the automation sensor (orchestration.automation): run
            # what an upstream *data version* change requests, nothing when nothing changed
            cursor_before = instance.run_storage.get_cursor_values({CURSOR_KEY})
            requested = tick(defs, instance, keys)
            # Dagster's eager condition ignores an upstream update made by a run that also
            # targeted the downstream asset, so a graph run that died or crashed halfway would
            # never be requested again: its unfinished selection is resumed here
            unfinished = _unfinished_graph_keys(instance)
            resumed = [k for k in keys if k in unfinished or k in requested]
            if not resumed:
                continue
            keys = resumed
            reason = (
                "upstream data changed (on_new_data)"
                if set(resumed) <= set(requested)
                else "resumed: the previous graph run did not finish"
            )
            # the request is durable only once its run ends: until then the stored cursor is the
            # one before this tick, so a run killed midway is requested again by the next one
            cursor_requested = instance.run_storage.get_cursor_values({CURSOR_KEY})
            instance.run_storage.set_cursor_values(cursor_before)
        elif not (force or never or fingerprint not in _latest_settled(instance, stage)):
            if stage == "labels":
                summary.rejected_labels = label_rejections(instance)
            continue
        if on_progress:
            on_progress(f"{stage}: " + ", ".join(k.to_user_string() for k in keys), 0, 1)
        run_id = queue.submit(
            defs.resolve_implicit_global_asset_job_def(),
            asset_selection=keys,
            run_config={**QUIET, **_for_ops(run_config, keys)},
            tags={
                **run_tags,
                **(drift_tags(storage) if stage == "graph" else {}),
                "lensline/reason": reason,
                "lensline/stage": stage,
                "lensline/inputs": fingerprint,
            },
        )
        queue.wait([run_id])
        if stage == "graph":
            if cursor_requested is not None:
                instance.run_storage.set_cursor_values(cursor_requested)
            tick(defs, instance, keys)  # this run's own updates are handled, not re-requested
        summary.downstream += [k.to_user_string() for k in keys]
        failures = collect(instance, run_id, summary)
        if stage == "labels":
            summary.rejected_labels = label_rejections(instance)
        if failures:
            summary.downstream_ok = False
            break  # later stages would read what this one failed to write
        # settled: a run on these inputs finished with no crashed step (a losing challenger
        # stopped by the blocking promotion gate is settled too: same inputs, same model)
        settled = {"lensline/settled": "true"}
        if (
            stage == "labels"
        ):  # importing reviews changes what this stage reads: that is settled too
            after = labels_fingerprint(storage, pending_reviews(defs.resources["fiftyone"]), keys)  # type: ignore[arg-type]
            settled["lensline/inputs_after"] = after
        instance.add_run_tags(run_id, settled)
    if summary.downstream_ok and not summary.downstream:
        summary.stopped_reason = (
            "downstream assets are up to date with the frames, labels and reviews"
        )
    if on_progress:
        on_progress("done", 1, 1)
    return summary


def _unfinished_graph_keys(instance: dg.DagsterInstance) -> set[dg.AssetKey]:
    """The selection of the latest graph-stage run of ``lensline run`` if it failed without
    settling (killed, marked failed by ``fail_dead_runs``, or a step crashed)."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={"lensline/stage": "graph", "lensline/trigger": RUNNER_TRIGGER}),
        limit=1,
    )
    if not runs or runs[0].status != dg.DagsterRunStatus.FAILURE:
        return set()
    if runs[0].tags.get("lensline/settled") == "true":
        return set()
    return set(runs[0].asset_selection or ())


def _no_valid_labels(storage: LensStorage) -> bool:
    """The labels table is missing or empty: nothing downstream can be built from it."""
    table = storage.read_table("labels", columns=["video_id"])
    return table is None or table.is_empty()


def _latest_settled(instance: dg.DagsterInstance, stage: str) -> set[str]:
    """The input fingerprints of the latest settled run of ``stage`` (only the latest counts):
    what it read and, for ``labels``, what its own writes left (``lensline/inputs_after``)."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={"lensline/stage": stage, "lensline/settled": "true"}),
        limit=1,
    )
    tags = runs[0].tags if runs else {}
    return {tags[k] for k in ("lensline/inputs", "lensline/inputs_after") if k in tags}


def _for_ops(run_config: dict | None, keys: list[dg.AssetKey]) -> dict:
    """``run_config`` without the op config of assets this stage does not materialise (Dagster
    refuses config for ops outside the run)."""
    config = dict(run_config or {})
    if "ops" in config:
        names = {k.to_python_identifier() for k in keys}
        config["ops"] = {op: c for op, c in config["ops"].items() if op in names}
    return config


def _key_list(keys: list[dg.AssetKey]) -> str:
    return "selection=" + ",".join(k.to_user_string() for k in keys)


def labels_fingerprint(storage: LensStorage, pending_reviews: int, keys: list[dg.AssetKey]) -> str:
    """A digest of what ``labels`` reads from outside the lake: label files, reviews, videos."""
    parts = [
        _key_list(keys),
        f"pending_reviews={pending_reviews}",
        f"videos={storage.table_version('videos')}",
        f"label_reviews={storage.table_version('label_reviews')}",
    ]
    parts += [f"{f.key}:{f.size}:{f.mtime:.3f}" for f in label_files(storage)]
    return _digest(parts)


def inputs_fingerprint(storage: LensStorage, keys: list[dg.AssetKey] | None = None) -> str:
    """A digest of the tables the graph after ``labels`` reads (and of what it is asked to build)."""
    tables = ("frames", "videos", "labels", "label_classes", "label_reviews")
    parts = [_key_list(keys or []), *(f"{t}={storage.table_version(t)}" for t in tables)]
    return _digest(parts)


def _digest(parts: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

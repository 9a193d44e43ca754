"""Headless runs for cron/CI: register new videos, ingest what is new or changed, then refresh
the unpartitioned part of the graph. Every run goes through the Dagster instance, so it shows in
the UI exactly like a sensor-launched run."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl

from orchestration.landing import discover_videos, label_files, stale_videos
from orchestration.partitions import videos_partitions
from orchestration.storage import LensStorage, lensline_home

# the instance Lensline creates: no telemetry, and lake-writing runs (jobs.LAKE_WRITER) one at a time
INSTANCE_YAML = """telemetry:
  enabled: false
run_queue:
  tag_concurrency_limits:
    - key: "lensline/lake"
      value: "writer"
      limit: 1
"""
INGEST_KEYS = {dg.AssetKey("raw_video"), dg.AssetKey("frames")}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def prepare_instance_home(home: Path | None = None) -> Path:
    """Point ``DAGSTER_HOME`` at ``<LENSLINE_HOME>/dagster`` (SQLite) unless already set."""
    if os.environ.get("DAGSTER_HOME"):
        path = Path(os.environ["DAGSTER_HOME"])
    else:
        path = (home or lensline_home()) / "dagster"
        os.environ["DAGSTER_HOME"] = str(path)
    path.mkdir(parents=True, exist_ok=True)
    yaml = path / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text(INSTANCE_YAML)
    return path


@dataclass
class VideoOutcome:
    video_id: str
    status: str
    error: str | None = None


@dataclass
class RunSummary:
    registered: list[str] = field(default_factory=list)
    ingested: list[VideoOutcome] = field(default_factory=list)
    up_to_date: int = 0
    downstream: list[str] = field(default_factory=list)
    downstream_ok: bool = True
    stopped_reason: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    step_failures: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[VideoOutcome]:
        return [o for o in self.ingested if o.status != "ok"]


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

    The unpartitioned part of the graph runs when its inputs changed since its last successful
    run (ingested frames, label files, reviewers' corrections), when an asset was never
    materialised, or with ``force``. ``run_config`` configures that run (e.g. epochs).
    """
    storage: LensStorage = defs.resources["storage"]  # type: ignore[assignment]
    graph = defs.resolve_asset_graph()
    selected = (
        dg.AssetSelection.from_string(select).resolve(graph)
        if select
        else set(graph.get_all_asset_keys())
    )
    summary = RunSummary()
    run_tags = {"lensline/trigger": "lensline run", **(tags or {})}

    videos = discover_videos(storage)
    known = set(instance.get_dynamic_partitions(videos_partitions.name))
    summary.registered = sorted(set(videos) - known)
    if summary.registered:
        instance.add_dynamic_partitions(videos_partitions.name, summary.registered)

    if selected & INGEST_KEYS:
        todo = stale_videos(storage, videos)
        summary.up_to_date = len(videos) - len(todo)
        job = defs.resolve_job_def("ingest_video")
        for i, vid in enumerate(todo):
            if on_progress:
                on_progress(f"ingest {vid}", i, len(todo))
            job.execute_in_process(
                partition_key=vid,
                instance=instance,
                raise_on_error=False,
                run_config=QUIET,
                tags={**run_tags, "lensline/reason": "new or changed video"},
            )
            summary.ingested.append(_outcome(storage, vid))
        if on_progress:
            on_progress("ingest", len(todo), len(todo))

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
    from orchestration.sensors import pending_reviews

    fingerprint = inputs_fingerprint(storage, pending_reviews(defs.resources["fiftyone"]))  # type: ignore[arg-type]
    never = [k for k in downstream if instance.get_latest_materialization_event(k) is None]
    # settled: a run on these inputs finished with no crashed step (a losing challenger stopped
    # by the blocking promotion gate is settled too: retraining on the same inputs gives the same model)
    previous = instance.get_runs(
        filters=dg.RunsFilter(tags={"lensline/inputs": fingerprint, "lensline/settled": "true"}),
        limit=1,
    )
    if previous and not never and not force:
        summary.stopped_reason = (
            "downstream assets are up to date with the frames, labels and reviews"
        )
        return summary
    if on_progress:
        on_progress("train & evaluate: " + ", ".join(k.to_user_string() for k in downstream), 0, 1)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=downstream,
        instance=instance,
        raise_on_error=False,
        run_config={**QUIET, **(run_config or {})},
        tags={
            **run_tags,
            "lensline/reason": "forced"
            if force
            else "never materialised"
            if never
            else "inputs changed",
            "lensline/inputs": fingerprint,
        },
    )
    summary.downstream = [k.to_user_string() for k in downstream]
    summary.failed_checks = [
        f"{e.asset_key.to_user_string()}/{e.check_name}: {_check_text(e)}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is not None and "DagsterAssetCheckFailedError" in (error.cls_name or ""):
            continue  # a blocking check said no: reported above, not a crash
        summary.step_failures.append(
            f"{event.step_key}: {error.message.strip() if error else 'failed'}"
        )
    summary.downstream_ok = not summary.step_failures
    if summary.downstream_ok:
        instance.add_run_tags(result.run_id, {"lensline/settled": "true"})
    if on_progress:
        on_progress("done", 1, 1)
    return summary


def inputs_fingerprint(storage: LensStorage, pending_reviews: int = 0) -> str:
    """A digest of everything the unpartitioned graph reads from outside it."""
    import hashlib

    parts = [
        f"pending_reviews={pending_reviews}",
        f"frames={storage.table_version('frames')}",
        f"videos={storage.table_version('videos')}",
    ]
    parts += [f"{f.key}:{f.size}:{f.mtime:.3f}" for f in label_files(storage)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _check_text(evaluation) -> str:
    meta = evaluation.metadata or {}
    for key in ("reasons", "error", "rejected"):
        if key in meta:
            return str(meta[key].value)
    return "failed"


def _outcome(storage: LensStorage, video_id: str) -> VideoOutcome:
    table = storage.read_table("videos")
    row = table.filter(pl.col("video_id") == video_id) if table is not None else None
    if row is None or row.is_empty():
        return VideoOutcome(video_id, "failed", "ingestion run failed before recording the video")
    return VideoOutcome(video_id, row["status"][0], row["error"][0])

"""What ``lensline run`` reports: each video's outcome and each run's failed checks, crashed
steps and notes, read from the lake and from the runs' stored Dagster events."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from lake.storage import LensStorage

LABEL_CHECK = dg.AssetCheckKey(dg.AssetKey("labels"), "label_files_valid")


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
    check_notes: list[str] = field(default_factory=list)  # e.g. conditions the gate cannot protect
    step_failures: list[str] = field(default_factory=list)
    landing_problems: list[str] = field(default_factory=list)
    rejected_labels: dict[str, str] = field(default_factory=dict)
    recovered_runs: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[VideoOutcome]:
        return [o for o in self.ingested if o.status != "ok"]

    @property
    def exit_code(self) -> int:
        """0 ok, 1 a step failed, 3 input rejected (a bad label file or video)."""
        if not self.downstream_ok or any(o.status == "failed" for o in self.ingested):
            return 1
        if self.rejected or self.rejected_labels:
            return 3
        return 0


def collect(instance: dg.DagsterInstance, run_id: str, summary: RunSummary) -> list[str]:
    """Add a run's failed checks and crashed steps (from its stored events) to ``summary``;
    return the crashed steps (a run that failed with no step failing: the run's own error)."""
    evaluations, failures = [], []
    run_failure = None
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluations.append(event.event_specific_data)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            if error is not None and "DagsterAssetCheckFailedError" in (error.cls_name or ""):
                continue  # a blocking check said no: reported above, not a crash
            failures.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE:
            run_failure = event.message
    summary.failed_checks += [
        f"{e.asset_key.to_user_string()}/{e.check_name}: {_check_text(e)}"
        for e in evaluations
        if not e.passed
    ]
    summary.check_notes += [  # a passed gate that could not protect some conditions says so
        f"{e.asset_key.to_user_string()}/{e.check_name}: {line}"
        for e in evaluations
        if e.passed and "unprotected" in (e.metadata or {})
        for line in _lines(e.metadata["unprotected"].value)
    ]
    run = instance.get_run_by_id(run_id)
    if not failures and run is not None and run.status != dg.DagsterRunStatus.SUCCESS:
        if run.status == dg.DagsterRunStatus.FAILURE and any(not e.passed for e in evaluations):
            pass  # only a blocking check stopped it
        else:
            failures.append(f"run {run_id}: {run_failure or run.status.value}")
    summary.step_failures += failures
    return failures


def label_rejections(instance: dg.DagsterInstance) -> dict[str, str]:
    """``file -> problems`` from the latest ``labels/label_files_valid`` evaluation (empty if it passed).

    Reads the check's ``files`` metadata (a JSON map) when present, else the ``rejected_files``
    table of the ``labels`` materialisation of the same run.
    """
    record = instance.get_latest_asset_check_evaluation_record(LABEL_CHECK)
    if record is None or not isinstance(record.evaluation, dg.AssetCheckEvaluation):
        return {}  # never evaluated, or only planned by a run that died before evaluating it
    if record.evaluation.passed:
        return {}
    evaluation = record.evaluation
    meta = evaluation.metadata or {}
    if "files" in meta and isinstance(meta["files"].value, dict):
        return {str(k): str(v) for k, v in meta["files"].value.items()}
    event = instance.get_latest_materialization_event(dg.AssetKey("labels"))
    table = ""
    if event is not None and event.run_id == record.run_id and event.asset_materialization:
        value = event.asset_materialization.metadata.get("rejected_files")
        table = str(value.value) if value is not None else ""
    rows = _md_rows(table)
    count = meta["rejected"].value if "rejected" in meta else "?"
    return rows or {
        "(label files)": f"{count} file(s) rejected; see the labels run {record.run_id}"
    }


def _md_rows(table: str) -> dict[str, str]:
    """``file -> error`` from a two-column markdown table whose cells may span lines."""
    body = table.split("\n", 2)[2] if table.count("\n") >= 2 else ""
    rows: dict[str, str] = {}
    for chunk in ("\n" + body).split("\n| ")[1:]:
        name, _, error = chunk.partition(" | ")
        rows[name.strip()] = error.rstrip().removesuffix("|").rstrip()
    return rows


def _lines(value: object) -> list[str]:
    """A check's list-valued metadata (JSON) as lines."""
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _check_text(evaluation) -> str:
    meta = evaluation.metadata or {}
    for key in ("reasons", "error", "rejected", "skipped"):
        if key in meta:
            return str(meta[key].value)
    return getattr(evaluation, "description", None) or "failed"


def video_outcome(storage: LensStorage, video_id: str) -> VideoOutcome:
    table = storage.read_table("videos")
    row = table.filter(pl.col("video_id") == video_id) if table is not None else None
    if row is None or row.is_empty():
        return VideoOutcome(video_id, "failed", "ingestion run failed before recording the video")
    status = row["status"][0]
    if status == "ingesting":
        return VideoOutcome(video_id, "failed", "ingestion run failed before completing the video")
    return VideoOutcome(video_id, status, row["error"][0])

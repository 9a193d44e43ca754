"""Every Delta table of the lake, registered once: columns and types, keys, partitioning, writer.

One :class:`TableSchema` per table under ``lake/<name>``, in :data:`TABLES`. The README's "data
contract" lists the tables and the columns users rely on; this module is the full schema.
:meth:`lake.storage.LensStorage.write_table` checks every frame against it before anything is
written, so a missing column, an unknown one or a wrong type fails the step naming the table and
the column, and the table keeps its version. ``models`` and ``model_events`` are written by
:class:`training.registry.ModelRegistry` (its docstring says what a crash between its two commits
leaves); their schemas are the registry's own. ``videos`` and ``frames`` come from
:mod:`data_quality.contract`, which ingestion conforms its rows to.

Keys identify a row (``replace_where`` and joins use them). ``partition_by`` names a table's Delta
partition columns, passed when :meth:`lake.storage.LensStorage.write_table` creates the table:
``frames`` is partitioned by ``camera_id`` (docs/lake.md "Partitioning"); a table created before
keeps its layout until ``lake_maintenance`` rewrites it. The per-video writers (``replace_on``)
replace one video's rows in one commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from data_quality.contract import FRAMES, KEYS, VIDEOS, conform
from data_quality.fleet import HEARTBEAT_COLUMNS, LINE_DRIFT_COLUMNS, STATE_COLUMNS
from data_quality.label_merge import LABELS_SCHEMA
from training.registry import EVENT_SCHEMA, MODEL_SCHEMA

__all__ = ["KEYS", "TABLES", "TableSchema", "TableSchemaError", "table_schema"]

UTC_US = pl.Datetime("us", "UTC")


class TableSchemaError(ValueError):
    """A frame that does not match its table's schema, or a table with no schema."""


@dataclass(frozen=True)
class TableSchema:
    """One Delta table: its columns (in the order written), keys and who writes it.

    ``writer`` is the asset (or class) that owns the table; ``appenders`` are the other
    assets or tools that may write to it. ``replace_on`` is the column a writer's
    ``replace_where`` commit replaces rows by (one Dagster partition per value), if any.
    ``partition_by``: the Delta partition columns the table is created with (none: one folder).
    """

    name: str
    columns: Mapping[str, pl.DataType]
    keys: tuple[str, ...]
    writer: str
    description: str
    appenders: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    replace_on: str | None = None

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema(self.columns)

    def empty(self) -> pl.DataFrame:
        """A frame with no rows and exactly this schema."""
        return pl.DataFrame(schema=self.schema)

    def conform(self, rows: list[dict] | pl.DataFrame) -> pl.DataFrame:
        """Rows with exactly this schema: columns in order, cast, missing ones null."""
        return conform(rows, dict(self.columns))

    def problems(self, df: pl.DataFrame) -> list[str]:
        """What keeps ``df`` from being written to this table (empty when it matches).

        An all-null column (dtype ``Null``) matches any type.
        """
        out = [
            f"column {c!r} missing (expected {t})" for c, t in self.columns.items()
            if c not in df.columns
        ]  # fmt: skip
        out += [
            f"column {c!r} expected {self.columns[c]}, got {t}"
            for c, t in df.schema.items()
            if c in self.columns and t != self.columns[c] and t != pl.Null
        ]
        out += [f"column {c!r} (a {t}) is not in the schema" for c, t in df.schema.items()
                if c not in self.columns]  # fmt: skip
        return out

    def check(self, df: pl.DataFrame) -> pl.DataFrame:
        """``df`` if it matches (all-null columns cast to their type), else raise naming the columns."""
        problems = self.problems(df)
        if problems:
            raise TableSchemaError(
                f"refusing to write table {self.name!r}: {'; '.join(problems)} "
                f"(its schema: lake/tables.py)"
            )
        nulls = [c for c, t in df.schema.items() if t == pl.Null]
        return df.with_columns(pl.col(c).cast(self.columns[c]) for c in nulls) if nulls else df


_LABELS = dict(LABELS_SCHEMA)


def _issue(name: str) -> dict[str, pl.DataType]:
    """The two columns every issue type adds: its flag and its score (lower = more severe)."""
    return {f"is_{name}": pl.Boolean(), f"{name}_score": pl.Float64()}


_ALL = [
    TableSchema(
        "videos", VIDEOS, ("video_id",), "raw_video",
        "One row per landed video: probe, integrity and ingestion status.",
        replace_on="video_id",
    ),
    TableSchema(
        "frames", FRAMES, tuple(KEYS), "frames",
        "Sampled frames of ok videos: their JPEG, sha256, quality statistics, item presence.",
        partition_by=("camera_id",), replace_on="video_id",
    ),
    TableSchema(
        "label_reviews", _LABELS, (*KEYS, "annotator", "imported_at"), "label_reviews",
        "Reviewers' FiftyOne corrections, append-only (annotator ``review``).",
    ),
    TableSchema(
        "labels", _LABELS, (*KEYS, "annotator"), "labels",
        "Every annotator's label per frame, from the label files and the reviews.",
    ),
    TableSchema(
        "label_classes", {"class_index": pl.Int64(), "name": pl.String()}, ("class_index",),
        "labels", "The explicit class list; a new version only when it changes.",
    ),
    TableSchema(
        "frame_embeddings",
        {"video_id": pl.String(), "frame_index": pl.Int64(), "vote_label": pl.String(),
         "embedding": pl.List(pl.Float32()), "pred_probs": pl.List(pl.Float32()),
         "fold": pl.Int64(), "classes": pl.List(pl.String())},
        tuple(KEYS), "frame_embeddings",
        "Held-out (K-fold) class probabilities and embeddings of every labelled frame.",
    ),
    TableSchema(
        "label_consensus",
        {"video_id": pl.String(), "frame_index": pl.Int64(), "consensus_label": pl.String(),
         "consensus_quality": pl.Float64(), "annotator_agreement": pl.Float64(),
         "num_annotations": pl.Int64()},
        tuple(KEYS), "label_consensus", "One consensus label per frame and its quality.",
    ),
    TableSchema(
        "annotator_quality",
        {"annotator": pl.String(), "quality": pl.Float64(),
         "agreement_with_consensus": pl.Float64(), "num_labels": pl.Int64(),
         "worst_class": pl.String()},
        ("annotator",), "label_consensus", "Each annotator's quality against the consensus.",
    ),
    TableSchema(
        "label_issues",
        {"video_id": pl.String(), "frame_index": pl.Int64(), "given_label": pl.String(),
         "suggested_label": pl.String(), "label_quality": pl.Float64(),
         "is_label_issue": pl.Boolean(), "suggested_confidence": pl.Float64(),
         **_issue("outlier"), **_issue("near_duplicate"), "near_duplicate_set": pl.Int64(),
         **_issue("dark"), **_issue("overexposed"), **_issue("blurry")},
        tuple(KEYS), "label_issues",
        "Per frame, every issue type's flag and score (data_quality.label_issues.REGISTRY).",
    ),
    TableSchema(
        "dataset",
        {"video_id": pl.String(), "frame_index": pl.Int64(), "label": pl.String(),
         "split": pl.String(), "action": pl.String(), "original_label": pl.String()},
        tuple(KEYS), "curated_dataset",
        "The curated, split dataset; its Delta version is the dataset version.",
    ),
    TableSchema(
        "curation_log",
        {"video_id": pl.String(), "frame_index": pl.Int64(), "label": pl.String(),
         "split": pl.String(), "action": pl.String(), "reasons": pl.List(pl.String()),
         "original_label": pl.String(), "split_group": pl.String()},
        tuple(KEYS), "curated_dataset",
        "Every frame curation saw, dropped ones included, with its reasons.",
    ),
    TableSchema(
        "sweep_trials",
        {"run_id": pl.String(), "trial": pl.Int64(), "lr": pl.Float64(), "width": pl.Int64(),
         "epochs": pl.Int64(), "val_acc": pl.Float64(), "wall_s": pl.Float64(),
         "chosen": pl.Boolean()},
        ("run_id", "trial"), "trained_model",
        "Hyper-parameter trials of trained_model runs with sweep_trials > 0, append-only.",
    ),
    TableSchema(
        "models", dict(MODEL_SCHEMA), ("model_version",), "model_evaluation",
        "One row per registered model version; alias projected from model_events.",
        appenders=("trained_model", "lensline models promote|rollback"),
    ),
    TableSchema(
        "model_events", dict(EVENT_SCHEMA), ("seq",), "model_evaluation",
        "Append-only history of alias changes (register, promote, archive, rollback).",
        appenders=("trained_model", "lensline models promote|rollback"),
    ),
    TableSchema(
        "predictions",
        {"video_id": pl.String(), "frame_index": pl.Int64(), "split": pl.String(),
         "model_version": pl.String(), "prediction": pl.String(), "confidence": pl.Float64()},
        tuple(KEYS), "model_evaluation",
        "The champion's prediction for every frame of the curated dataset.",
    ),
    TableSchema(
        "drift_references",
        {"camera_id": pl.String(), "model_version": pl.String(), "uri": pl.String(),
         "frames": pl.Int64(), "videos": pl.Int64(), "held_out": pl.Boolean(),
         "created_at": UTC_US},
        ("model_version", "camera_id"), "drift_reference",
        "Per champion and camera, the reference file drift is tested against.",
        replace_on="model_version",
    ),
    TableSchema(
        "drift",
        {"video_id": pl.String(), "camera_id": pl.String(), "kind": pl.String(),
         "statistic": pl.String(), "value": pl.Float64(), "p_value": pl.Float64(),
         "threshold": pl.Float64(), "drifted": pl.Boolean(), "status": pl.String(),
         "p_raw": pl.Float64(), "reference_version": pl.String(), "computed_at": UTC_US},
        ("video_id", "kind", "statistic"), "drift_report",
        "Per video, every drift test: statistic, Holm-adjusted p-value, verdict or why not run.",
        replace_on="video_id",
    ),
    TableSchema(
        "drift_queue",
        {"video_id": pl.String(), "frame_index": pl.Int64(), "camera_id": pl.String(),
         "uri": pl.String(), "priority": pl.Int64(), "reason": pl.String(),
         "queued_at": UTC_US},
        tuple(KEYS), "drift_report", "Frames of drifted videos to label first.",
        replace_on="video_id",
    ),
    TableSchema(
        "edge_bundles",
        {"model_version": pl.String(), "uri": pl.String(), "sha256": pl.String(),
         "targets": pl.String(), "signed": pl.Boolean(), "created_at": UTC_US},
        ("model_version",), "edge_bundle", "The signed edge bundle built for each champion.",
        replace_on="model_version",
    ),
    TableSchema(
        "shadow_results",
        {"video": pl.String(), "frame_index": pl.Int64(), "model_version": pl.String(),
         "label": pl.String(), "confidence": pl.Float64(),
         "shadow_model_version": pl.String(), "shadow_label": pl.String(),
         "shadow_confidence": pl.Float64(), "source": pl.String()},
        ("source", "video", "frame_index"), "shadow_comparison",
        "Champion vs shadow predictions the edge runners sent back (landing/shadow/*.jsonl).",
    ),
    TableSchema(
        "deployments",
        {"seq": pl.Int64(), "box": pl.String(), "camera": pl.String(), "role": pl.String(),
         "action": pl.String(), "model_version": pl.String(), "bundle_uri": pl.String(),
         "bundle_sha256": pl.String(), "created_at": UTC_US, "by": pl.String(),
         "reason": pl.String()},
        ("seq",), "lensline deploy",
        "Append-only history of what runs where (box or camera, champion or shadow); "
        "lake.deployments publishes it per box as deployments/<box>.json.",
    ),
    TableSchema(
        "fleet_heartbeats", HEARTBEAT_COLUMNS, ("box", "camera", "at"), "edge_fleet",
        "Every box's heartbeats, one row per camera and beat (landing/telemetry/<box>/*.jsonl).",
    ),
    TableSchema(
        "fleet_state", STATE_COLUMNS, ("box", "camera"), "edge_fleet",
        "What runs on each box and camera now: versions, health, last seen, on its deployment.",
    ),
    TableSchema(
        "line_drift", LINE_DRIFT_COLUMNS, ("camera", "window_end", "statistic"), "line_drift",
        "Drift of each camera's recent heartbeats against its drift reference (drift_report's "
        "data tests that apply to frame statistics); appended per window.",
    ),
    TableSchema(
        "line_configs",
        {"line": pl.String(), "version": pl.Int64(), "sha256": pl.String(), "yaml": pl.String(),
         "config": pl.String(), "applied_at": UTC_US, "applied_by": pl.String(),
         "source": pl.String()},
        ("line", "version"), "lensline line apply",
        "Append-only, one row per applied version of a line's configuration (lake.line_config); "
        "published per box as lines/<box>.json.",
    ),
    TableSchema(
        "capture_requests",
        {"seq": pl.Int64(), "request_id": pl.String(), "camera": pl.String(),
         "reason": pl.String(), "policy": pl.String(), "margin": pl.Float64(),
         "every_n": pl.Int64(), "before_s": pl.Float64(), "after_s": pl.Float64(),
         "per_hour": pl.Int64(), "max_bytes": pl.Int64(), "expires_at": UTC_US,
         "created_at": UTC_US, "created_by": pl.String(), "status": pl.String()},
        ("request_id",), "capture_requests", "What the boxes send back (camera, policy, "
        "budget, expiry); lake.capture_requests publishes the active ones as "
        "capture_requests.json.",
        appenders=("lensline capture",),
    ),
    TableSchema(
        "capture_reports",
        {"box": pl.String(), "camera": pl.String(), "request_id": pl.String(),
         "policy": pl.String(), "video": pl.String(), "frame_count": pl.Int64(),
         "bytes": pl.Int64(), "closed_at": UTC_US, "sent_frames": pl.Int64(),
         "sent_clips": pl.Int64(), "sent_bytes": pl.Int64(), "skipped_budget": pl.Int64(),
         "ingested_at": UTC_US},
        ("box", "video"), "capture_requests", "What the boxes sent for each capture request: "
        "one row per capture video, from its sidecar report (landing/captures/<box>/).",
    ),
]  # fmt: skip

TABLES: dict[str, TableSchema] = {t.name: t for t in _ALL}


def table_schema(name: str) -> TableSchema:
    """The registered schema of table ``name``; raises :class:`TableSchemaError` if none."""
    try:
        return TABLES[name]
    except KeyError:
        raise TableSchemaError(
            f"no schema registered for table {name!r}: add a TableSchema to lake/tables.py "
            f"(registered: {', '.join(sorted(TABLES))})"
        ) from None

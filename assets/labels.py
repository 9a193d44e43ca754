"""labels and label_consensus: validated label imports and multi-annotator consensus."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from assets.provenance import code_version
from assets.tables import md_table
from lake.frames import KEYS
from lake.landing import label_files
from lake.resources import FiftyOneResource
from lake.storage import LensStorage

LABELS_SCHEMA = {
    "video_id": pl.String,
    "frame_index": pl.Int64,
    "label": pl.String,
    "annotator": pl.String,
    "source": pl.String,
    "imported_at": pl.Datetime("us", "UTC"),
}


class LabelsConfig(dg.Config):
    """Which classes labels may use."""

    classes: list[str] = Field(
        default=[], description="Allowed classes; empty: every non-empty name seen."
    )
    empty_label: str | None = Field(
        default=None, description="COCO: label for images without boxes."
    )


@dg.asset(
    group_name="labels", kinds={"fiftyone", "delta"}, code_version=code_version("label_reviews", 1)
)
def label_reviews(
    context: dg.AssetExecutionContext, storage: LensStorage, fiftyone: FiftyOneResource
):
    """Reviewers' corrections from FiftyOne (edited ground truth, tags relabel/ok) as annotator 'review'."""
    if storage.is_s3 or not fiftyone.has_database():
        return dg.MaterializeResult(
            metadata={"imported": 0, "note": "no local FiftyOne database yet"}
        )
    fiftyone.connect()
    import fiftyone as fo

    from data_quality.fiftyone_sync import mark_corrections_imported, pull_corrections

    if fiftyone.dataset_name not in fo.list_datasets():
        return dg.MaterializeResult(
            metadata={"imported": 0, "note": "FiftyOne dataset not synced yet"}
        )
    from data_quality.labels import class_name_problem, valid_class_names

    corrections = pull_corrections(fiftyone.dataset_name)
    valid = valid_class_names(corrections["label"])
    bad, corrections = corrections.filter(~valid), corrections.filter(valid)
    for row in bad.iter_rows(named=True):  # left unimported in FiftyOne until fixed there
        context.log.error(
            f"{row['video_id']}#{row['frame_index']}: {class_name_problem(row['label'])}"
        )
    version = storage.table_version("label_reviews")
    if corrections.height:
        rows = corrections.select(*list(LABELS_SCHEMA)[:5], imported_at="reviewed_at").cast(
            LABELS_SCHEMA
        )
        version = storage.write_table(rows, "label_reviews", mode="append")
        mark_corrections_imported(fiftyone.dataset_name, corrections)
    return dg.MaterializeResult(
        metadata={
            "imported": corrections.height,
            "rejected_class_names": bad.height,
            "table_version": version or 0,
            "corrections": dg.MetadataValue.md(md_table(corrections)),
        }
    )


@dg.asset(
    deps=["frames", "label_reviews"],
    group_name="labels",
    kinds={"delta"},
    check_specs=[
        dg.AssetCheckSpec(
            "label_files_valid",
            asset="labels",
            description="Every label file in the landing zone imports cleanly.",
        )
    ],
    code_version=code_version("labels", 1, LabelsConfig().model_dump()),
)
def labels(context: dg.AssetExecutionContext, config: LabelsConfig, storage: LensStorage):
    """Validated labels from landing/labels (CSV, COCO, FiftyOne) plus reviewers' corrections."""
    from data_quality.labels import (
        LabelFileError,
        check_class_names,
        class_list,
        read_label_file,
    )

    try:  # a bad explicit class list fails before anything is read or written
        check_class_names([*config.classes, *filter(None, [config.empty_label])])
    except ValueError as exc:
        raise dg.Failure(f"LabelsConfig: {exc}") from exc
    all_videos = storage.read_table("videos")
    if all_videos is None:
        raise dg.Failure("no videos ingested yet: labels need the videos table")
    # a video that failed ingestion is still known: its labels import (frame range unchecked)
    # and wait in the table; downstream assets only use frames of videos whose status is ok
    videos = all_videos.select(
        "video_id",
        "camera_id",
        file=pl.col("uri").str.split("/").list.last(),
        frame_count=pl.when(pl.col("status") == "ok").then(pl.col("frame_count")),
    )
    unusable = set(all_videos.filter(pl.col("status") != "ok")["video_id"])
    previous = storage.read_table("labels")
    parts, rejected = [], {}
    for f in label_files(storage):
        with storage.local_path(f.uri) as local:
            root = Path(local).parent if storage.is_s3 else Path(storage.uri("landing"))
            try:
                df = read_label_file(
                    local,
                    videos=videos,
                    classes=config.classes or None,
                    landing_root=root,
                    empty_label=config.empty_label,
                )
                parts.append(df.with_columns(source=pl.lit(f.key), imported_at=_ts(f.mtime)))
            except LabelFileError as exc:
                rejected[f.key] = str(exc).replace(str(local), f.uri)
                context.log.error(rejected[f.key])
                if previous is not None:  # keep what this file gave last time (valid names only)
                    parts.append(_valid(previous.filter(pl.col("source") == f.key)))
    reviews = storage.read_table("label_reviews")
    if reviews is not None:
        parts.append(_valid(reviews.select(list(LABELS_SCHEMA))))
    table = (
        pl.concat([p.select(list(LABELS_SCHEMA)).cast(LABELS_SCHEMA) for p in parts])
        if parts
        else pl.DataFrame(schema=LABELS_SCHEMA)
    )
    table = table.sort("video_id", "frame_index", "annotator", "imported_at")
    changed = previous is None or not previous.sort(table.columns[:5]).equals(
        table.sort(table.columns[:5])
    )
    version = storage.write_table(table, "labels") if changed else storage.table_version("labels")
    classes = config.classes or class_list(table)  # explicit list wins; versioned in its own table
    classes_version = storage.write_table(
        pl.DataFrame(
            {"class_index": range(len(classes)), "name": classes},
            schema={"class_index": pl.Int64, "name": pl.String},
        ),
        "label_classes",
        skip_unchanged=True,
    )
    per_annotator = table.group_by("annotator").len().sort("annotator")
    return dg.MaterializeResult(
        metadata={
            "label_version": version,
            "classes_version": classes_version,
            "rows": table.height,
            "new_version": changed,
            "classes": dg.MetadataValue.json(classes),
            "frames": table.select("video_id", "frame_index").n_unique(),
            "labels_on_failed_videos": table.filter(
                pl.col("video_id").is_in(list(unusable))
            ).height,
            "per_annotator": dg.MetadataValue.md(md_table(per_annotator)),
            "rejected_files": dg.MetadataValue.md(
                md_table(pl.DataFrame({"file": list(rejected), "error": list(rejected.values())}))
            )
            if rejected
            else "none",
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="label_files_valid",
                passed=not rejected,
                metadata={"rejected": len(rejected), "files": dg.MetadataValue.json(rejected)},
            )
        ],
        # content-addressed: a rerun that changes nothing keeps the version, so nothing
        # downstream rematerialises (AutomationCondition on data versions)
        data_version=dg.DataVersion(f"labels-{version}-classes-{classes_version}"),
    )


@dg.asset(
    deps=["labels", "frame_embeddings"],
    group_name="labels",
    kinds={"delta", "cleanlab"},
    code_version=code_version("label_consensus", 1),
)
def label_consensus(context: dg.AssetExecutionContext, storage: LensStorage):
    """One consensus label per frame and a quality score per frame and annotator (CROWDLAB)."""
    from data_quality.consensus import compute_consensus

    keys = storage.read_table("frame_embeddings").select(KEYS)
    labels_df = storage.read_table("labels").join(keys, on=KEYS)
    classes, probs, _ = held_out(storage, keys)
    result = compute_consensus(labels_df, classes=classes, pred_probs=probs, frame_keys=keys)
    version = storage.write_table(result.frames, "label_consensus", skip_unchanged=True)
    storage.write_table(result.annotators, "annotator_quality", skip_unchanged=True)
    return dg.MaterializeResult(
        metadata={
            "method": result.method,
            "frames": result.frames.height,
            "label_version": storage.table_version("labels"),
            "annotators": dg.MetadataValue.md(md_table(result.annotators)),
            "worst_annotator": result.annotators["annotator"][0]
            if result.annotators.height
            else "",
        },
        data_version=dg.DataVersion(f"label_consensus-{version}"),
    )


def held_out(storage: LensStorage, keys: pl.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Classes, held-out probabilities (N, K) and embeddings (N, D) of frame_embeddings, by ``keys``.

    Reads ``classes`` as a list column (or the legacy comma-joined string).
    """
    from data_quality.pred_probs import held_out_arrays

    try:
        return held_out_arrays(storage.read_table("frame_embeddings"), keys)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc


def _valid(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows whose label obeys data_quality.labels.CLASS_NAME_RULE (drops rows written before it)."""
    from data_quality.labels import valid_class_names

    return rows.filter(valid_class_names(rows["label"]))


def _ts(mtime: float) -> pl.Expr:
    return pl.lit(datetime.fromtimestamp(mtime, UTC)).cast(pl.Datetime("us", "UTC"))

"""labels and label_consensus: validated label imports and multi-annotator consensus."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from assets.provenance import code_version
from assets.tables import md_table
from data_quality.label_merge import LABELS_SCHEMA as LABELS_SCHEMA  # re-exported
from data_quality.label_merge import LabelSource, merge_labels, review_rows
from data_quality.labels import check_class_names
from lake import pools
from lake.frames import KEYS
from lake.landing import label_files
from lake.resources import FiftyOneResource
from lake.storage import LensStorage


class LabelsConfig(dg.Config):
    """Which classes labels may use."""

    classes: list[str] = Field(
        default=[], description="Allowed classes; empty: every non-empty name seen."
    )
    empty_label: str | None = Field(
        default=None, description="COCO: label for images without boxes."
    )


@dg.asset(
    pool=pools.GRAPH,
    group_name="labels",
    kinds={"fiftyone", "delta"},
    code_version=code_version("label_reviews", 1),
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
    review = review_rows(pull_corrections(fiftyone.dataset_name))
    for problem in review.problems:  # left unimported in FiftyOne until fixed there
        context.log.error(problem)
    version = storage.table_version("label_reviews")
    if review.rows.height:
        version = storage.write_table(review.rows, "label_reviews", mode="append")
        mark_corrections_imported(fiftyone.dataset_name, review.accepted)
    return dg.MaterializeResult(
        metadata={
            "imported": review.accepted.height,
            "rejected_class_names": len(review.problems),
            "table_version": version or 0,
            "corrections": dg.MetadataValue.md(md_table(review.accepted)),
        }
    )


@dg.asset(
    pool=pools.GRAPH,
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
    try:  # a bad explicit class list fails before anything is read or written
        check_class_names([*config.classes, *filter(None, [config.empty_label])])
    except ValueError as exc:
        raise dg.Failure(f"LabelsConfig: {exc}") from exc
    if (videos := storage.read_table("videos")) is None:
        raise dg.Failure("no videos ingested yet: labels need the videos table")
    merged = merge_labels(
        _staged(storage),
        videos=videos,
        previous=storage.read_table("labels"),
        reviews=storage.read_table("label_reviews"),
        classes=config.classes,
        empty_label=config.empty_label,
    )
    for message in merged.rejected.values():
        context.log.error(message)
    version = storage.table_version("labels")
    if merged.changed:
        version = storage.write_table(merged.table, "labels")
    classes_version = storage.write_table(
        merged.class_table(), "label_classes", skip_unchanged=True
    )
    rejected = merged.rejected
    return dg.MaterializeResult(
        metadata={
            "label_version": version,
            "classes_version": classes_version,
            "rows": merged.table.height,
            "new_version": merged.changed,
            "classes": dg.MetadataValue.json(merged.classes),
            "frames": merged.frames,
            "labels_on_failed_videos": merged.labels_on_failed_videos,
            "per_annotator": dg.MetadataValue.md(md_table(merged.per_annotator)),
            "rejected_files": dg.MetadataValue.md(md_table(merged.rejected_table()))
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
    pool=pools.GRAPH,
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


def _staged(storage: LensStorage) -> Iterator[LabelSource]:
    """The landed label files, each staged locally while the caller reads it."""
    for f in label_files(storage):
        with storage.local_path(f.uri) as local:
            root = Path(local).parent if storage.is_s3 else Path(storage.uri("landing"))
            yield LabelSource(f.key, Path(local), f.uri, f.mtime, root)

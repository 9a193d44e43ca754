"""label_issues, curated_dataset, fiftyone_dataset: from consensus labels to a versioned, cleaned dataset."""

import dagster as dg
import polars as pl
from pydantic import Field

from assets.labels import held_out
from assets.previews import png_md
from assets.provenance import code_version
from assets.tables import md_table
from lake.frames import KEYS, line_conditions, load_frame_images, ok_frames
from lake.resources import FiftyOneResource
from lake.storage import LensStorage


@dg.asset(
    deps=["label_consensus", "frame_embeddings"],
    group_name="labels",
    kinds={"delta", "cleanlab"},
    code_version=code_version("label_issues", 1),
)
def label_issues(context: dg.AssetExecutionContext, storage: LensStorage):
    """Label, outlier, near-duplicate and frame-quality issues from held-out (K-fold CNN) probabilities."""
    from data_quality.label_issues import find_label_issues, issue_counts
    from data_quality.plots import worst_examples_grid

    consensus = (
        storage.read_table("label_consensus")
        .join(ok_frames(storage).select(KEYS), on=KEYS)
        .sort(KEYS)
    )
    classes, probs, features = held_out(storage, consensus)
    y = consensus["consensus_label"].replace_strict(classes, list(range(len(classes)))).to_numpy()
    issues = find_label_issues(
        y,
        probs,
        keys=consensus.select(KEYS),
        features=features,
        # the labelled frames only: an unlabelled video landing must not move a camera's
        # quality baseline (and with it the dataset) when no label changed
        quality=storage.read_table("frames").join(consensus.select(KEYS), on=KEYS),
        classes=classes,
    )
    version = storage.write_table(issues, "label_issues", skip_unchanged=True)
    worst = (
        issues.filter("is_label_issue")
        .sort("label_quality")
        .head(12)
        .join(
            storage.read_table("frames").select(*KEYS, "uri", "sha256"),
            on=KEYS,
            maintain_order="left",
        )
    )
    grid = worst_examples_grid(
        list(load_frame_images(storage, worst, size=128)) if worst.height else [],
        [
            f"{r['video_id']}#{r['frame_index']} {r['given_label']}->{r['suggested_label']} q={r['label_quality']:.2f}"
            for r in worst.iter_rows(named=True)
        ],
    )
    counts = issue_counts(issues)
    return dg.MaterializeResult(
        metadata={
            "frames": issues.height,
            "table_version": version,
            **{f"issues/{k}": v for k, v in counts.items()},
            "worst_label_issues": dg.MetadataValue.md(png_md(grid, alt="worst label issues")),
        },
        data_version=dg.DataVersion(f"label_issues-{version}"),
    )


class CurationConfig(dg.Config):
    """How issues are handled and how videos are split (see data_quality.curate.CurationPolicy)."""

    relabel_max_quality: float = Field(
        default=0.3, description="Relabel a label issue whose label quality is below this..."
    )
    relabel_min_confidence: float = Field(
        default=0.7, description="...when the model's suggestion has at least this probability."
    )
    relabel_only_flagged: bool = Field(
        default=True,
        description="Relabel only frames cleanlab flags (not every low-quality label).",
    )
    drop_unresolved_label_issues: bool = Field(
        default=True, description="Drop label issues that are not relabelled."
    )
    min_consensus_quality: float = Field(
        default=0.0, description="Drop frames whose consensus quality is below this."
    )
    drop_outliers: bool = Field(
        default=False, description="Outliers are often the rare defects: review, don't drop."
    )
    dedupe_near_duplicates: bool = Field(
        default=False, description="Keep one frame per near-duplicate set."
    )
    drop_frame_quality: list[str] = Field(
        default=["dark", "overexposed", "blurry"], description="Frame issues to drop."
    )
    trust_unanimous: bool = Field(
        default=True, description="Never relabel or drop a frame all its annotators agree on."
    )
    seed: int = Field(default=0, description="Seed of the by-video split.")
    split_by_camera: bool = Field(
        default=True,
        description="Split each camera (and its drift-labelled videos apart) on its own, so "
        "every line condition has train, val and test frames (by video, or by time blocks "
        "when it has fewer videos than splits).",
    )
    split_guard_frames: int = Field(
        default=15,
        description="With fewer videos than splits (time-block splits): frames this close to a "
        "frame of another split are dropped.",
    )
    max_quality_drop_share: float = Field(
        default=0.1,
        description="frame_quality_drop warns when frame-quality rules drop more than this "
        "share of any camera's frames.",
    )


@dg.asset(
    deps=["label_issues"],
    group_name="labels",
    kinds={"delta"},
    check_specs=[
        dg.AssetCheckSpec(
            "frame_quality_drop",
            asset="curated_dataset",
            description="No camera loses more than max_quality_drop_share of its frames to the "
            "dark / overexposed / blurry rules.",
        )
    ],
    code_version=code_version("curated_dataset", 1, CurationConfig().model_dump()),
)
def curated_dataset(
    context: dg.AssetExecutionContext, config: CurationConfig, storage: LensStorage
):
    """The cleaned dataset, split train/val/test by video (or time block); its Delta version is the dataset version."""
    from data_quality.curate import (
        CurationPolicy,
        apply_reviews,
        curate,
        drift_requests_not_low_quality,
        quality_drops,
        split_drift_videos,
    )

    frames = ok_frames(storage)
    queue = storage.read_table("drift_queue")
    consensus = storage.read_table("label_consensus").join(
        frames.select(*KEYS, "camera_id"), on=KEYS
    )
    # the split strata are the line conditions the promotion gate scores separately
    consensus = consensus.with_columns(
        condition=pl.Series(line_conditions(storage, consensus), dtype=pl.String)
    )
    options = config.model_dump(
        exclude={"seed", "split_guard_frames", "max_quality_drop_share", "split_by_camera"}
    )
    policy = CurationPolicy(**{**options, "drop_frame_quality": tuple(config.drop_frame_quality)})
    issues = drift_requests_not_low_quality(storage.read_table("label_issues"), queue)
    curated, grouping = curate(
        consensus,
        issues,
        policy=policy,
        seed=config.seed,
        guard_frames=config.split_guard_frames,
        return_grouping=True,
        strata_col="condition" if config.split_by_camera else None,
    )
    result = apply_reviews(curated, storage.read_table("label_reviews"))
    result = split_drift_videos(result, queue)
    drops = quality_drops(result, frames, policy.drop_frame_quality)
    worst = drops["share"].max() if drops.height else 0.0
    kept = result.filter(pl.col("split").is_not_null())
    version = storage.write_table(
        kept.select(*KEYS, "label", "split", "action", "original_label"),
        "dataset",
        skip_unchanged=True,
    )
    storage.write_table(result, "curation_log")
    summary = kept.group_by("split", "label").len().sort("split", "label")
    actions = result.group_by("action").len().sort("action")
    return dg.MaterializeResult(
        metadata={
            "dataset_version": version,
            "frames": kept.height,
            "videos_per_split": dg.MetadataValue.json(
                {
                    s: sorted(kept.filter(pl.col("split") == s)["video_id"].unique().to_list())
                    for s in ("train", "val", "test")
                }
            ),
            "class_balance": dg.MetadataValue.md(md_table(summary)),
            "actions": dg.MetadataValue.md(md_table(actions)),
            "split_grouping": dg.MetadataValue.json(grouping),
        },
        data_version=dg.DataVersion(f"dataset-{version}"),
        check_results=[
            dg.AssetCheckResult(
                check_name="frame_quality_drop",
                passed=bool(worst <= config.max_quality_drop_share),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "max_share": float(worst or 0.0),
                    "threshold": config.max_quality_drop_share,
                    "per_camera": dg.MetadataValue.md(md_table(drops)),
                },
            )
        ],
    )


@dg.asset(
    deps=["curated_dataset", "label_issues"],
    group_name="labels",
    kinds={"fiftyone"},
    code_version=code_version("fiftyone_dataset", 1),
)
def fiftyone_dataset(
    context: dg.AssetExecutionContext, storage: LensStorage, fiftyone: FiftyOneResource
):
    """The labeled frames in FiftyOne: labels per annotator, consensus, issues, quality, saved views."""
    return _sync(context, storage, fiftyone)


@dg.asset(
    deps=["model_evaluation", "fiftyone_dataset"],
    group_name="training",
    kinds={"fiftyone"},
    code_version=code_version("fiftyone_predictions", 1),
)
def fiftyone_predictions(
    context: dg.AssetExecutionContext, storage: LensStorage, fiftyone: FiftyOneResource
):
    """The champion's predictions on every curated frame, shown beside the labels in FiftyOne."""
    return _sync(context, storage, fiftyone, predictions=storage.read_table("predictions"))


def _sync(
    context: dg.AssetExecutionContext,
    storage: LensStorage,
    fiftyone: FiftyOneResource,
    *,
    predictions: pl.DataFrame | None = None,
):
    """Incremental, idempotent sync of the lake's view of labeled frames (and the champion's
    ``predictions``, when given) into FiftyOne."""
    if storage.is_s3:
        context.log.warning("FiftyOne sync needs local frame files; skipped for S3 storage")
        return dg.MaterializeResult(metadata={"skipped": "S3 storage"})
    fiftyone.connect()
    from data_quality.fiftyone_sync import ensure_saved_views, sync_samples

    samples, classes, annotations = _samples(storage, predictions)
    counts = sync_samples(
        fiftyone.dataset_name,
        samples,
        classes=classes,
        annotations=annotations.join(samples.select(KEYS), on=KEYS),
        info={"dataset_version": storage.table_version("dataset")},
    )
    views = ensure_saved_views(fiftyone.dataset_name)
    return dg.MaterializeResult(
        metadata={
            "dataset": fiftyone.dataset_name,
            **counts,
            "saved_views": ", ".join(views),
            "with_predictions": "prediction" in samples.columns,
        }
    )


def _samples(
    storage: LensStorage, preds: pl.DataFrame | None
) -> tuple[pl.DataFrame, list[str], pl.DataFrame]:
    """One row per labeled frame with everything FiftyOne shows, and the annotators' labels in
    long form (one row per frame and annotator: no frames x annotators pivot)."""
    labels = storage.read_table("labels")
    annotations = labels.unique(subset=[*KEYS, "annotator"], keep="last").select(
        *KEYS, "annotator", "label"
    )
    frames = storage.read_table("frames").select(
        *KEYS, "camera_id", filepath="uri", brightness="brightness", sharpness="sharpness"
    )
    issues = storage.read_table("label_issues").drop("given_label")
    consensus = storage.read_table("label_consensus").select(*KEYS, consensus="consensus_label")
    dataset = storage.read_table("dataset").select(*KEYS, ground_truth="label", split="split")
    out = (
        consensus.join(frames, on=KEYS)
        .join(issues, on=KEYS, how="left")
        .join(dataset, on=KEYS, how="left")
        .with_columns(pl.col("ground_truth").fill_null(pl.col("consensus")))
    )
    if preds is not None:
        out = out.join(
            preds.select(*KEYS, "prediction", prediction_confidence="confidence"),
            on=KEYS,
            how="left",
        )
    classes = sorted(set(labels["label"].unique().to_list()))
    return out.sort(KEYS), classes, annotations

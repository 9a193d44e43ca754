"""label_issues, curated_dataset, fiftyone_dataset: from consensus labels to a versioned, cleaned dataset."""

from typing import TYPE_CHECKING

import dagster as dg
import polars as pl
from pydantic import Field

from assets.labels import held_out
from assets.previews import png_md
from assets.provenance import code_version
from assets.tables import md_table
from lake import pools
from lake.frames import KEYS, line_conditions, load_frame_images, ok_frames
from lake.resources import FiftyOneResource
from lake.storage import LensStorage

if TYPE_CHECKING:
    from data_quality.curate import CurationPolicy


@dg.asset(
    pool=pools.GRAPH,
    deps=["label_consensus", "frame_embeddings"],
    group_name="labels",
    kinds={"delta", "cleanlab"},
    code_version=code_version("label_issues", 1),
)
def label_issues(context: dg.AssetExecutionContext, storage: LensStorage):
    """Label, outlier, near-duplicate and frame-quality issues from held-out (K-fold CNN) probabilities."""
    from data_quality.issue_report import label_issue_report
    from data_quality.plots import worst_examples_grid

    consensus = (
        storage.read_table("label_consensus")
        .join(ok_frames(storage).select(KEYS), on=KEYS)
        .sort(KEYS)
    )
    classes, probs, features = held_out(storage, consensus)
    report = label_issue_report(
        consensus,
        classes=classes,
        probs=probs,
        features=features,
        frames=storage.read_table("frames"),
    )
    version = storage.write_table(report.issues, "label_issues", skip_unchanged=True)
    worst = report.worst
    images = list(load_frame_images(storage, worst, size=128)) if worst.height else []
    grid = worst_examples_grid(images, report.captions)
    return dg.MaterializeResult(
        metadata={
            "frames": report.issues.height,
            "table_version": version,
            **{f"issues/{k}": v for k, v in report.counts.items()},
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
    stable_splits: bool = Field(
        default=True,
        description="Videos keep the split the previous dataset gave them; only new videos are "
        "balanced around them (a warm-started model never meets its training frames in test).",
    )
    max_quality_drop_share: float = Field(
        default=0.1,
        description="frame_quality_drop warns when frame-quality rules drop more than this "
        "share of any camera's frames.",
    )

    def policy(self) -> "CurationPolicy":
        """The :class:`data_quality.curate.CurationPolicy` these options describe."""
        from data_quality.curate import CurationPolicy

        options = self.model_dump(
            exclude={
                "seed",
                "split_guard_frames",
                "max_quality_drop_share",
                "split_by_camera",
                "stable_splits",
            }  # fmt: skip
        )
        return CurationPolicy(**{**options, "drop_frame_quality": tuple(self.drop_frame_quality)})


@dg.asset(
    pool=pools.GRAPH,
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
    from data_quality.curate.dataset import curate_dataset, stable_splits

    frames = ok_frames(storage)
    consensus = storage.read_table("label_consensus").join(
        frames.select(*KEYS, "camera_id"), on=KEYS
    )
    curated = curate_dataset(
        consensus,
        storage.read_table("label_issues"),
        frames=frames,
        # the split strata are the line conditions the promotion gate scores separately
        conditions=line_conditions(storage, consensus),
        queue=storage.read_table("drift_queue"),
        reviews=storage.read_table("label_reviews"),
        policy=config.policy(),
        seed=config.seed,
        guard_frames=config.split_guard_frames,
        split_by_condition=config.split_by_camera,
        pinned=stable_splits(storage.read_table("dataset")) if config.stable_splits else None,
    )
    version = storage.write_table(curated.dataset, "dataset", skip_unchanged=True)
    storage.write_table(curated.log, "curation_log")
    worst = curated.worst_drop_share
    return dg.MaterializeResult(
        metadata={
            "dataset_version": version,
            "frames": curated.kept.height,
            "videos_per_split": dg.MetadataValue.json(curated.videos_per_split()),
            "class_balance": dg.MetadataValue.md(md_table(curated.class_balance())),
            "actions": dg.MetadataValue.md(md_table(curated.actions())),
            "split_grouping": dg.MetadataValue.json(curated.grouping),
        },
        data_version=dg.DataVersion(f"dataset-{version}"),
        check_results=[
            dg.AssetCheckResult(
                check_name="frame_quality_drop",
                passed=bool(worst <= config.max_quality_drop_share),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "max_share": worst,
                    "threshold": config.max_quality_drop_share,
                    "per_camera": dg.MetadataValue.md(md_table(curated.quality_drops)),
                },
            )
        ],
    )


@dg.asset(
    pool=pools.GRAPH,
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
    pool=pools.GRAPH,
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

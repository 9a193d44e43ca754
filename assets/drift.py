"""drift_reference and drift_report: each new video against its camera's reference.

The reference of a camera is the frames behind the current champion's dataset version: their
statistics, colour histograms, static background, and the champion's embeddings and softmax
outputs, computed once per champion (``artifacts/drift/reference/<model_version>/<camera>.npz``
and a row in ``drift_references``). Every ingested video is summarised the same way and tested
against it (``data_quality.drift``); the verdicts land in the ``drift`` table, drifted frames
worth labelling in ``drift_queue``. A crash between the two writes leaves ``drift`` rows
without their queue rows for that video; the next materialisation of the partition replaces
both (each write is one Delta commit, keyed by ``video_id``).
"""

import hashlib
import io
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from assets.champion import Champion, load_champion
from assets.ingest import BATCH
from assets.line_config import KEYS as LINE_KEYS
from assets.line_config import for_camera
from assets.previews import png_md
from assets.provenance import code_version
from assets.tables import md_table
from lake import pools
from lake.frames import video_frames
from lake.partitions import videos_partitions
from lake.resources import FiftyOneResource
from lake.storage import LensStorage
from lake.tables import table_schema

DRIFT_SCHEMA = dict(table_schema("drift").columns)
KINDS = {
    "data": "no_data_drift",
    "viewpoint": "no_viewpoint_shift",
    "prediction": "no_prediction_drift",
}


class DriftReferenceConfig(dg.Config):
    """How much of the champion's dataset each camera's reference keeps."""

    max_frames_per_camera: int = Field(
        default=1500, description="Evenly strided cap on reference frames per camera."
    )


class DriftConfig(dg.Config):
    """Drift tests of one video against its camera's reference."""

    alpha: float = Field(default=0.01, description="Family-wise error rate per kind (Holm).")
    severity: str = Field(default="WARN", description="Severity of a drift check: WARN or ERROR.")
    max_shift_px: float = Field(default=4.0, description="Camera shift that counts as moved.")
    max_rotation_deg: float = Field(
        default=2.0, description="Camera rotation that counts as moved."
    )
    label_budget: int = Field(
        default=60, description="Frames of a drifted video queued for labelling (needs_labels)."
    )
    empty_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of label_budget that may go to frames without an item (item_present "
        "false); e.g. 0.1 keeps an empty-belt class supplied.",
    )


def grid_frames(
    storage: LensStorage, frames: pl.DataFrame, sample_fps: float = 2.0
) -> pl.DataFrame:
    """Only the frames on each video's sampling grid (``frame_index % stride == 0``).

    Frames kept because a label refers to them cluster around well-centred items; a reference
    and a new video sampled differently would read as drift, so both sides use the grid.
    """
    from data_quality.video import sample_stride

    fps = storage.read_table("videos").select("video_id", "fps")
    step = fps.with_columns(
        step=pl.col("fps").map_elements(
            lambda f: sample_stride(f or 0.0, sample_fps=sample_fps, stride=None),
            return_dtype=pl.Int64,
        )
    ).select("video_id", "step")
    return (
        frames.join(step, on="video_id", how="left")
        .filter((pl.col("frame_index") % pl.col("step").fill_null(1)) == 0)
        .drop("step")
    )


def _bgr_frames(storage: LensStorage, frames: pl.DataFrame) -> list[np.ndarray]:
    """The frames' JPEGs decoded to BGR, in order (on 2 threads: OpenCV releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from training.preprocess import decode_image

    paths = storage.fetch_local(frames["uri"].to_list(), digests=frames["sha256"].to_list())
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(decode_image, paths))


def _scores(champion: Champion | None, bgr: list[np.ndarray], cameras: list[str]):
    """The champion's embeddings (N, D) and probabilities (N, K) of BGR frames; (None, None)
    without a champion."""
    if champion is None or not bgr:
        return None, None
    from training.evaluate import embed, predict_proba

    images = champion.spec.images(bgr, cameras)  # type: ignore[attr-defined]
    return embed(champion.model, images), predict_proba(champion.model, images)


def _champion_or_none(storage: LensStorage) -> Champion | None:
    try:
        return load_champion(storage)
    except dg.Failure:
        return None


@dg.asset(
    pool=pools.GRAPH,
    deps=["model_evaluation"],
    group_name="drift",
    kinds={"numpy", "delta"},
    code_version=code_version("drift_reference", 1, DriftReferenceConfig().model_dump()),
)
def drift_reference(
    context: dg.AssetExecutionContext, config: DriftReferenceConfig, storage: LensStorage
):
    """Per camera, what the champion was trained on: frame statistics, colours, background,
    embeddings and predictions (a new champion moves the reference)."""
    from data_quality.drift import DriftConfig as Options
    from data_quality.drift.per_camera import build_camera_references

    champion = load_champion(storage)
    done = storage.read_table("drift_references")
    if done is not None and done.filter(pl.col("model_version") == champion.version).height:
        return dg.MaterializeResult(
            metadata={"model_version": champion.version, "note": "reference already built"},
            data_version=dg.DataVersion(champion.version),
        )
    dataset = storage.read_table("dataset", version=champion.record.dataset_version)  # type: ignore[attr-defined]
    splits = dataset.group_by("video_id").agg(trained=(pl.col("split") == "train").any())
    frames = grid_frames(storage, storage.read_table("frames").join(splits, on="video_id"))
    rows = []
    for built in build_camera_references(
        frames, version=champion.version, decode=lambda group: _bgr_frames(storage, group),
        score=lambda bgr, cameras: _scores(champion, bgr, cameras), log=context.log.info,
        max_frames_per_camera=config.max_frames_per_camera, min_frames=Options().min_frames,
    ):  # fmt: skip
        uri = storage.uri(
            "artifacts", "drift", "reference", champion.version, f"{built.camera_id}.npz"
        )
        storage.write_bytes(uri, built.reference.to_bytes())
        rows.append(built.row(uri, created_at=datetime.now(UTC)))
    table = pl.DataFrame(rows)
    where = storage.eq_predicate("model_version", champion.version)
    storage.write_table(table, "drift_references", replace_where=where)
    return dg.MaterializeResult(
        metadata={
            "model_version": champion.version,
            "cameras": dg.MetadataValue.md(md_table(table)),
        },
        data_version=dg.DataVersion(champion.version),
    )


def load_reference(storage: LensStorage, camera_id: str, model_version: str | None):
    """The camera's reference for ``model_version`` (the champion), or None."""
    from data_quality.drift import CameraReference

    refs = storage.read_table("drift_references")
    if refs is None or model_version is None:
        return None
    row = refs.filter(
        (pl.col("camera_id") == camera_id) & (pl.col("model_version") == model_version)
    )
    if row.is_empty():
        return None
    return CameraReference.from_bytes(storage.read_bytes(row["uri"][0]))


@dg.asset(
    pool=pools.INGEST,
    partitions_def=videos_partitions,
    backfill_policy=BATCH,
    deps=["frames", "drift_reference", LINE_KEYS["drift_policy"]],
    group_name="drift",
    kinds={"delta"},
    check_specs=[
        dg.AssetCheckSpec(
            name,
            asset="drift_report",
            description=f"No {kind} drift against the camera's reference.",
        )
        for kind, name in KINDS.items()
    ],
    code_version=code_version("drift_report", 1, DriftConfig().model_dump()),
)
def drift_report(context: dg.AssetExecutionContext, config: DriftConfig, storage: LensStorage):
    """Data, viewpoint and prediction drift of each of the run's videos (one, or a batch: a
    partition range) against its camera's reference, and the frames to label first when it
    drifted."""
    videos = context.partition_keys
    champion = _champion_or_none(storage)
    references: dict[str, object] = {}  # camera -> its reference, loaded once per run
    reports = [_assess(storage, config, v, champion, references) for v in videos]
    if len(videos) == 1:
        metadata, version, checks = reports[0]
        return dg.MaterializeResult(metadata=metadata, data_version=version, check_results=checks)
    for video_id, (metadata, _, _) in zip(videos, reports, strict=True):
        context.add_asset_metadata(metadata, partition_key=video_id)
    digest = hashlib.sha256("\n".join(v.value for _, v, _ in reports).encode()).hexdigest()
    drifted = [v for v, (m, _, _) in zip(videos, reports, strict=True) if m["drifted"] != "none"]
    return dg.MaterializeResult(
        metadata={
            "batch_videos": len(videos),
            "batch": f"{videos[0]} .. {videos[-1]}",
            "drifted_videos": ", ".join(drifted) or "none",
        },
        data_version=dg.DataVersion(digest[:24]),
        check_results=[
            _batch_check(name, [(v, r[2][i]) for v, r in zip(videos, reports, strict=True)])
            for i, name in enumerate(KINDS.values())
        ],
    )


def _assess(
    storage: LensStorage,
    config: DriftConfig,
    video_id: str,
    champion: Champion | None,
    references: dict,
) -> tuple[dict, dg.DataVersion, list[dg.AssetCheckResult]]:
    """One video's drift verdicts written to ``drift``/``drift_queue``: its metadata, data
    version and check results."""
    from data_quality.drift import DriftConfig as Options
    from data_quality.drift.per_camera import assess_video

    frames = _video_frames(storage, video_id)
    camera = frames["camera_id"][0]
    if (line := for_camera(storage, camera)) is not None:  # the line's policy takes precedence
        config = config.model_copy(
            update={"severity": line.drift.severity, "label_budget": line.label_budget}
        )
    if camera not in references:
        references[camera] = load_reference(storage, camera, champion.version if champion else None)
    reference = references[camera]
    new, emb, probs = _summarise(storage, frames, champion, reference)
    options = Options(alpha=config.alpha, max_shift_px=config.max_shift_px,
                      max_rotation_deg=config.max_rotation_deg,
                      empty_share=config.empty_share)  # fmt: skip
    result = assess_video(frames, reference, new, emb, probs, options=options,
                          budget=config.label_budget, now=datetime.now(UTC), schema=DRIFT_SCHEMA)  # fmt: skip
    where = storage.eq_predicate("video_id", video_id)
    storage.write_table(result.table, "drift", replace_where=where)
    if result.queue.height or storage.read_table("drift_queue") is not None:
        storage.write_table(result.queue, "drift_queue", replace_where=where)
    ref = reference.version if reference else "none"  # type: ignore[attr-defined]
    metadata = {
        "camera_id": camera,
        "reference_version": ref if reference else "none (no champion reference yet)",
        "verdict": dg.MetadataValue.json(result.verdict),
        "drifted": ", ".join(result.drifted_statistics) or "none",
        "queued_for_labels": result.queue.height,
        "action": _action(result.verdict),
        "tests": dg.MetadataValue.md(
            md_table(result.table.drop("video_id", "camera_id", "computed_at"))
        ),
        "plots": dg.MetadataValue.md(_plots(reference, new, result.drifted_statistics)),
    }
    checks = [
        _check(kind, name, result.tests, result.verdict[kind], config.severity)
        for kind, name in KINDS.items()
    ]
    return metadata, dg.DataVersion(f"{ref}:{len(result.drifted_statistics)}"), checks


def _batch_check(name: str, results: list[tuple[str, dg.AssetCheckResult]]) -> dg.AssetCheckResult:
    """One drift check over a batch: passed when it passed for every video, at the worst
    failure's severity; each video's verdict in the metadata."""
    failed = [(v, r) for v, r in results if not r.passed]
    error = any(r.severity == dg.AssetCheckSeverity.ERROR for _, r in failed)
    rows = "\n".join(f"| {v} | {r.description} |" for v, r in results)
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{v}: {r.description}" for v, r in failed)
        or f"none of {len(results)} videos drifted",
        metadata={
            "videos": len(results),
            "failed_videos": ", ".join(v for v, _ in failed) or "none",
            "per_video": dg.MetadataValue.md("| video | verdict |\n|---|---|\n" + rows),
        },
    )


def _video_frames(storage: LensStorage, video_id: str) -> pl.DataFrame:
    """The video's sampled frames on the drift grid, in order (a Failure when not ingested)."""
    frames = grid_frames(storage, video_frames(storage, video_id)).sort("frame_index")
    if frames.is_empty():
        raise dg.Failure(f"video {video_id!r} has no frames in the lake: ingest it first")
    return frames


def _summarise(storage: LensStorage, frames: pl.DataFrame, champion, reference):
    """The video's :class:`CameraReference` summary, with the champion's embeddings and
    probabilities when there is a reference to test them against."""
    from data_quality.drift import FRAME_STATS, build_reference

    camera, video_id = frames["camera_id"][0], frames["video_id"][0]
    if reference is None:
        # nothing to test against: every test reports no_reference whatever the images hold, so
        # they are not read back and decoded (the lake's frame statistics stand in for them)
        stats = frames.select(list(FRAME_STATS)).to_numpy()
        return build_reference(stats, camera_id=camera, version=video_id), None, None
    bgr = _bgr_frames(storage, frames)
    emb, probs = _scores(champion, bgr, frames["camera_id"].to_list())
    return build_reference(bgr, emb, probs, camera_id=camera, version=video_id), emb, probs


def _action(verdict: dict[str, str]) -> str:
    if verdict.get("viewpoint") == "drifted":
        return ("camera moved: re-aim it, or accept the new view by labelling its frames and "
                "retraining (the next champion's reference then includes it); no labels queued")  # fmt: skip
    if "drifted" in (verdict.get("data"), verdict.get("prediction")):
        return "frames queued for labels (drift_queue, FiftyOne view needs_labels); labels retrain"
    return "none"


def _check(kind: str, name: str, tests, verdict: str, severity: str) -> dg.AssetCheckResult:
    rows = [t for t in tests if t.kind == kind]
    statuses = sorted({t.status for t in rows if t.status != "ok"})
    if verdict == "drifted":
        what = ", ".join(f"{t.statistic}={t.value:.3g}" for t in rows if t.drifted)
        text = f"{kind} drift: {what}"
    elif verdict == "ok":
        text = f"every {kind} test ran; none drifted"
    else:  # never a silent "no drift": say why the tests did not (all) run
        text = f"{kind} drift not fully tested ({verdict}): {', '.join(statuses)}"
    return dg.AssetCheckResult(
        check_name=name,
        passed=verdict == "ok",
        severity=dg.AssetCheckSeverity.ERROR
        if verdict == "drifted" and severity.upper() == "ERROR"
        else dg.AssetCheckSeverity.WARN,
        description=text,
        metadata={"verdict": verdict, "detail": text},
    )


def _plots(reference, new, drifted: list[str]) -> str:
    """Reference vs new distribution per drifted frame statistic, and the two backgrounds."""
    if reference is None:  # nothing to draw: matplotlib (~0.5 s to import) is not loaded
        return "_no reference yet_"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_quality.drift import FRAME_STATS

    stats = [s for s in drifted if s in FRAME_STATS]
    panels = len(stats) + 1
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 2.6), squeeze=False)
    for ax, name in zip(axes[0], stats, strict=False):
        i = FRAME_STATS.index(name)
        ax.hist(reference.stats[:, i], bins=30, alpha=0.6, density=True, label="reference")
        ax.hist(new.stats[:, i], bins=30, alpha=0.6, density=True, label="this video")
        ax.set_title(name)
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    if reference.background is not None and new.background is not None:
        pair = np.hstack([reference.background, new.background]).astype(np.uint8)
        ax.imshow(pair[..., ::-1] if pair.ndim == 3 else pair, cmap="gray")
        ax.set_title("reference | this video (background)")
    ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return png_md(buf.getvalue(), alt="drift")


@dg.asset(
    pool=pools.GRAPH,
    deps=["drift_report", "shadow_comparison"],
    group_name="drift",
    kinds={"fiftyone"},
    code_version=code_version("fiftyone_queues", 1),
)
def fiftyone_queues(
    context: dg.AssetExecutionContext, storage: LensStorage, fiftyone: FiftyOneResource
):
    """FiftyOne saved views for people: ``needs_labels`` (drifted frames to label first) and
    ``shadow_disagreements`` (frames where the shadow model disagreed with the champion)."""
    if storage.is_s3:
        return dg.MaterializeResult(
            metadata={"skipped": "FiftyOne needs local frame files (S3 storage)"}
        )
    fiftyone.connect()
    from data_quality.fiftyone_queues import (
        needs_labels_frames,
        publish_queues,
        queue_dataset_name,
        shadow_disagreement_frames,
    )

    queue, shadow = storage.read_table("drift_queue"), storage.read_table("shadow_results")
    counts = publish_queues(
        fiftyone.dataset_name,
        {
            "needs_labels": None if queue is None else needs_labels_frames(queue),
            "shadow_disagreements": None
            if shadow is None
            else shadow_disagreement_frames(shadow, storage.read_table("frames")),
        },
    )
    return dg.MaterializeResult(
        metadata={
            **{f"{k}_frames": v for k, v in counts.items()},
            "datasets": ", ".join(queue_dataset_name(fiftyone.dataset_name, k) for k in counts)
            or "none yet",
        }
    )

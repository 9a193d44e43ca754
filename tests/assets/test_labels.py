"""The labels asset: a bad file is rejected whole and what it gave before stays; no-op reruns make no version."""

from __future__ import annotations

import dagster as dg
import polars as pl

from lake.storage import LensStorage
from lake.tables import TABLES
from orchestration.definitions import defs


def materialize_labels(instance) -> dg.ExecuteInProcessResult:
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey("labels")], instance=instance, raise_on_error=False
    )


def test_bad_label_file_keeps_previous_labels(home, write_video):
    write_video(home / "landing/videos/cam1/a.mp4", 20)
    csv = home / "landing/labels/line.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("video,frame_index,label,annotator\na.mp4,3,good,ann\ncam1__a,5,dent,ann\n")
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", ["cam1__a"])
        assert (
            defs.resolve_job_def("ingest_video")
            .execute_in_process(partition_key="cam1__a", instance=instance)
            .success
        )
        assert materialize_labels(instance).success
        first = storage.read_table("labels")
        version = storage.table_version("labels")
        assert first.sort("frame_index")["label"].to_list() == ["good", "dent"]

        assert materialize_labels(instance).success  # nothing changed: no new version
        assert storage.table_version("labels") == version
        assert storage.read_table("label_classes")["name"].to_list() == ["dent", "good"]
        assert storage.table_version("label_classes") == 0

        csv.write_text(
            "video,frame_index,label,annotator\na.mp4,3,good,ann\ncam1__a,500,dent,ann\nnope.mp4,1,good,ann\n"
        )
        result = materialize_labels(instance)
        [check] = result.get_asset_check_evaluations()
        assert check.check_name == "label_files_valid" and not check.passed
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        rejected = meta["rejected_files"].value
        assert "line.csv" in rejected and "500" in rejected and "nope.mp4" in rejected
    after = storage.read_table("labels")
    assert after.sort("frame_index").equals(first.sort("frame_index"))
    assert after.select(pl.col("source").unique()).item() == "line.csv"


def test_labels_of_a_corrupt_video_do_not_reject_the_file(home, write_video):
    write_video(home / "landing/videos/cam1/good.mp4", 12)
    (home / "landing/videos/cam1/broken.mp4").write_bytes(b"\x00" * 2048)
    csv = home / "landing/labels/all.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("video,frame_index,label\ngood.mp4,2,good\nbroken.mp4,40,dent\n")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", ["cam1__good", "cam1__broken"])
        job = defs.resolve_job_def("ingest_video")
        assert job.execute_in_process(partition_key="cam1__good", instance=instance).success
        job.execute_in_process(
            partition_key="cam1__broken", instance=instance, raise_on_error=False
        )
        result = materialize_labels(instance)
        assert result.success
        [check] = result.get_asset_check_evaluations()
        assert check.passed
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert meta["labels_on_failed_videos"].value == 1
    assert sorted(LensStorage().read_table("labels")["video_id"].to_list()) == [
        "cam1__broken",
        "cam1__good",
    ]


def _ingest(instance, *video_ids: str) -> None:
    instance.add_dynamic_partitions("videos", list(video_ids))
    job = defs.resolve_job_def("ingest_video")
    for vid in video_ids:
        assert job.execute_in_process(partition_key=vid, instance=instance).success


def test_removed_label_file_removes_its_labels_and_reviews_stay(home, write_video):
    """Issue 7.2: the label set follows the files present; a deletion makes a new version."""
    from datetime import UTC, datetime

    write_video(home / "landing/videos/cam1/a.mp4", 12)
    labels_dir = home / "landing/labels"
    labels_dir.mkdir(parents=True)
    (labels_dir / "main.csv").write_text("video,frame_index,label,annotator\na.mp4,1,good,ann\n")
    extra = labels_dir / "extra.csv"
    extra.write_text("video,frame_index,label,annotator\na.mp4,2,dent,bob\na.mp4,4,good,bob\n")
    storage = LensStorage()
    storage.write_table(
        pl.DataFrame(
            {
                "video_id": ["cam1__a"],
                "frame_index": [4],
                "label": ["dent"],
                "annotator": ["review"],
                "source": ["fiftyone"],
                "imported_at": [datetime(2024, 1, 1, tzinfo=UTC)],
            },
            schema={
                "video_id": pl.String,
                "frame_index": pl.Int64,
                "label": pl.String,
                "annotator": pl.String,
                "source": pl.String,
                "imported_at": pl.Datetime("us", "UTC"),
            },
        ),
        "label_reviews",
    )
    with dg.DagsterInstance.get() as instance:
        _ingest(instance, "cam1__a")
        assert materialize_labels(instance).success
        assert set(storage.read_table("labels")["source"]) == {"main.csv", "extra.csv", "fiftyone"}
        version = storage.table_version("labels")

        extra.unlink()
        result = materialize_labels(instance)
        assert result.success
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert meta["new_version"].value is True
    after = storage.read_table("labels").sort("frame_index")
    assert storage.table_version("labels") == version + 1
    assert after.select("frame_index", "label", "annotator").rows() == [
        (1, "good", "ann"),
        (4, "dent", "review"),
    ]


def test_lensline_run_after_removing_a_label_file_reimports(home, write_video):
    """Issue 7.2 through ``lensline run``: A, then A+B, then A again must not count as up to date."""
    from orchestration.runner import run_pending

    write_video(home / "landing/videos/cam1/a.mp4", 12)
    labels_dir = home / "landing/labels"
    labels_dir.mkdir(parents=True)
    (labels_dir / "main.csv").write_text("video,frame_index,label\na.mp4,1,good\n")
    extra = labels_dir / "extra.csv"
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        _ingest(instance, "cam1__a")
        assert run_pending(defs, instance, select="labels").downstream_ok
        extra.write_text("video,frame_index,label,annotator\na.mp4,2,dent,bob\n")
        assert run_pending(defs, instance, select="labels").downstream == ["labels"]
        assert storage.read_table("labels").height == 2
        extra.unlink()
        summary = run_pending(defs, instance, select="labels")
        assert summary.downstream == ["labels"], summary.stopped_reason
    assert storage.read_table("labels")["source"].to_list() == ["main.csv"]


def test_hostile_class_name_is_rejected_and_consensus_reads_a_list_column(home, write_video):
    """Issue 7.4: nothing with a bad class name is written; label_consensus reads list classes."""
    import numpy as np

    write_video(home / "landing/videos/cam1/a.mp4", 12)
    labels_dir = home / "landing/labels"
    labels_dir.mkdir(parents=True)
    rows = [
        f"a.mp4,{i},{'dent' if i % 3 == 0 else 'no defect'},{who}"
        for i in range(12)
        for who in ("ann", "bob")
    ]
    (labels_dir / "main.csv").write_text(
        "video,frame_index,label,annotator\n" + "\n".join(rows) + "\n"
    )
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        _ingest(instance, "cam1__a")
        assert materialize_labels(instance).success
        version = storage.table_version("labels")
        (labels_dir / "hostile.csv").write_text(
            'video,frame_index,label\na.mp4,1,"scr,atch ""big""\nline2"\na.mp4,2,'
            + "x" * 10_000
            + "\n"
        )
        result = materialize_labels(instance)
        [check] = result.get_asset_check_evaluations()
        assert not check.passed
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert "1-64 characters" in meta["rejected_files"].value
        assert storage.table_version("labels") == version
        assert storage.read_table("label_classes")["name"].to_list() == ["dent", "no defect"]

        rng = np.random.default_rng(0)
        probs = rng.dirichlet([1, 1], 12).astype(np.float32)
        embeddings = TABLES["frame_embeddings"].conform(
            pl.DataFrame(
                {
                    "video_id": ["cam1__a"] * 12,
                    "frame_index": list(range(12)),
                    "embedding": rng.normal(size=(12, 4)).astype(np.float32).tolist(),
                    "pred_probs": probs.tolist(),
                    "classes": [["dent", "no defect"]] * 12,
                },
                schema_overrides={
                    "embedding": pl.List(pl.Float32),
                    "pred_probs": pl.List(pl.Float32),
                },
            )
        )
        storage.write_table(embeddings, "frame_embeddings")
        consensus = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            asset_selection=[dg.AssetKey("label_consensus")], instance=instance
        )
        assert consensus.success
    got = storage.read_table("label_consensus").sort("frame_index")["consensus_label"].to_list()
    assert got == ["dent" if i % 3 == 0 else "no defect" for i in range(12)]

"""The whole graph, once, on a small demo set: real videos, Delta tables, Dagster runs, FiftyOne."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest

SMALL = {
    "ops": {
        "frame_embeddings": {"config": {"n_folds": 2, "epochs": 4}},
        "trained_model": {"config": {"epochs": 5, "sweep_trials": 2}},
    }
}


@pytest.mark.slow
def test_whole_graph_on_a_small_demo_set(home):
    from demo import make_demo_set
    from lake.fiftyone_db import shutdown
    from lake.storage import LensStorage
    from orchestration.definitions import defs
    from orchestration.runner import run_pending

    demo = make_demo_set(home / "landing", seed=1, cameras=2, videos_per_camera=2, seconds=10.0,
                         truth_path=home / "demo" / "truth.csv")  # fmt: skip
    storage = LensStorage()
    try:
        with dg.DagsterInstance.get() as instance:
            summary = run_pending(defs, instance, run_config=SMALL)
            assert summary.step_failures == [] and summary.downstream_ok
            assert [o.status for o in summary.ingested] == ["ok"] * 4
            assert summary.failed_checks == []  # first model: promoted, label files valid
            for key in ("raw_video", "frames", "labels", "frame_embeddings", "label_consensus",
                        "label_issues", "curated_dataset", "fiftyone_dataset", "fiftyone_predictions", "trained_model",
                        "model_evaluation"):  # fmt: skip
                assert instance.get_latest_materialization_event(dg.AssetKey(key)), key

            # lineage: the champion records the dataset and label versions it came from
            models = storage.read_table("models")
            champion = models.filter(pl.col("alias") == "champion").row(0, named=True)
            assert champion["dataset_version"] == storage.table_version("dataset")
            assert champion["label_version"] == storage.table_version("labels")

            trials = storage.read_table("sweep_trials")
            assert trials.height == 2 and trials["chosen"].sum() == 1  # every trial recorded

            # a rerun with nothing new does nothing
            again = run_pending(defs, instance, run_config=SMALL)
            assert again.ingested == [] and again.downstream == []
            assert "up to date" in again.stopped_reason

            # an upgrade that changes one export gate (INT8's allowance: a new code version of
            # int8_onnx) re-runs that export and what depends on it, nothing upstream
            from edge_export.targets import Int8Gate, Int8Target
            from orchestration.definitions import build_defs

            upgraded = build_defs(int8=Int8Target(gate=Int8Gate(max_drop_points=0.5)))
            bundles = len(
                instance.fetch_materializations(dg.AssetKey("edge_bundle"), limit=100).records
            )
            up = run_pending(upgraded, instance, run_config=SMALL)
            assert up.step_failures == [] and up.downstream_ok
            assert set(up.downstream) == {
                "int8_onnx",
                "tensorrt_engine",
                "edge_bundle",
                "deployments",
            }, up.downstream
            assert (
                len(instance.fetch_materializations(dg.AssetKey("edge_bundle"), limit=100).records)
                == bundles + 1
            )
            assert run_pending(upgraded, instance, run_config=SMALL).downstream == []  # settled

        quality = storage.read_table("annotator_quality")
        assert quality["annotator"][0] == "sloppy_sam"  # worst first
        dataset = storage.read_table("dataset")
        # each camera (2 videos: fewer than splits) is split on its own into guarded time blocks
        by_camera = dataset.with_columns(camera=pl.col("video_id").str.split("__").list.first())
        for (camera,), rows in by_camera.group_by("camera"):
            assert set(rows["split"]) == {"train", "val", "test"}, camera
        for (_,), rows in dataset.sort("video_id", "frame_index").group_by("video_id"):
            f, s = rows["frame_index"].to_numpy(), rows["split"].to_numpy()
            assert (np.diff(f)[s[1:] != s[:-1]] > 15).all()  # no near-duplicates across splits
        labeled = demo.truth.filter(pl.col("label").is_not_null()).height
        assert storage.read_table("label_consensus").height == labeled

        import fiftyone as fo

        ds = fo.load_dataset("lensline")
        assert len(ds) == labeled
        assert set(ds.list_saved_views()) >= {"label_issues", "near_duplicates", "low_quality"}
        assert ds.exists("predictions").count() == storage.read_table("dataset").height

        # a reviewer corrects a label in FiftyOne: it comes back as a new label version
        sample = ds.match({"split": "train"}).first()
        new_label = "dent" if sample.ground_truth.label != "dent" else "scratch"
        sample.ground_truth = fo.Classification(label=new_label)
        sample.save()
        labels_before = storage.table_version("labels")
        with dg.DagsterInstance.get() as instance:
            reviewed = run_pending(defs, instance, run_config=SMALL)
            assert reviewed.step_failures == [] and "label_reviews" in reviewed.downstream
        key = (pl.col("video_id") == sample.video_id) & (
            pl.col("frame_index") == sample.frame_index
        )
        review_rows = storage.read_table("labels").filter(key & (pl.col("annotator") == "review"))
        assert review_rows["label"].to_list() == [new_label]
        assert storage.table_version("labels") == labels_before + 1
        assert storage.read_table("dataset").filter(key)["label"].to_list() == [new_label]
        assert storage.read_table("label_reviews").height == 1

        # a challenger that cannot beat the champion by the required margin is archived, not promoted,
        # and the blocking gate stops what follows it; the same inputs are then settled
        champion_before = storage.read_table("models").filter(pl.col("alias") == "champion")[
            "model_version"
        ]
        strict = {"ops": {**SMALL["ops"], "trained_model": {"config": {"epochs": 5, "seed": 7}},
                          "model_evaluation": {"config": {"margin": 1.0}}}}  # fmt: skip
        with dg.DagsterInstance.get() as instance:
            gated = run_pending(defs, instance, run_config=strict, force=True)
            assert gated.step_failures == []
            assert any("promotion_gate" in c and "does not beat" in c for c in gated.failed_checks)
            assert run_pending(defs, instance, run_config=strict).downstream == []  # settled
        models = storage.read_table("models")
        assert models.filter(pl.col("alias") == "champion")["model_version"].equals(champion_before)
        assert models.filter(pl.col("alias") == "archived").height >= 1
    finally:
        shutdown(home=home)


@pytest.mark.slow
def test_whole_graph_on_s3(s3_env, tmp_path):
    """The same graph with landing zone, lake and artifacts on a real S3 endpoint (moto server)."""
    import boto3

    from demo import make_demo_set
    from lake.storage import LensStorage
    from orchestration.definitions import defs
    from orchestration.runner import run_pending

    local = tmp_path / "landing"
    make_demo_set(local, seed=2, cameras=2, videos_per_camera=2, seconds=8.0)
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    client = boto3.client("s3")
    for path in local.rglob("*"):
        if path.is_file():
            client.upload_file(
                str(path), bucket, f"plant-a/landing/{path.relative_to(local).as_posix()}"
            )
    storage = LensStorage()
    with dg.DagsterInstance.get() as instance:
        summary = run_pending(defs, instance, run_config=SMALL)
    assert summary.step_failures == [] and [o.status for o in summary.ingested] == ["ok"] * 4
    champion = storage.read_table("models").filter(pl.col("alias") == "champion")
    assert champion["checkpoint_uri"][0].startswith(s3_env + "/artifacts/models/")
    dataset, consensus = storage.read_table("dataset"), storage.read_table("label_consensus")
    assert 0 < dataset.height <= consensus.height and set(dataset["split"]) == {
        "train",
        "val",
        "test",
    }
    listed = client.list_objects_v2(Bucket=bucket, Prefix="plant-a/lake/dataset/_delta_log/")
    assert listed["KeyCount"] >= 1

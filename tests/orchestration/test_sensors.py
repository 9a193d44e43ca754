"""new_labels_sensor, fiftyone_review_sensor and the retraining schedule, evaluated directly."""

from __future__ import annotations

import os

import dagster as dg
import polars as pl

from lake.storage import LensStorage
from orchestration.definitions import defs
from orchestration.sensors import new_labels_sensor


def evaluate(instance, cursor=None):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": LensStorage()}
    )
    return new_labels_sensor(ctx), ctx


def test_new_label_files_request_the_labels_chain(home):
    labels = home / "landing/labels/batch1.csv"
    labels.parent.mkdir(parents=True)
    with dg.DagsterInstance.get() as instance:
        result, _ = evaluate(instance)
        assert isinstance(result, dg.SkipReason)  # no files yet

        labels.write_text("video,frame_index,label\na.mp4,1,good\n")
        result, _ = evaluate(instance)
        [request] = result.run_requests
        assert "batch1.csv" in request.tags["lensline/reason"]
        again, _ = evaluate(instance, cursor=result.cursor)
        assert isinstance(again, dg.SkipReason)

        labels.write_text("video,frame_index,label\na.mp4,1,good\na.mp4,2,dent\n")
        os.utime(labels, (1_900_000_000, 1_900_000_000))
        changed, _ = evaluate(instance, cursor=result.cursor)
        assert len(changed.run_requests) == 1 and changed.run_requests[0].run_key != request.run_key

        labels.unlink()  # a deleted label file is a change too: its labels must go
        removed, _ = evaluate(instance, cursor=changed.cursor)
        [request] = removed.run_requests
        assert "removed: batch1.csv" in request.tags["lensline/reason"]

    from orchestration.sensors import DOWNSTREAM_OF_LABELS

    assert defs.resolve_sensor_def("new_labels_sensor")
    graph = defs.resolve_asset_graph()
    targeted = {k.to_user_string() for k in DOWNSTREAM_OF_LABELS.resolve(graph)}
    assert {"labels", "curated_dataset", "trained_model", "model_evaluation"} <= targeted
    assert "frames" not in targeted
    # the pools, not tags, queue writers: an ingestion run beside others, the graph one at a time
    ingest = defs.resolve_job_def("ingest_video")
    assert {n.definition.pool for n in ingest.graph.nodes} == {"lake_ingest"}
    labels = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("labels")}
    )
    assert {n.definition.pool for n in labels.graph.nodes} == {"lake_graph"}
    schedule = defs.resolve_schedule_def("nightly_retrain")
    assert schedule.cron_schedule == "0 2 * * *"


def test_fiftyone_review_sensor_requests_labels_for_new_corrections(fo_home, tmp_path):
    """Evaluated directly: no database, no corrections, one reviewer edit, edit imported."""
    import fiftyone as fo

    from data_quality.fiftyone_sync import mark_corrections_imported, pull_corrections, sync_samples
    from lake.resources import FiftyOneResource
    from orchestration.sensors import fiftyone_review_sensor

    def evaluate(resource: FiftyOneResource):
        return fiftyone_review_sensor(dg.build_sensor_context(resources={"fiftyone": resource}))

    no_db = FiftyOneResource(dataset_name="review", home=str(tmp_path / "empty_home"))
    assert isinstance(evaluate(no_db), dg.SkipReason)
    assert not (tmp_path / "empty_home" / "fiftyone").exists()  # nothing started

    resource = FiftyOneResource(dataset_name="review", home=str(fo_home))
    assert isinstance(evaluate(resource), dg.SkipReason)  # no dataset yet
    samples = pl.DataFrame(
        {
            "filepath": [str(tmp_path / f"f{i}.jpg") for i in range(3)],
            "video_id": ["v0"] * 3,
            "frame_index": [0, 1, 2],
            "ground_truth": ["good", "good", "dent"],
        }
    )
    sync_samples("review", samples, classes=["good", "dent"], persistent=False)
    assert isinstance(evaluate(resource), dg.SkipReason)  # synced, nothing reviewed

    sample = fo.load_dataset("review").one(fo.ViewField("frame_index") == 1)
    sample.ground_truth = fo.Classification(label="dent")
    sample.save()
    request = evaluate(resource)
    assert isinstance(request, dg.RunRequest)
    assert request.tags["lensline/reason"] == "1 label correction(s) from FiftyOne review"

    mark_corrections_imported("review", pull_corrections("review"))
    assert isinstance(evaluate(resource), dg.SkipReason)

"""The single Dagster entry point: ``workspace.yaml`` and ``dagster dev`` load ``defs`` from here."""

import dagster as dg

from assets.bundle import edge_bundle, shadow_comparison
from assets.capture import capture_requests
from assets.curation import curated_dataset, fiftyone_dataset, fiftyone_predictions, label_issues
from assets.deployments import deployments
from assets.drift import drift_reference, drift_report, fiftyone_queues
from assets.export import export_assets, tensorrt_engine
from assets.features import frame_embeddings
from assets.fleet import edge_fleet, line_drift
from assets.ingest import raw_video_and_frames
from assets.labels import label_consensus, label_reviews, labels
from assets.line_config import line_config_assets, line_config_sensor
from assets.models import model_evaluation, trained_model
from lake.io import LakeJsonIOManager
from lake.resources import FiftyOneResource, PreprocessResource
from lake.storage import LensStorage
from orchestration.automation import automate, automation_sensor
from orchestration.executors import lensline_executor
from orchestration.jobs import ingest_job
from orchestration.maintenance import lake_maintenance_job, maintenance_schedule
from orchestration.sensors import (
    capture_reports_sensor,
    fiftyone_review_sensor,
    fleet_sensor,
    ingest_batch_retry_sensor,
    new_labels_sensor,
    new_video_sensor,
    retrain_schedule,
    shadow_sensor,
)


def build_defs(**export_targets) -> dg.Definitions:
    """Lensline's Definitions. ``export_targets`` (``onnx=``, ``int8=``, ``openvino=``: an
    :mod:`edge_export.targets` target with its gates) replace the default export targets: a
    plant's own gate thresholds, or a test's, become the export assets' code versions."""
    onnx_model, int8_onnx, openvino_model = export_assets(**export_targets)
    return dg.Definitions(
        assets=automate(
            [
                *line_config_assets,
                raw_video_and_frames,
                label_reviews,
                labels,
                frame_embeddings,
                label_consensus,
                label_issues,
                curated_dataset,
                fiftyone_dataset,
                fiftyone_predictions,
                trained_model,
                model_evaluation,
                onnx_model,
                int8_onnx,
                openvino_model,
                tensorrt_engine,
                edge_bundle,
                deployments,
                shadow_comparison,
                drift_reference,
                drift_report,
                fiftyone_queues,
                capture_requests,
                edge_fleet,
                line_drift,
            ]
        ),
        jobs=[ingest_job, lake_maintenance_job],
        executor=lensline_executor,  # LENSLINE_EXECUTOR: in_process | multiprocess | celery
        sensors=[
            new_video_sensor,
            ingest_batch_retry_sensor,
            new_labels_sensor,
            fiftyone_review_sensor,
            shadow_sensor,
            capture_reports_sensor,
            fleet_sensor,
            line_config_sensor,
            automation_sensor,
        ],
        schedules=[retrain_schedule, maintenance_schedule()],
        resources={
            "storage": LensStorage(),
            "fiftyone": FiftyOneResource(),
            "preprocess": PreprocessResource(),
            "lake_io": LakeJsonIOManager(storage=LensStorage()),
        },
    )


defs = build_defs()

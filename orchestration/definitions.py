"""The single Dagster entry point: ``workspace.yaml`` and ``dagster dev`` load ``defs`` from here."""

import dagster as dg

from assets.ingest import raw_video_and_frames
from orchestration.jobs import ingest_job
from orchestration.sensors import new_video_sensor
from orchestration.storage import LensStorage

defs = dg.Definitions(
    assets=[raw_video_and_frames],
    jobs=[ingest_job],
    sensors=[new_video_sensor],
    resources={"storage": LensStorage()},
)

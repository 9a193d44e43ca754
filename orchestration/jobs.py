"""Jobs: what sensors, schedules and the CLI launch."""

import dagster as dg

from lake.partitions import videos_partitions

# Runs that write the lake's shared Delta tables carry this tag and are queued one at a time
# (run_queue.tag_concurrency_limits in the instance's dagster.yaml): parallel Delta commits to
# one table conflict locally and can be lost on S3 without a lock provider.
LAKE_WRITER = {"lensline/lake": "writer"}

ingest_job = dg.define_asset_job(
    "ingest_video",
    selection=dg.AssetSelection.assets("raw_video", "frames", "drift_report"),
    partitions_def=videos_partitions,
    description="Verify one landed video, sample its frames into the lake and test it for drift "
    "against its camera's reference.",
    tags=LAKE_WRITER,
)

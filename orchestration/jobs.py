"""Jobs: what sensors, schedules and the CLI launch."""

import dagster as dg

from lake.partitions import videos_partitions

# Which runs may write the lake side by side is decided by the assets' concurrency pools
# (lake.pools), whatever launched the run: ingestion runs of different videos run side by side.

ingest_job = dg.define_asset_job(
    "ingest_video",
    selection=dg.AssetSelection.assets("raw_video", "frames", "drift_report"),
    partitions_def=videos_partitions,
    description="Verify one landed video, sample its frames into the lake and test it for drift "
    "against its camera's reference.",
)

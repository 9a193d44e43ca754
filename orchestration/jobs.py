"""Jobs: what sensors, schedules and the CLI launch."""

import dagster as dg

from orchestration.partitions import videos_partitions

ingest_job = dg.define_asset_job(
    "ingest_video",
    selection=dg.AssetSelection.assets("raw_video", "frames"),
    partitions_def=videos_partitions,
    description="Verify one landed video and sample its frames into the lake.",
)

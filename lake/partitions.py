"""Partitions: one dynamic partition per landed video."""

import dagster as dg

videos_partitions = dg.DynamicPartitionsDefinition(name="videos")

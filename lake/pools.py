"""Dagster concurrency pools of the lake: which runs may write side by side.

Every asset that writes the lake names its pool (``pool=`` on the decorator); the instance's run
queue admits a run only when each pool its steps use has a free slot (``concurrency: pools:
granularity: run`` in the ``dagster.yaml`` Lensline writes, ``orchestration.profiles``). So the
rule holds for every run alike: ``lensline run``'s, a sensor's, the automation sensor's, a
schedule's, one launched from the UI.

============  =====================================================  ====================
pool          what its assets write                                  slots
============  =====================================================  ====================
lake_ingest   one video's rows (videos, frames, drift_reports):       ``INGEST_SLOTS`` (8)
              appends and per-video replaces that Delta's conflict
              retry lets land side by side
lake_graph    whole-table rewrites of the graph (labels ...          1
              deployments, capture requests), lake maintenance
lake_fleet    the fleet tables (heartbeats, fleet state, line         1
              drift), so heartbeats never wait behind a training
============  =====================================================  ====================

Slots live in the instance (``dagster instance concurrency set lake_ingest N`` or the UI's
Concurrency page); ``ensure_pool_slots`` sets the defaults only where a pool has none yet, so an
operator's change stays.
"""

from __future__ import annotations

INGEST = "lake_ingest"
GRAPH = "lake_graph"
FLEET = "lake_fleet"
INGEST_SLOTS = 8
DEFAULT_SLOTS = {INGEST: INGEST_SLOTS, GRAPH: 1, FLEET: 1}


def ensure_pool_slots(instance) -> dict[str, int]:
    """Give each Lensline pool its default slots unless the instance already has a limit for
    it; returns the limits in force."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    known = {p.name: p.limit for p in storage.get_pool_limits() if not p.from_default}
    for pool, slots in DEFAULT_SLOTS.items():
        if pool not in known:
            storage.set_concurrency_slots(pool, slots)
            known[pool] = slots
    return {pool: known[pool] for pool in DEFAULT_SLOTS}

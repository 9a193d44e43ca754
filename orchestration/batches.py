"""Ingestion runs in batches: which videos share a run.

A run costs a fixed ~0.4 s (its Dagster events on the instance, a process to start) however
little it ingests, so when many videos are due they are ingested in *partition ranges*: one run
per batch of consecutive videos (Dagster's multi-partition runs, as the UI's backfills make
them under the assets' ``BackfillPolicy.multi_run``). A range is contiguous in the ``videos``
dynamic partitions' order, so a batch never skips over a video that is not due. Batches are cut
to balance bytes across the run workers, at most ``max_per_run`` videos each; one video keeps a
run of its own (its checks and metadata exactly as before).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lake.storage import LensStorage, StoredFile

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# a sensor's batch: its video ids (JSON), so ingest_batch_retry_sensor retries exactly those
BATCH_TAG = "lensline/batch"


def plan_batches(
    order: Sequence[str],
    todo: Sequence[str],
    sizes: Mapping[str, int],
    *,
    workers: int,
    max_per_run: int,
    alone: Collection[str] = (),
) -> list[list[str]]:
    """Split the due videos ``todo`` into batches of consecutive partitions.

    ``order`` is the partitions' order (a range spans it), ``sizes`` each video's bytes. At
    least ``min(len(todo), workers)`` batches (every worker gets one), at least
    ``ceil(len(todo) / max_per_run)``, each about the same number of bytes. Videos in ``alone``
    (e.g. files that will not open: their rejection would fail a whole batch) get a run each.
    """
    if max_per_run < 1 or workers < 1:
        raise ValueError(f"max_per_run={max_per_run} and workers={workers} must be at least 1")
    position = {key: i for i, key in enumerate(order)}
    missing = [key for key in todo if key not in position]
    if missing:
        raise ValueError(f"videos not registered as partitions: {', '.join(missing)}")
    due = sorted(set(todo), key=position.__getitem__)
    if not due:
        return []
    spans: list[list[str]] = [[due[0]]]  # runs of consecutive partitions
    for key in due[1:]:
        last = spans[-1][-1]
        if position[key] == position[last] + 1 and key not in alone and last not in alone:
            spans[-1].append(key)
        else:
            spans.append([key])
    count = max(math.ceil(len(due) / max_per_run), min(len(due), workers))
    weight = {key: max(int(sizes.get(key, 0)), 1) for key in due}
    target = sum(weight.values()) / count
    batches: list[list[str]] = []
    for span in spans:
        if span[0] in alone:
            batches.append(span)
            continue
        batch: list[str] = []
        load = 0
        for key in span:
            # close the batch when it is full, or when this video would take it further past
            # the target than stopping short of it
            if batch and (len(batch) >= max_per_run or load + weight[key] / 2 > target):
                batches.append(batch)
                batch, load = [], 0
            batch.append(key)
            load += weight[key]
        batches.append(batch)
    return batches


def opens_as_video(path: str) -> bool:
    """Whether PyAV opens ``path`` and finds a video stream (a header check, no decoding)."""
    import av

    try:
        with av.open(path) as container:
            return bool(container.streams.video)
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return False


def will_not_open(storage: LensStorage, videos: Mapping[str, StoredFile]) -> set[str]:
    """Due videos that are empty or (on a local lake) do not open as a video: each gets a run of
    its own, where its rejection is recorded with its checks, instead of failing a batch."""
    if len(videos) < 2:
        return set()
    empty = {vid for vid, f in videos.items() if f.size == 0}
    if storage.is_s3:  # opening would download the file twice; a bad one fails its batch
        return empty
    return empty | {
        vid for vid, f in videos.items() if vid not in empty and not opens_as_video(f.uri)
    }


IN_FLIGHT = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def in_flight(
    instance,
    order: Sequence[str],
    *,
    job_name: str = "ingest_video",
    counts: Callable[[Any], bool] | None = None,
) -> dict[str, str]:
    """``video_id -> run id`` for every video an unfinished run of ``job_name`` holds: its
    partition (``dagster/partition``) or a partition range, expanded in ``order``; only runs
    ``counts(run)`` accepts, when given. Dagster's one-run-per-``dagster/partition`` limit does
    not see ranges, so planners leave these videos to the run that holds them instead of
    ingesting them twice."""
    import dagster as dg

    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job_name, statuses=[dg.DagsterRunStatus[s] for s in IN_FLIGHT]
        )
    )
    position = {key: i for i, key in enumerate(order)}
    held: dict[str, str] = {}
    for run in runs:
        if counts is not None and not counts(run):
            continue
        if (key := run.tags.get("dagster/partition")) is not None:
            held[key] = run.run_id
            continue
        start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
        if start in position and end in position:
            for key in order[position[start] : position[end] + 1]:
                held[key] = run.run_id
    return held

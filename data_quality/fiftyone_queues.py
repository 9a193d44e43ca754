"""Work queues as FiftyOne saved views: frames to label after drift, frames where the shadow
model disagreed with the champion on the line.

The main ``lensline`` dataset holds exactly the curated, labelled frames (see
``fiftyone_sync``); queued frames are not labelled yet, so each queue lives in its own dataset
``<name>-<view>`` with one saved view ``<view>`` sorted by priority. Each publish replaces the
queue's samples with the current rows (a queue is a snapshot of its Delta table, not a log).
"""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = [
    "QUEUES",
    "needs_labels_frames",
    "publish_queue",
    "publish_queues",
    "queue_dataset_name",
    "shadow_disagreement_frames",
]


def queue_dataset_name(dataset_name: str, view: str) -> str:
    return f"{dataset_name}-{view}"


def publish_queue(
    dataset_name: str,
    view: str,
    frames: pl.DataFrame,
    *,
    description: str,
    sort_by: str | None = None,
    classes: list[str] | None = None,
) -> int:
    """Replace the ``<dataset_name>-<view>`` dataset with ``frames`` and save the view ``view``.

    Parameters
    ----------
    dataset_name, view
        The main FiftyOne dataset's name and the queue's (view) name.
    frames
        One row per frame: ``filepath`` (local image), ``video_id``, ``frame_index`` and any
        scalar columns (become fields of the same name); string columns ``*_label`` become
        ``fo.Classification`` fields (``shadow_label`` -> ``shadow``).
    description
        The saved view's description (shown in the App).
    sort_by
        Field the view is sorted by (ascending), e.g. ``priority``.

    Returns
    -------
    int
        Samples in the queue.
    """
    import fiftyone as fo

    name = queue_dataset_name(dataset_name, view)
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    dataset.persistent = True
    if classes:
        dataset.default_classes = list(classes)
    dataset.clear()
    samples = []
    for row in frames.iter_rows(named=True):
        fields: dict[str, Any] = {}
        for key, value in row.items():
            if key == "filepath" or value is None:
                continue
            if key.endswith("_label") and isinstance(value, str):
                fields[key[: -len("_label")] or "label"] = fo.Classification(label=value)
            elif isinstance(value, bool | int | float | str):
                fields[key] = value
        samples.append(fo.Sample(filepath=row["filepath"], tags=[view], **fields))
    if samples:
        dataset.add_samples(samples, progress=False)
    view_obj = dataset.sort_by(sort_by) if sort_by and samples else dataset.view()
    dataset.save_view(view, view_obj, description=description, overwrite=True)
    dataset.save()
    return len(samples)


#: view -> (description, field the view is sorted by)
QUEUES = {
    "needs_labels": (
        "Frames of drifted videos to label first (most uncertain and most novel)",
        "priority",
    ),
    "shadow_disagreements": (
        "Frames where the shadow (challenger) disagreed with the champion",
        "shadow_confidence",
    ),
}


def needs_labels_frames(queue: pl.DataFrame) -> pl.DataFrame:
    """The ``drift_queue`` rows (``video_id, frame_index, camera_id, uri, priority, reason,
    queued_at``) as queue frames (``uri`` -> ``filepath``)."""
    return queue.rename({"uri": "filepath"})


def shadow_disagreement_frames(
    shadow: pl.DataFrame, frames: pl.DataFrame, *, include_empty: bool = False
) -> pl.DataFrame:
    """The frames where the shadow model disagreed with the champion, as queue frames.

    Frames scored as showing no item (``item_present`` false) are left out unless
    ``include_empty``: a disagreement on empty belt is not worth a label (null, unscored,
    counts as an item).

    Parameters
    ----------
    shadow
        ``shadow_results`` rows: ``video``, ``frame_index``, ``label``, ``shadow_label`` and
        the confidences.
    frames
        The lake's ``frames``: ``video_id, frame_index, camera_id, uri`` and ``item_present``
        when the table has it (others ignored); only frames the lake holds (sampled) can be
        shown.
    include_empty
        Keep the frames without an item too.

    Returns
    -------
    pl.DataFrame
        One row per disagreeing frame: ``video_id``, ``frame_index``, ``champion_label``,
        ``shadow_label``, ..., ``camera_id``, ``filepath``.
    """
    if not include_empty and "item_present" in frames.columns:
        frames = frames.filter(pl.col("item_present").fill_null(True))
    frames = frames.select("video_id", "frame_index", "camera_id", "uri")
    return (
        shadow.filter(pl.col("label") != pl.col("shadow_label"))
        .rename({"video": "video_id", "label": "champion_label"})
        .join(frames, on=["video_id", "frame_index"], how="inner")
        .rename({"uri": "filepath"})
    )


def publish_queues(dataset_name: str, queues: dict[str, pl.DataFrame | None]) -> dict[str, int]:
    """Publish each queue of :data:`QUEUES` given (``view -> frames``; None: no such table
    yet, left as it is) with :func:`publish_queue`; samples per view published."""
    counts = {}
    for view, frames in queues.items():
        if frames is not None:
            description, sort_by = QUEUES[view]
            counts[view] = publish_queue(
                dataset_name, view, frames, description=description, sort_by=sort_by
            )
    return counts

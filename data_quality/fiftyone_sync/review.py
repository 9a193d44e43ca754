"""Views and review: saved views for reviewers, and their label corrections read back.

``lensline_synced_label`` keeps the ground truth Lensline last wrote, so reviewers' edits of
``ground_truth`` (or the tags ``relabel`` / ``ok``) can be read back with
:func:`pull_corrections` and marked with :func:`mark_corrections_imported`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from data_quality.fiftyone_sync.fields import (
    _KEY,
    _SYNCED,
    CORRECTION_COLUMNS,
    IMPORTED_TAG,
    REVIEW_TAGS,
    SAVED_VIEWS,
    _fo,
)

__all__ = ["ensure_saved_views", "mark_corrections_imported", "pull_corrections"]


def ensure_saved_views(dataset_name: str) -> list[str]:
    """Create or replace the saved views ``label_issues``, ``near_duplicates``, ``low_quality``.

    ``label_issues``: ``is_label_issue``, least ``label_quality`` first; ``near_duplicates``:
    ``is_near_duplicate``, sorted by ``near_duplicate_set``; ``low_quality``: ``is_dark`` or
    ``is_blurry`` or ``is_outlier``. A flag field the dataset lacks matches nothing.

    Returns
    -------
    list[str]
        The view names, in :data:`SAVED_VIEWS` order.
    """
    from fiftyone import ViewField as F

    dataset = _fo().load_dataset(dataset_name)
    schema = dataset.get_field_schema()

    def flagged(*fields):  # true, not merely non-null
        expr = F(fields[0]) == True  # noqa: E712
        for f in fields[1:]:
            expr = expr | (F(f) == True)  # noqa: E712
        return dataset.match(expr)

    def sort(view, field):
        return view.sort_by(field) if field in schema else view

    views = {
        "label_issues": (
            sort(flagged("is_label_issue"), "label_quality"),
            "Frames whose given label cleanlab doubts, least trustworthy first",
        ),
        "near_duplicates": (
            sort(flagged("is_near_duplicate"), "near_duplicate_set"),
            "Near-duplicate frames, grouped by set",
        ),
        "low_quality": (
            flagged("is_dark", "is_blurry", "is_outlier"),
            "Dark, blurry or outlier frames",
        ),
    }
    for name, (view, description) in views.items():
        dataset.save_view(name, view, description=description, overwrite=True)
    return list(SAVED_VIEWS)


def pull_corrections(dataset_name: str, *, since: datetime | None = None) -> pl.DataFrame:
    """Reviewers' label corrections not yet imported, as rows for the ``labels`` table.

    A correction is a sample whose ``ground_truth`` label differs from the one Lensline last
    synced (edited in the App or the Python API), or one tagged ``relabel`` (corrected label in
    ``ground_truth``) or ``ok`` (confirms the current label). Samples without a ground-truth
    label are skipped (a deleted label is not a label).

    Parameters
    ----------
    dataset_name : str
        FiftyOne dataset written by :func:`sync_samples`.
    since : datetime, optional
        Only samples modified after this instant (naive = UTC).

    Returns
    -------
    pl.DataFrame
        :data:`CORRECTION_COLUMNS`: ``video_id``, ``frame_index``, ``label``,
        ``annotator="review"``, ``source="fiftyone:<dataset>"``, ``reviewed_at`` (the sample's
        ``last_modified_at``), sorted by ``(video_id, frame_index)``.
    """
    dataset = _fo().load_dataset(dataset_name)
    if since is not None and since.tzinfo is not None:
        since = since.astimezone(UTC).replace(tzinfo=None)
    rows = []
    for vid, fidx, gt, synced, tags, modified in zip(
        *dataset.values(
            ["video_id", "frame_index", "ground_truth.label", _SYNCED, "tags", "last_modified_at"]
        ),
        strict=True,
    ):
        if gt is None or (gt == synced and not set(tags or []) & set(REVIEW_TAGS)):
            continue
        if since is not None and modified <= since:
            continue
        rows.append(
            {
                "video_id": vid,
                "frame_index": fidx,
                "label": gt,
                "annotator": "review",
                "source": f"fiftyone:{dataset_name}",
                "reviewed_at": modified.replace(tzinfo=UTC),
            }
        )
    return pl.DataFrame(rows, schema=CORRECTION_COLUMNS).sort(["video_id", "frame_index"])


def mark_corrections_imported(dataset_name: str, corrections: pl.DataFrame) -> None:
    """Record that ``corrections`` (from :func:`pull_corrections`) reached the labels table.

    For each row whose sample still carries that label: the synced label becomes the imported
    one, the ``relabel``/``ok`` tags are replaced by ``imported``. A sample edited again since
    the pull stays pending, so its newer label is pulled next time.
    """
    if corrections.is_empty():
        return
    dataset = _fo().load_dataset(dataset_name)
    wanted = {
        f"{r['video_id']}:{r['frame_index']}": r["label"] for r in corrections.iter_rows(named=True)
    }
    synced, tags = {}, {}
    for sid, key, gt, old in zip(
        *dataset.values(["id", _KEY, "ground_truth.label", "tags"]), strict=True
    ):
        if key in wanted and gt == wanted[key]:
            synced[sid] = gt
            tags[sid] = [t for t in (old or []) if t not in REVIEW_TAGS and t != IMPORTED_TAG] + [
                IMPORTED_TAG
            ]
    if synced:
        dataset.set_values(_SYNCED, synced, key_field="id", progress=False)
        dataset.set_values("tags", tags, key_field="id", progress=False)

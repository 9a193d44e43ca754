"""Samples in: :func:`sync_samples` writes Lensline frames to a FiftyOne dataset, diffing.

Samples are keyed by ``(video_id, frame_index)`` (field ``lensline_key``, unique index). A
re-sync diffs every synced field against what FiftyOne holds and writes only the differences
with bulk ``set_values``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from data_quality.fiftyone_sync.fields import (
    _ANNOTATIONS,
    _KEY,
    _SYNCED,
    REVIEW_TAGS,
    _annotator_input,
    _check_classes,
    _declare_schema,
    _desired,
    _field_plan,
    _field_value,
    _flag_tag,
    _fo,
    _norm,
    _same,
)

__all__ = ["sync_samples"]


def _load_or_create(name: str, *, persistent: bool):
    fo = _fo()
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    if dataset.persistent != persistent:
        dataset.persistent = persistent
    return dataset


def sync_samples(
    dataset_name: str,
    samples: pl.DataFrame,
    *,
    classes: Sequence[str],
    annotators: Sequence[str] = (),
    annotations: pl.DataFrame | None = None,
    persistent: bool = True,
    info: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Make the FiftyOne dataset hold exactly ``samples``, writing only what differs.

    Parameters
    ----------
    dataset_name : str
        FiftyOne dataset; created if missing.
    samples : pl.DataFrame
        One row per frame, unique on ``(video_id, frame_index)``. Required: ``filepath`` (local
        image), ``video_id``, ``frame_index``. Label columns ``ground_truth``, ``consensus``,
        ``annotator_<name>`` and ``prediction`` (+ ``prediction_confidence``) become
        ``fo.Classification`` fields (the prediction as ``predictions``). Every other scalar
        column (``camera_id``, ``split``, ``label_quality``, ``brightness``...) becomes a field of
        the same name. Boolean ``is_*`` / ``drift*`` columns are issue flags: a boolean field and,
        when true, a tag without the ``is_`` prefix (``is_label_issue`` -> ``label_issue``).
    classes : Sequence[str]
        The label set (``dataset.default_classes``); any other label raises ``ValueError``.
    annotators : Sequence[str]
        Annotator names whose ``annotator_<name>`` columns to sync; default: all such columns.
    annotations : pl.DataFrame, optional
        The annotators' labels in long form instead of ``annotator_<name>`` columns:
        ``video_id``, ``frame_index``, ``annotator``, ``label``, one row per (frame, annotator).
        Either way, above :data:`ANNOTATOR_FIELDS_MAX` annotators they are synced as the list
        field ``annotations`` (see the module docstring).
    persistent : bool
        Whether the dataset survives the database's last client (FiftyOne semantics).
    info : dict, optional
        Merged into ``dataset.info["lensline"]`` (e.g. ``{"dataset_version": 7}``), next to
        ``synced_at``, ``flag_tags`` and the counts of this sync.

    Returns
    -------
    dict[str, int]
        ``added``, ``updated``, ``removed``, ``unchanged`` sample counts. A second identical sync
        returns only ``unchanged`` and writes no sample.

    Notes
    -----
    Existing samples are compared field by field with what FiftyOne holds, so a change writes
    only the changed fields (one ``set_values`` per field) and edits made in the App to synced
    fields are reverted, except ``ground_truth``: a reviewer's pending correction (label
    differing from the synced one, or a ``relabel``/``ok`` tag) is kept until
    :func:`mark_corrections_imported`. Tags other than Lensline's flag tags are kept.
    """
    samples, annotators = _annotator_input(samples, annotators, annotations)
    plan = _field_plan(samples, annotators)
    _check_classes(samples, plan, classes)
    keys = [f"{v}:{f}" for v, f in zip(samples["video_id"], samples["frame_index"], strict=True)]
    if len(set(keys)) != len(keys):
        raise ValueError("samples are not unique on (video_id, frame_index)")
    desired = dict(zip(keys, _desired(samples, plan), strict=True))

    dataset = _load_or_create(dataset_name, persistent=persistent)
    _declare_schema(dataset, plan)
    if list(dataset.default_classes) != list(classes):
        dataset.default_classes = list(classes)
    lensline_info = dict(dataset.info.get("lensline", {}))
    flag_tags = set(lensline_info.get("flag_tags", [])) | {_flag_tag(c) for c in plan["flags"]}

    paths = list(next(iter(desired.values()), {}))
    extra = [p for p in ("ground_truth.label", _SYNCED) if p not in paths]
    actual = _actual(dataset, [*paths, *extra])
    removed = [sid for k, (sid, _) in actual.items() if k not in desired]
    added, changes, unchanged = [], {}, 0
    for key, want in desired.items():
        if key not in actual:
            added.append((key, want))
            continue
        sid, have_row = actual[key]
        pending = have_row["ground_truth.label"] != have_row[_SYNCED] or bool(
            set(have_row["tags"] or []) & set(REVIEW_TAGS)
        )
        want = want | {
            "tags": [t for t in have_row["tags"] or [] if t not in flag_tags] + want["tags"]
        }
        diff = {p for p in want if not _same(want[p], have_row[p])}
        if pending:
            diff.discard("ground_truth.label")
        if diff:
            changes[sid] = (want, diff)
        else:
            unchanged += 1

    if removed:
        dataset.delete_samples(removed)
    if added:
        _insert(dataset, added)
    if changes:
        _write_changes(dataset, changes)

    counts = {
        "added": len(added),
        "updated": len(changes),
        "removed": len(removed),
        "unchanged": unchanged,
    }
    lensline_info |= (info or {}) | {
        "synced_at": datetime.now(UTC).isoformat(),
        "flag_tags": sorted(flag_tags),
        "counts": counts,
    }
    dataset.info["lensline"] = lensline_info
    dataset.save()
    return counts


def _raw_label(label: Any, confidence: Any = None, **attrs: Any) -> dict[str, Any]:
    from bson import ObjectId

    doc = {"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": label}
    if confidence is not None:
        doc["confidence"] = confidence
    return doc | attrs


def _insert(dataset, added: list[tuple[str, dict[str, Any]]]) -> None:
    """Insert new samples as the documents ``dataset.add_samples`` writes, in bulk.

    ``add_samples`` builds a mongoengine document per sample and, after the insert, re-reads
    each one into a ``Sample`` that nobody here uses: ~8 ms per sample (100 k samples: 13
    minutes). The schema is declared and every value typed by polars before this point, so
    the documents are written directly (``_sample_collection``, FiftyOne 1.22's layout:
    ``_media_type``, ``_rand``, ``_dataset_id``, ``created_at``, ``last_modified_at``; labels as
    ``{"_id", "_cls", "tags", "label"[, "confidence"]}``). ``tests/data_quality/
    test_fiftyone_sync.py`` checks that FiftyOne reads them back as the samples it writes.
    """
    import random

    now = _norm(datetime.now(UTC))
    docs = []
    for key, want in added:
        doc: dict[str, Any] = {
            "filepath": want["filepath"],
            "tags": want["tags"],
            "_media_type": "image",
            "_rand": random.random() * 0.001 + 0.999,  # fiftyone.core.odm.sample._generate_rand
            "_dataset_id": dataset._doc.id,
            "created_at": now,
            "last_modified_at": now,
            _KEY: key,
        }
        for path, value in want.items():
            if path in ("filepath", "tags") or value is None:
                continue
            if path == _ANNOTATIONS:
                doc[path] = {
                    "_cls": "Classifications",
                    "classifications": [_raw_label(lab, annotator=who) for who, lab in value],
                }
            elif path.endswith(".label"):
                field = path.removesuffix(".label")
                doc[field] = _raw_label(value, want.get(f"{field}.confidence"))
            elif not path.endswith(".confidence"):
                doc[path] = value
        if want.get("ground_truth.label") is not None:
            doc[_SYNCED] = want["ground_truth.label"]
        docs.append(doc)
    for i in range(0, len(docs), 10_000):
        dataset._sample_collection.insert_many(docs[i : i + 10_000], ordered=False)


def _actual(dataset, paths: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``key -> (sample id, {path: value})`` of what FiftyOne holds, in :func:`_desired`'s form."""
    read = [p for p in paths if p != _ANNOTATIONS]
    if _ANNOTATIONS in paths:
        read += [
            f"{_ANNOTATIONS}.classifications.annotator",
            f"{_ANNOTATIONS}.classifications.label",
        ]
    ids, have, *cols = dataset.values(["id", _KEY, *read])
    columns = dict(zip(read, cols, strict=True))
    if _ANNOTATIONS in paths:
        who = columns.pop(f"{_ANNOTATIONS}.classifications.annotator")
        what = columns.pop(f"{_ANNOTATIONS}.classifications.label")
        columns[_ANNOTATIONS] = [
            tuple(zip(w, lab, strict=True)) if w is not None and lab is not None else None
            for w, lab in zip(who, what, strict=True)
        ]
    return {
        k: (ids[i], {p: c[i] for p, c in columns.items()})
        for i, k in enumerate(have)
        if k is not None
    }


def _write_changes(dataset, changes: dict[str, tuple[dict[str, Any], set[str]]]) -> None:
    """One bulk ``set_values`` per changed top-level field, keyed by sample id."""
    by_field: dict[str, dict[str, Any]] = {}
    for sid, (want, diff) in changes.items():
        for field in {p.split(".")[0] for p in diff}:
            by_field.setdefault(field, {})[sid] = _field_value(want, field)
        if "ground_truth.label" in diff:
            by_field.setdefault(_SYNCED, {})[sid] = want["ground_truth.label"]
    for field, values in by_field.items():
        dataset.set_values(field, values, key_field="id", progress=False)

"""FiftyOne integration: Lensline samples in, reviewers' label corrections out.

The database FiftyOne talks to is infrastructure: :class:`lake.resources.FiftyOneResource`
starts (or reuses) the home's bundled ``mongod`` and points FiftyOne at it
(:mod:`lake.fiftyone_db`) before any function here runs. This module only syncs.

Annotators' labels: up to :data:`ANNOTATOR_FIELDS_MAX` annotators, one ``fo.Classification``
field per annotator (``annotator_<name>``); above that (thousands of annotators would mean
thousands of fields, which neither MongoDB documents nor the App handle well), one list field
``annotations`` (``fo.Classifications``), one ``fo.Classification`` per label with the annotator
in its ``annotator`` attribute (App filter: ``annotations.classifications.annotator``). Switching
between the two removes the fields of the other form.

Samples are keyed by ``(video_id, frame_index)`` (field ``lensline_key``, unique index). A
re-sync diffs every synced field against what FiftyOne holds and writes only the differences
with bulk ``set_values``. ``lensline_synced_label`` keeps the ground truth Lensline last wrote,
so reviewers' edits of ``ground_truth`` (or the tags ``relabel`` / ``ok``) can be read back with
:func:`pull_corrections`.

Example::

    from data_quality import fiftyone_sync as fos

    FiftyOneResource(home=str(home)).connect()  # orchestration: before fiftyone is imported
    fos.sync_samples("lensline", frame, classes=["good", "defect"])
    fos.ensure_saved_views("lensline")
    corrections = fos.pull_corrections("lensline")  # -> rows for the labels table
    fos.mark_corrections_imported("lensline", corrections)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

__all__ = [
    "ANNOTATOR_FIELDS_MAX",
    "CORRECTION_COLUMNS",
    "SAVED_VIEWS",
    "ensure_saved_views",
    "mark_corrections_imported",
    "pull_corrections",
    "sync_samples",
]

SAVED_VIEWS = ("label_issues", "near_duplicates", "low_quality")
CORRECTION_COLUMNS: dict[str, pl.DataType] = {
    "video_id": pl.String(),
    "frame_index": pl.Int64(),
    "label": pl.String(),
    "annotator": pl.String(),
    "source": pl.String(),
    "reviewed_at": pl.Datetime("us", "UTC"),
}
REVIEW_TAGS = ("relabel", "ok")
IMPORTED_TAG = "imported"

ANNOTATOR_FIELDS_MAX = 16  # more annotators: one ``annotations`` list field

_KEY, _SYNCED = "lensline_key", "lensline_synced_label"
_LABEL_COLUMNS = ("ground_truth", "consensus")  # + annotator_<name>; prediction -> predictions
_ANNOTATIONS = "annotations"  # fo.Classifications, one per label, attribute ``annotator``
_LIST = "_annotations"  # column of (annotator, label) structs built by _annotator_input
_RESERVED = {
    "id",
    "_id",
    "tags",
    "metadata",
    "created_at",
    "last_modified_at",
    "predictions",
    _ANNOTATIONS,
    _LIST,
}


# --------------------------------------------------------------------------- samples in


def _fo():
    import fiftyone as fo

    return fo


def _load_or_create(name: str, *, persistent: bool):
    fo = _fo()
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    if dataset.persistent != persistent:
        dataset.persistent = persistent
    return dataset


def _annotator_input(
    samples: pl.DataFrame, annotators: Sequence[str], annotations: pl.DataFrame | None
) -> tuple[pl.DataFrame, list[str]]:
    """Samples with the annotators' labels as ``annotator_<name>`` columns, or (above
    :data:`ANNOTATOR_FIELDS_MAX` annotators) as one list column ``_annotations``."""
    keys = ["video_id", "frame_index"]
    if _LIST in samples.columns:
        raise ValueError(f"columns {[_LIST]} collide with FiftyOne/Lensline fields")
    wide = [c for c in samples.columns if c.startswith("annotator_")]
    if annotations is None:
        if len(annotators or wide) <= ANNOTATOR_FIELDS_MAX:
            return samples, list(annotators)
        cols = [f"annotator_{a}" for a in annotators] or wide
        absent = sorted(set(cols) - set(samples.columns))
        if absent:
            raise ValueError(f"annotator columns {absent} not in samples")
        annotations = (
            samples.select(*keys, *cols)
            .unpivot(cols, index=keys, variable_name="annotator", value_name="label")
            .drop_nulls("label")
            .with_columns(pl.col("annotator").str.strip_prefix("annotator_"))
        )
    elif wide:
        raise ValueError("pass annotators' labels as annotator_<name> columns or annotations")
    missing = {*keys, "annotator", "label"} - set(annotations.columns)
    if missing:
        raise ValueError(f"annotations lack columns {sorted(missing)}")
    samples = samples.drop(wide)
    names = sorted(annotations["annotator"].unique().to_list())
    if len(names) <= ANNOTATOR_FIELDS_MAX:
        pivot = annotations.pivot(on="annotator", index=keys, values="label", sort_columns=True)
        renamed = pivot.rename({a: f"annotator_{a}" for a in names})
        return samples.join(renamed, on=keys, how="left"), names
    per_frame = (
        annotations.sort([*keys, "annotator"])
        .group_by(keys, maintain_order=True)
        .agg(pl.struct("annotator", "label").alias(_LIST))
    )
    return samples.join(per_frame, on=keys, how="left"), []


def _field_plan(samples: pl.DataFrame, annotators: Sequence[str]) -> dict[str, Any]:
    """Which columns become Classification fields, scalar fields and flag tags."""
    missing = {"filepath", "video_id", "frame_index"} - set(samples.columns)
    if missing:
        raise ValueError(f"samples lacks required columns {sorted(missing)}")
    reserved = sorted(
        c for c in samples.columns if c in _RESERVED - {_LIST} or c.startswith("lensline_")
    )
    if reserved:
        raise ValueError(f"columns {reserved} collide with FiftyOne/Lensline fields")
    ann_cols = [f"annotator_{a}" for a in annotators] or sorted(
        c for c in samples.columns if c.startswith("annotator_")
    )
    absent = sorted(set(ann_cols) - set(samples.columns))
    if absent:
        raise ValueError(f"annotator columns {absent} not in samples")
    labels = [c for c in _LABEL_COLUMNS if c in samples.columns] + ann_cols
    skip = {
        "filepath",
        "prediction",
        "prediction_confidence",
        _LIST,
        *labels,
        *(c for c in samples.columns if c.startswith("annotator_")),
    }
    scalars = {}
    for c, dtype in samples.schema.items():
        if c in skip or dtype == pl.Null:
            continue
        if not (
            dtype.is_integer()
            or dtype.is_float()
            or dtype in (pl.String, pl.Boolean)
            or isinstance(dtype, pl.Categorical | pl.Enum | pl.Datetime)
        ):
            raise ValueError(f"column {c!r} has unsupported dtype {dtype}")
        scalars[c] = dtype
    flags = [c for c, t in scalars.items() if t == pl.Boolean and (c.startswith(("is_", "drift")))]
    return {
        "labels": labels,
        "scalars": scalars,
        "flags": flags,
        "prediction": "prediction" in samples.columns,
        "annotations": _LIST in samples.columns,
    }


def _flag_tag(column: str) -> str:
    return column.removeprefix("is_")


def _norm(value: Any) -> Any:
    """A value as FiftyOne hands it back (naive UTC datetimes at millisecond precision)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _same(a: Any, b: Any) -> bool:
    return a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    )


def _desired(samples: pl.DataFrame, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Per row, what each synced path (``field`` or ``field.label``) should hold, plus flag tags."""
    rows = []
    for r in samples.iter_rows(named=True):
        d: dict[str, Any] = {"filepath": str(Path(r["filepath"]).expanduser().absolute())}
        d |= {c: _norm(r[c]) for c in plan["scalars"]}
        d |= {f"{c}.label": r[c] for c in plan["labels"]}
        if plan["annotations"]:
            d[_ANNOTATIONS] = (
                tuple((a["annotator"], a["label"]) for a in r[_LIST]) if r[_LIST] else None
            )
        if plan["prediction"]:
            d["predictions.label"] = r["prediction"]
            conf = r.get("prediction_confidence")
            d["predictions.confidence"] = (
                None if r["prediction"] is None or conf is None else float(conf)
            )
        d["tags"] = sorted(_flag_tag(c) for c in plan["flags"] if r[c])
        rows.append(d)
    return rows


def _field_value(d: dict[str, Any], field: str) -> Any:
    """The FiftyOne value of top-level ``field`` for desired row ``d``."""
    if field == _ANNOTATIONS:
        fo = _fo()
        pairs = d[_ANNOTATIONS]
        if pairs is None:
            return None
        return fo.Classifications(
            classifications=[fo.Classification(label=lab, annotator=who) for who, lab in pairs]
        )
    if f"{field}.label" not in d:
        return d[field]
    if d[f"{field}.label"] is None:
        return None
    return _fo().Classification(label=d[f"{field}.label"], confidence=d.get(f"{field}.confidence"))


def _declare_schema(dataset, plan: dict[str, Any]) -> None:
    fo = _fo()
    schema = dataset.get_field_schema()
    label_fields = [
        "ground_truth",
        *plan["labels"],
        *(["predictions"] if plan["prediction"] else []),
    ]
    wanted: dict[str, tuple] = {
        c: (fo.EmbeddedDocumentField, fo.Classification) for c in label_fields
    }
    for c, t in plan["scalars"].items():
        ftype = (
            fo.BooleanField
            if t == pl.Boolean
            else fo.IntField
            if t.is_integer()
            else fo.FloatField
            if t.is_float()
            else fo.DateTimeField
            if isinstance(t, pl.Datetime)
            else fo.StringField
        )
        wanted[c] = (ftype, None)
    wanted |= {_KEY: (fo.StringField, None), _SYNCED: (fo.StringField, None)}
    if plan["annotations"]:
        wanted[_ANNOTATIONS] = (fo.EmbeddedDocumentField, fo.Classifications)
    stale = [  # the annotators' labels are in one form: drop the fields of the other
        f
        for f in schema
        if (f.startswith("annotator_") and plan["annotations"])
        or (f == _ANNOTATIONS and not plan["annotations"])
        or (f.startswith("annotator_") and f not in wanted)
    ]
    if stale:
        dataset.delete_sample_fields(stale)
        schema = dataset.get_field_schema()
    for name, (ftype, doc) in wanted.items():
        if name not in schema:
            dataset.add_sample_field(name, ftype, **({"embedded_doc_type": doc} if doc else {}))
            if name == _ANNOTATIONS:
                dataset.add_sample_field(f"{name}.classifications.annotator", fo.StringField)
        elif type(schema[name]) is not ftype or (doc and schema[name].document_type is not doc):
            raise ValueError(
                f"field {name!r} is {schema[name]} in dataset {dataset.name!r}, "
                f"samples need {ftype.__name__}; delete the dataset or rename the column"
            )
    if _KEY not in dataset.list_indexes():
        dataset.create_index(_KEY, unique=True)


def _check_classes(samples: pl.DataFrame, plan: dict[str, Any], classes: Sequence[str]) -> None:
    cols = [
        *plan["labels"],
        *(["prediction"] if plan["prediction"] else []),
        *(["suggested_label"] if "suggested_label" in samples.columns else []),
    ]
    seen: set[str] = set()
    for c in cols:
        seen |= set(samples[c].drop_nulls().cast(pl.String).unique().to_list())
    if plan["annotations"]:
        listed = samples[_LIST].explode().drop_nulls().struct.field("label")
        seen |= set(listed.unique().to_list())
    unknown = sorted(seen - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not in classes {list(classes)}")


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


# --------------------------------------------------------------------------- views and review


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

"""The FiftyOne fields of Lensline samples: names, the field plan, schema and desired values.

What :func:`data_quality.fiftyone_sync.sync_samples` writes, worked out from the samples
frame: which columns become ``fo.Classification`` fields, scalar fields and flag tags
(:func:`_field_plan`), the annotators' labels in their two forms (:func:`_annotator_input`),
each sample's desired values (:func:`_desired`) and the dataset schema (:func:`_declare_schema`).
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
    "IMPORTED_TAG",
    "REVIEW_TAGS",
    "SAVED_VIEWS",
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


def _fo():
    import fiftyone as fo

    return fo


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

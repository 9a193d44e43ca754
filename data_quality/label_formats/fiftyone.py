"""FiftyOne ``FiftyOneImageClassificationDataset`` exports (``labels.json`` with ``labels``)."""

from __future__ import annotations

from pathlib import Path

from data_quality.label_formats.common import (
    LabelFileError,
    RawRow,
    VideoIndex,
    clean,
    escapes,
    parse_image_name,
)

__all__ = ["read_fiftyone"]


def read_fiftyone(path: Path, data: dict, root: Path, index: VideoIndex) -> list[RawRow]:
    classes = data.get("classes")
    labels = data.get("labels")
    if not isinstance(labels, dict):
        raise LabelFileError(path, ["FiftyOne labels.json needs a 'labels' object"])
    rows = []
    for key in sorted(labels):
        target = labels[key]
        where = f"labels[{key!r}]"
        if target is None:
            continue
        if escapes(key, root):
            rows.append(
                RawRow(where, None, None, None, None, f"path {key!r} is outside the landing zone")
            )
            continue
        video, frame, problem = parse_image_name(key, index)
        annotator = None
        if isinstance(target, list):
            problem = problem or "multi-label targets are not supported"
            target = None
        elif isinstance(target, dict):
            annotator = clean((target.get("attributes") or {}).get("annotator"))
            target = target.get("label")
        if isinstance(target, int) and not isinstance(target, bool) and classes:
            if 0 <= target < len(classes):
                target = classes[target]
            else:
                problem = problem or f"class index {target} out of range ({len(classes)} classes)"
        rows.append(RawRow(where, video, frame, clean(target), annotator, problem))
    return rows

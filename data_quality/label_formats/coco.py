"""COCO JSON label files (classification or detection): one frame label per image and annotator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_quality.label_formats.common import (
    LabelFileError,
    RawRow,
    VideoIndex,
    clean,
    escapes,
    parse_image_name,
)

__all__ = ["read_coco"]


def _frame_label_from_objects(objects: list[Any], classes_map: dict[Any, str]) -> str:
    """Majority category; ties by larger total box area, then by name."""
    count: dict[str, int] = {}
    area: dict[str, float] = {}
    for obj in objects:
        name = classes_map[obj.category_id]
        count[name] = count.get(name, 0) + 1
        a = obj.area
        if a is None and obj.bbox is not None and len(obj.bbox) == 4:
            a = float(obj.bbox[2]) * float(obj.bbox[3])
        area[name] = area.get(name, 0.0) + float(a or 0.0)
    return min(count, key=lambda n: (-count[n], -area[n], n))


def read_coco(path: Path, data: dict, root: Path, index: VideoIndex, empty_label: str | None):
    problems = []
    images = data.get("images") or []
    categories = data.get("categories")
    if not isinstance(images, list) or not isinstance(categories, list) or not categories:
        raise LabelFileError(path, ["COCO file needs an 'images' list and a 'categories' list"])
    image_ids = {img.get("id") for img in images if isinstance(img, dict)}
    cat_ids = {c.get("id") for c in categories if isinstance(c, dict)}
    for j, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            problems.append(f"image #{j}: needs 'id' and 'file_name'")
    for j, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict):
            problems.append(f"annotation #{j}: not an object")
            continue
        where = f"annotation #{j} (id={ann.get('id')})"
        if ann.get("image_id") not in image_ids:
            problems.append(f"{where}: unknown image_id {ann.get('image_id')!r}")
        elif ann.get("category_id") not in cat_ids:
            problems.append(f"{where}: unknown category_id {ann.get('category_id')!r}")
    if problems:
        raise LabelFileError(path, problems)

    from fiftyone.utils.coco import load_coco_detection_annotations

    info, classes_map, _, images_by_id, objects_by_image = load_coco_detection_annotations(
        str(path), extra_attrs=True
    )
    objects_by_image = objects_by_image or {}
    default_annotator = clean((info or {}).get("contributor"))
    rows = []
    for image_id in sorted(images_by_id, key=str):
        img = images_by_id[image_id]
        name = str(img["file_name"])
        where = f"image id={image_id} ({name})"
        if escapes(name, root):
            rows.append(
                RawRow(where, None, None, None, None, f"path {name!r} is outside the landing zone")
            )
            continue
        video, frame, problem = parse_image_name(name, index)
        by_annotator: dict[str, list[Any]] = {}
        for obj in objects_by_image.get(image_id, []):
            who = (
                clean((getattr(obj, "attributes", None) or {}).get("annotator"))
                or clean(img.get("annotator"))
                or default_annotator
                or "unknown"
            )
            by_annotator.setdefault(who, []).append(obj)
        if not by_annotator:
            if empty_label is None:
                continue
            who = clean(img.get("annotator")) or default_annotator or "unknown"
            rows.append(RawRow(where, video, frame, empty_label, who, problem))
            continue
        for who in sorted(by_annotator):
            label = _frame_label_from_objects(by_annotator[who], classes_map)
            rows.append(RawRow(where, video, frame, label, who, problem))
    return rows

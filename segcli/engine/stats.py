"""``segcli stats``: what an annotation set holds and what is wrong with it, changing nothing.

Counts images, objects per category and shape, empty images and object sizes (COCO's small,
medium and large buckets, by mask area), and lists problems the way a doctor command would:
invalid entries, duplicate or unknown ids, missing or unreadable images, size mismatches,
shapes outside the image or degenerate, with where each one is.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from segcli.formats import geometry
from segcli.formats.coco import annotation_to_json
from segcli.formats.io import default_images_dir, locate_images, read_annotations
from segcli.ledger import INFO_ACTIONS, Ledger
from segcli.structures import Annotation

SMALL_AREA, MEDIUM_AREA = 32**2, 96**2


def dataset_stats(path: Path, images_dir: Path | None = None, label_attr: str | None = None,
                  category: str = "object") -> dict:
    """Statistics and problems of an annotation file, as a JSON-able dict."""
    ledger = Ledger(str(path))
    dataset = read_annotations(Path(path), ledger, label_attr, category, images_dir)
    if dataset.source_format != "masks":
        folder = locate_images(dataset, images_dir, ledger, require_found=False)
    else:
        folder = Path(images_dir) if images_dir is not None else default_images_dir(dataset)
    areas = [_area(a, image, ledger) for image in dataset.images for a in image.annotations]
    areas = [a for a in areas if a is not None]
    per_category = Counter(a.category for image in dataset.images for a in image.annotations)
    images_per_category = Counter(c for image in dataset.images
                                  for c in {a.category for a in image.annotations})
    problems = [e for e in ledger.entries if e.action not in INFO_ACTIONS]
    found = sum(1 for image in dataset.images if image.path is not None)
    return {
        "file": str(path),
        "format": dataset.source_format,
        "label_attr": dataset.label_attr,
        "image_folder": str(folder),
        "images": len(dataset.images),
        "images_found": found,
        "images_hint": _images_hint(len(dataset.images) - found, len(dataset.images), folder, images_dir,
                                    dataset.source_format),
        "empty_images": sum(1 for image in dataset.images if not image.annotations),
        "objects": dataset.num_annotations,
        "non_area_regions": sum(len(image.nonarea_regions) for image in dataset.images),
        "categories": [{"id": c.id, "name": c.name, "objects": per_category.get(c.name, 0),
                        "images": images_per_category.get(c.name, 0)} for c in dataset.categories],
        "shapes": dict(Counter(a.shape_name for image in dataset.images for a in image.annotations)),
        "sizes": _size_summary(areas),
        "problems": [{"action": e.action, "image": e.image, "item": e.item, "reason": e.reason}
                     for e in problems],
        "notes": [{"action": e.action, "image": e.image, "item": e.item, "reason": e.reason}
                  for e in ledger.entries if e.action in INFO_ACTIONS and e.action != "kept"],
    }


def _images_hint(missing: int, total: int, folder: Path, images_dir: Path | None, source_format: str) -> str | None:
    """What to do when images are not found: say where they were looked for and how to say where they are."""
    if not missing or source_format == "masks":  # label maps carry their sizes; images are optional
        return None
    where = "the folder given" if images_dir is not None else "the annotation file's folder or the one it records"
    return (f"{missing} of {total} images not found in {folder} ({where}): pass --images DIR, "
            "the folder that holds them, to check their sizes and shapes against the files")


def _area(annotation: Annotation, image, ledger: Ledger) -> float | None:
    """Mask area when the image size is known (problems go to the ledger), else polygon area."""
    if image.width is not None:
        record = annotation_to_json(annotation, image, ledger)
        return record["area"] if record is not None else None
    if annotation.via_shape is not None:
        return abs(geometry.shoelace_area(geometry.via_shape_to_points(annotation.via_shape)))
    if annotation.polygons is not None:
        return sum(abs(geometry.shoelace_area(np.asarray(p).reshape(-1, 2))) for p in annotation.polygons if len(p) >= 6)
    if annotation.rle is not None:
        return float(geometry.rle_area_bbox(annotation.rle)[0])
    return annotation.bbox_xywh[2] * annotation.bbox_xywh[3]


def _size_summary(areas: list[float]) -> dict:
    if not areas:
        return {"small": 0, "medium": 0, "large": 0, "min_area": None, "median_area": None, "max_area": None}
    values = np.asarray(areas, dtype=np.float64)
    return {"small": int((values < SMALL_AREA).sum()),
            "medium": int(((values >= SMALL_AREA) & (values < MEDIUM_AREA)).sum()),
            "large": int((values >= MEDIUM_AREA).sum()),
            "min_area": float(values.min()), "median_area": float(np.median(values)),
            "max_area": float(values.max())}

"""Masks a model trains on: each annotation of an image rasterised (as COCO writes it), and
label maps painted from them. Used by ``--to masks`` and by the training datasets, so the pixels
a model learns are exactly those a COCO file written by segcli describes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segcli.formats import geometry
from segcli.formats.coco import annotation_to_json
from segcli.ledger import Ledger
from segcli.structures import Annotation, ImageRecord

IGNORE_INDEX = 255


@dataclass
class ObjectMask:
    """One annotation rasterised: its compressed RLE, pixel area and box ``[x, y, w, h]``."""

    annotation: Annotation
    rle: dict
    area: float
    bbox_xywh: list[float]


def rasterize_image(image: ImageRecord, ledger: Ledger) -> list[ObjectMask]:
    """Masks of every annotation of an image of known size (dropped ones go to the ledger)."""
    objects = []
    for annotation in image.annotations:
        record = annotation_to_json(annotation, image, ledger)
        if record is None:
            continue
        segmentation = record["segmentation"]
        if isinstance(segmentation, dict):
            rle = geometry.rle_from_json(segmentation, image.height, image.width)
        else:
            x, y, w, h = record["bbox"]
            parts = segmentation or [[x, y, x + w, y, x + w, y + h, x, y + h]]  # box-only: the box
            rle = geometry.polygons_to_rle(parts, image.height, image.width)
        objects.append(ObjectMask(annotation, rle, record["area"], record["bbox"]))
    return objects


def render_label_map(image: ImageRecord, objects: list[ObjectMask], class_index: dict[str, int],
                     dtype=np.uint8) -> np.ndarray:
    """H x W label map: 0 background, ``class_index[category]`` per object, 255 for crowd.

    Objects are painted largest first so that where two overlap the smaller one stays visible;
    crowd regions are painted first and ordinary objects over them.
    """
    label_map = np.zeros((image.height, image.width), dtype=dtype)
    for obj in paint_order(objects):
        value = IGNORE_INDEX if obj.annotation.iscrowd else class_index[obj.annotation.category]
        label_map[geometry.rle_to_mask(obj.rle)] = value
    return label_map


def paint_order(objects: list[ObjectMask]) -> list[ObjectMask]:
    """The order objects are painted into a label map: crowd regions first, then the largest
    first (ties in file order), so that a small object on a large one stays visible."""
    return sorted(objects, key=lambda o: (-o.annotation.iscrowd, -o.area))

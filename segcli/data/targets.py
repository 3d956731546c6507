"""Training targets from the dataset model: per-image instance targets and label maps.

Built on ``formats.rasterize`` so a model learns exactly the masks a COCO file written by segcli
holds. Numpy only here; the torch datasets wrap these.
"""

from __future__ import annotations

import numpy as np

from segcli.formats import geometry
from segcli.formats.rasterize import ObjectMask, render_label_map
from segcli.structures import Dataset, ImageRecord


def class_index(dataset: Dataset) -> dict[str, int]:
    """Model label of each category name: 1..N in category-id order (0 is background)."""
    return {c.name: i for i, c in enumerate(dataset.categories, start=1)}


def instance_target(objects: list[ObjectMask], classes: dict[str, int], height: int, width: int) -> dict:
    """Mask R-CNN target arrays for one image; crowd regions are left out.

    Returns:
        ``boxes`` float32 [N, 4] (x1, y1, x2, y2), ``labels`` int64 [N], ``masks`` uint8 [N, H, W].
    """
    kept = [o for o in objects if not o.annotation.iscrowd]
    masks = np.zeros((len(kept), height, width), dtype=np.uint8)
    boxes = np.zeros((len(kept), 4), dtype=np.float32)
    for i, obj in enumerate(kept):
        masks[i] = geometry.rle_to_mask(obj.rle)
        x, y, w, h = obj.bbox_xywh
        boxes[i] = (x, y, x + w, y + h)
    labels = np.array([classes[o.annotation.category] for o in kept], dtype=np.int64)
    return {"boxes": boxes, "labels": labels, "masks": masks}


def semantic_target(image: ImageRecord, objects: list[ObjectMask], classes: dict[str, int]) -> np.ndarray:
    """int64 H x W label map (0 background, 255 ignored) for one image."""
    return render_label_map(image, objects, classes).astype(np.int64)

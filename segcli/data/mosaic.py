"""Mosaic augmentation for instance training (``segcli train --mosaic``), as YOLOv4/v5/v8 use it:
four training images in one, around a random centre, so every step sees more objects, more
scales and objects cut by image borders.

The canvas is twice the first image's size; the four images meet at a centre drawn from its
middle half, each with a corner on the centre (top-left, top-right, bottom-left, bottom-right),
cut where it leaves the canvas. An object keeps the part of its mask inside its quadrant; one
left with fewer than ``MIN_PIXELS`` pixels or under ``MIN_KEPT`` of its area is dropped. Boxes are
recomputed from the masks (pixel edges, as pycocotools' boxes). The model resizes the canvas to
its own input size, as it does any image.
"""

from __future__ import annotations

import numpy as np

MIN_PIXELS = 16
MIN_KEPT = 0.1
FILL = 114  # the grey YOLO fills a mosaic's empty parts with


def mosaic(tiles: list[tuple[np.ndarray, dict]], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Four (H x W x 3 uint8 pixels, target) -> one of twice the first's size.

    Targets as ``data.targets.instance_target`` makes them: ``boxes`` float32 [N, 4] (x1, y1,
    x2, y2), ``labels`` int64 [N], ``masks`` uint8 [N, H, W].
    """
    height, width = tiles[0][0].shape[:2]
    canvas_h, canvas_w = 2 * height, 2 * width
    yc, xc = int(rng.uniform(0.5 * height, 1.5 * height)), int(rng.uniform(0.5 * width, 1.5 * width))
    canvas = np.full((canvas_h, canvas_w, 3), FILL, dtype=np.uint8)
    masks, labels = [], []
    for corner, (pixels, target) in enumerate(tiles[:4]):
        th, tw = pixels.shape[:2]
        top = yc - th if corner in (0, 1) else yc
        left = xc - tw if corner in (0, 2) else xc
        y0, x0, y1, x1 = max(0, top), max(0, left), min(canvas_h, top + th), min(canvas_w, left + tw)
        if y1 <= y0 or x1 <= x0:
            continue
        inside = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        canvas[y0:y1, x0:x1] = pixels[inside]
        for mask, label in zip(target["masks"], target["labels"]):
            part = mask[inside]
            kept = int(part.sum())
            if kept < MIN_PIXELS or kept < MIN_KEPT * int(mask.sum()):
                continue
            full = np.zeros((canvas_h, canvas_w), dtype=np.uint8)
            full[y0:y1, x0:x1] = part
            masks.append(full)
            labels.append(label)
    stacked = np.stack(masks) if masks else np.zeros((0, canvas_h, canvas_w), dtype=np.uint8)
    return canvas, {"boxes": mask_boxes(stacked), "labels": np.array(labels, dtype=np.int64), "masks": stacked}


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """float32 [N, 4] boxes (x1, y1, x2, y2, pixel edges) of uint8 [N, H, W] masks, none empty."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for k, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes

"""Copy-paste augmentation for instance training (``segcli train --copy-paste``), after Ghiasi et
al. 2021, "Simple Copy-Paste", and Ultralytics' ``copy_paste``: objects of a second training
image are pasted onto this one, so every step sees more objects, in new contexts and occluding
each other. A random subset of the source's objects is pasted (each with probability 0.5, at
least one when it has any), at the position they had there, the source flipped horizontally
with its masks half of the time; a source of another size is resized to this image's size first
(cv2: bilinear for pixels, nearest for masks). Pasted pixels replace this image's pixels where
a pasted mask is set; this image's objects lose the pixels covered, and one left with fewer than
``mosaic.MIN_PIXELS`` pixels or under ``mosaic.MIN_KEPT`` of its area is dropped (mosaic's rule).
The boxes of the objects changed are recomputed from their masks, as mosaic does.
"""

from __future__ import annotations

import cv2
import numpy as np

from segcli.data.mosaic import MIN_KEPT, MIN_PIXELS, mask_boxes


def copy_paste(pixels: np.ndarray, target: dict, source_pixels: np.ndarray, source_target: dict,
               rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Objects of (``source_pixels``, ``source_target``) pasted onto (``pixels``, ``target``).

    Pixels H x W x 3 uint8 (the source any size); targets as ``data.targets.instance_target``
    makes them: ``boxes`` float32 [N, 4] (x1, y1, x2, y2), ``labels`` int64 [N], ``masks`` uint8
    [N, H, W]. Returns new arrays of this image's size: its kept objects first (in their order),
    then the pasted ones. A source without objects pastes nothing (the inputs come back).
    """
    count = len(source_target["labels"])
    if count == 0:
        return pixels, target
    chosen = rng.random(count) < 0.5
    if not chosen.any():
        chosen[rng.integers(count)] = True
    source_masks, labels = source_target["masks"][chosen], source_target["labels"][chosen]
    if rng.random() < 0.5:
        source_pixels, source_masks = source_pixels[:, ::-1], source_masks[:, :, ::-1]
    height, width = pixels.shape[:2]
    if source_pixels.shape[:2] != (height, width):
        source_pixels = cv2.resize(np.ascontiguousarray(source_pixels), (width, height), interpolation=cv2.INTER_LINEAR)
        source_masks = np.stack([cv2.resize(np.ascontiguousarray(m), (width, height), interpolation=cv2.INTER_NEAREST)
                                 for m in source_masks])
    pasted = source_masks.sum(axis=(1, 2)) > 0  # a small object can vanish in a resize
    source_masks, labels = np.ascontiguousarray(source_masks[pasted], dtype=np.uint8), labels[pasted]
    if len(labels) == 0:
        return pixels, target
    covered = source_masks.any(0)
    pixels = pixels.copy()
    pixels[covered] = source_pixels[covered]

    masks = target["masks"] * ~covered  # uint8 stays uint8
    areas, kept = target["masks"].sum(axis=(1, 2)), masks.sum(axis=(1, 2))
    changed = kept < areas
    keep = ~changed | ((kept >= MIN_PIXELS) & (kept >= MIN_KEPT * areas))
    boxes = target["boxes"].copy()
    boxes[changed & keep] = mask_boxes(masks[changed & keep])
    return pixels, {"boxes": np.concatenate([boxes[keep], mask_boxes(source_masks)]).astype(np.float32),
                    "labels": np.concatenate([target["labels"][keep], labels]).astype(np.int64),
                    "masks": np.concatenate([masks[keep], source_masks]).astype(np.uint8)}

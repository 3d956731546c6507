"""What painting objects into one label map loses, object by object, for the ledger.

A label map holds one value a pixel, so where objects overlap only the one painted last (the
smaller, see ``rasterize.paint_order``) is left there. A class-value map loses more: reading it
back makes one instance of each 8-connected component of a class, so objects of one class that
touch or overlap come back as one, and an object cut in parts (by another lying across it, or
multi-part to begin with) comes back as several. ``paint`` records which object is visible at
each pixel; ``report_losses`` lists every object a read-back cannot give back as it was (hidden,
partly hidden, merged, split) and predicts how many objects a read-back finds, so the report
says exactly what a user will get.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import shapely

from segcli.formats import geometry
from segcli.formats.rasterize import ObjectMask, paint_order
from segcli.ledger import Ledger
from segcli.structures import ImageRecord


@dataclass
class Painted:
    """Objects painted into one image-sized map, in paint order.

    Attributes:
        objects: the objects in the order they were painted.
        file_index: each painted object's position in the list given to ``paint`` (file order).
        owner: H x W paint index of the object visible at each pixel, -1 where none is.
        pixels: each object's own mask area (pixels).
        visible: each object's pixels left visible once every object is painted.
        covered_by: for each object, the paint indices of the objects painted over part of it.
    """

    objects: list[ObjectMask]
    file_index: list[int]
    owner: np.ndarray
    pixels: np.ndarray
    visible: np.ndarray
    covered_by: list[list[int]]


@dataclass
class LossCounts:
    """Totals over a folder: objects painted, objects a read-back finds, objects listed."""

    objects: int = 0
    objects_read_back: int = 0
    merged: int = 0
    hidden: int = 0
    partly_hidden: int = 0
    split: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _Fate:
    """What a read-back makes of one object (class maps): who it merged with, in how many parts."""

    merged_with: set[int] = field(default_factory=set)
    parts: int = 1


def paint(image: ImageRecord, objects: list[ObjectMask]) -> Painted:
    """Paint ``objects`` (each decoded once) into an owner map, noting who covers whom."""
    ordered = paint_order(objects)
    position = {id(obj): number for number, obj in enumerate(objects)}
    owner = np.full((image.height, image.width), -1, dtype=np.int32)
    pixels = np.zeros(len(ordered), dtype=np.int64)
    covered_by: list[list[int]] = [[] for _ in ordered]
    for index, obj in enumerate(ordered):
        y0, y1, x0, x1 = _box_rows_columns(obj.bbox_xywh, owner.shape, margin=1)
        mask = geometry.rle_to_mask(obj.rle)[y0:y1, x0:x1]  # the box (and a pixel) holds the whole mask
        region = owner[y0:y1, x0:x1]
        under = region[mask]
        pixels[index] = under.size
        under = under[under >= 0]
        if under.size:
            for below in np.flatnonzero(np.bincount(under, minlength=index)).tolist():
                covered_by[below].append(index)
        region[mask] = index
    visible = np.bincount(owner[owner >= 0], minlength=len(ordered))
    return Painted(ordered, [position[id(obj)] for obj in ordered], owner, pixels, visible, covered_by)


def values_map(painted: Painted, values: np.ndarray, dtype) -> np.ndarray:
    """The label map holding ``values[i]`` where object ``i`` is visible, 0 elsewhere."""
    lookup = np.concatenate(([0], np.asarray(values))).astype(dtype)
    return lookup[painted.owner + 1]


def report_losses(painted: Painted, image: ImageRecord, ledger: Ledger,
                  class_values: np.ndarray | None) -> LossCounts:
    """List in ``ledger`` every object a read-back will not give back as it was, and count.

    ``class_values``: each object's value in a class-value map (components are read back), or
    None for an instance map (each visible object is read back by its id). Crowd regions of a
    class map are void (255), never read back as objects, and are noted as such.
    """
    counts = LossCounts()
    crowd = np.array([o.annotation.iscrowd != 0 for o in painted.objects], dtype=bool)
    fates: dict[int, _Fate] = {}
    if class_values is None:
        counts.objects_read_back = int((painted.visible > 0).sum())
    else:
        counts.objects_read_back = _read_back_components(painted, class_values, crowd, fates)
    for index in sorted(range(len(painted.objects)), key=painted.file_index.__getitem__):  # file order
        obj = painted.objects[index]
        if class_values is not None and crowd[index]:
            ledger.add("converted", "crowd region written as void (255): a read-back leaves its pixels out, "
                       "not an object", image.file_name, obj.annotation.source)
            continue
        counts.objects += 1
        _report_object(painted, index, fates.get(index, _Fate()), image, ledger, counts)
    return counts


def _report_object(painted: Painted, index: int, fate: _Fate, image: ImageRecord, ledger: Ledger,
                   counts: LossCounts) -> None:
    obj, visible, pixels = painted.objects[index], int(painted.visible[index]), int(painted.pixels[index])
    covering = _names(painted, painted.covered_by[index])

    def note(action: str, reason: str) -> None:
        ledger.add(action, reason, image.file_name, obj.annotation.source)

    if visible == 0:
        counts.hidden += 1
        note("dropped", f"hidden: wholly covered by {covering}, so it is not in the label map")
    elif fate.merged_with:
        counts.merged += 1
        note("changed", f"merged: touches or overlaps {_names(painted, sorted(fate.merged_with))} of its class "
             "(a class-value map cannot tell them apart): read back as one object with it")
    elif fate.parts > 1:
        counts.split += 1
        why = f"cut by {covering} lying across it" if painted.covered_by[index] else "its parts do not touch"
        note("changed", f"split: read back as {fate.parts} objects ({why})")
    elif visible < pixels:
        counts.partly_hidden += 1
        note("changed", f"partly hidden: {pixels - visible} of {pixels} px under {covering}")


def _names(painted: Painted, indices: list[int], shown: int = 3) -> str:
    names = [f"{painted.objects[i].annotation.source or 'an object'} ({painted.objects[i].annotation.category})"
             for i in indices[:shown]]
    more = f" and {len(indices) - shown} more" if len(indices) > shown else ""
    return ", ".join(names) + more


def _read_back_components(painted: Painted, class_values: np.ndarray, crowd: np.ndarray,
                          fates: dict[int, _Fate]) -> int:
    """Components a read-back of the class map finds; fills ``fates`` for merged or split objects.

    Only objects whose boxes (grown by a pixel) meet can share a component, so each group of
    such objects is analysed on its own crop: cost grows with the objects' area, not with the
    number of objects x the image."""
    shown = [i for i in range(len(painted.objects)) if painted.visible[i] > 0 and not crowd[i]]
    total = 0
    for group in _touching_groups(painted, shown):
        y0, y1, x0, x1 = _crop(painted, group)
        owner = painted.owner[y0:y1, x0:x1]
        if len(group) == 1:
            parts = cv2.connectedComponents((owner == group[0]).astype(np.uint8), connectivity=8)[0] - 1
            fates[group[0]] = _Fate(parts=parts)
            total += parts
            continue
        for owners in _component_owners(owner, group, class_values):
            total += 1
            for member in owners:
                fate = fates.setdefault(member, _Fate(parts=0))
                fate.parts += 1
                fate.merged_with.update(o for o in owners if o != member)
    return total


def _component_owners(owner: np.ndarray, group: list[int], class_values: np.ndarray) -> list[list[int]]:
    """For each 8-connected component of one class among the group's visible pixels (what a
    read-back makes an object of), the objects visible in it. One cv2 pass per class of the
    group (a few), in C: the pure-numpy ``label_components`` took seconds on a big crop."""
    local = np.full(len(class_values) + 1, -1, dtype=np.int64)  # paint index -> place in group
    local[np.asarray(group)] = np.arange(len(group))
    member = local[owner]  # owner -1 reads the last entry, -1
    inside = member >= 0
    values = class_values[owner]
    result = []
    for value in np.unique(class_values[group]).tolist():
        of_class = inside & (values == value)
        count, components = cv2.connectedComponents(of_class.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        # which members each component holds, counted (linear) rather than sorted
        seen = np.bincount(components[of_class].astype(np.int64) * len(group) + member[of_class],
                           minlength=count * len(group)).reshape(count, len(group))
        result += [[group[m] for m in np.flatnonzero(row)] for row in seen[1:]]
    return result


def _touching_groups(painted: Painted, indices: list[int]) -> list[list[int]]:
    """Groups of objects whose boxes, grown by one pixel, meet (directly or through others)."""
    if not indices:
        return []
    boxes = np.array([painted.objects[i].bbox_xywh for i in indices], dtype=np.float64)
    shapes = shapely.box(boxes[:, 0] - 1, boxes[:, 1] - 1, boxes[:, 0] + boxes[:, 2] + 1, boxes[:, 1] + boxes[:, 3] + 1)
    left, right = shapely.STRtree(shapes).query(shapes, predicate="intersects")
    parent = list(range(len(indices)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in zip(left.tolist(), right.tolist()):
        if a != b:
            parent[max(root(a), root(b))] = min(root(a), root(b))
    groups: dict[int, list[int]] = {}
    for k, index in enumerate(indices):
        groups.setdefault(root(k), []).append(index)
    return list(groups.values())


def _crop(painted: Painted, group: list[int]) -> tuple[int, int, int, int]:
    """Rows and columns (y0, y1, x0, x1) holding the group's boxes and a pixel around them."""
    boxes = np.array([painted.objects[i].bbox_xywh for i in group], dtype=np.float64)
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    union = [x0, y0, (boxes[:, 0] + boxes[:, 2]).max() - x0, (boxes[:, 1] + boxes[:, 3]).max() - y0]
    return _box_rows_columns(union, painted.owner.shape, margin=1)


def _box_rows_columns(bbox_xywh, shape: tuple[int, int], margin: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the pixels a box ``[x, y, w, h]`` touches, grown by ``margin``."""
    height, width = shape
    x, y, w, h = (float(v) for v in bbox_xywh)
    return (max(int(np.floor(y)) - margin, 0), min(int(np.ceil(y + h)) + margin, height),
            max(int(np.floor(x)) - margin, 0), min(int(np.ceil(x + w)) + margin, width))

"""The one in-memory dataset model every format reads into and writes from.

A ``Dataset`` is a list of ``ImageRecord`` (file name, size once known, file attributes) each
holding ``Annotation`` objects. An annotation keeps its geometry in the form it came in: a VIA
shape (``via_shape``, VIA 2 ``shape_attributes`` layout, pixel coordinates), COCO polygons
(``polygons``: list of flat ``[x0, y0, x1, y1, ...]`` parts), a COCO compressed RLE (``rle``), or
a box only (``bbox_xywh``). Converting between them happens once, in ``formats.geometry``, when a
writer needs it, so nothing is approximated that the output does not require. Categories are
named; ``Category.id`` is the 1-based COCO id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AREA_SHAPES = ("polygon", "rect", "circle", "ellipse")
"""VIA shapes that enclose an area and so become masks."""

NON_AREA_SHAPES = ("polyline", "point")
"""VIA shapes with no area: kept in image attributes (``via_nonarea_regions``), never masks."""


@dataclass
class Category:
    """A class of objects. ``id`` is the COCO category id (>= 1); ``name`` is unique."""

    id: int
    name: str
    supercategory: str = ""


@dataclass
class Annotation:
    """One object (VIA region, COCO annotation or mask component).

    Exactly one of ``via_shape``, ``polygons``, ``rle``, ``bbox_xywh`` describes the geometry
    (a COCO annotation may carry ``bbox_xywh`` beside its segmentation).

    Attributes:
        category: category name.
        via_shape: VIA 2 ``shape_attributes`` dict, e.g. ``{"name": "circle", "cx": 5, ...}``.
        polygons: COCO polygon parts, each a flat list of floats ``[x0, y0, x1, y1, ...]``.
        rle: COCO compressed RLE ``{"size": [h, w], "counts": str}``.
        bbox_xywh: COCO box ``[x, y, w, h]`` (float pixels); the only geometry when the source
            annotation had an empty segmentation.
        attributes: region attributes other than the one that gave the category.
        iscrowd: COCO crowd flag (ignored regions in training and evaluation).
        score: detection confidence for predictions, else None.
        source: where it came from, for messages ("region 3", "annotation id 17").
        category_from_default: True when no labelling attribute gave the category.
        id: COCO annotation id when read from COCO (kept stable), else assigned on writing.
        label_value: the labelling attribute's raw value in VIA (an option id "1", an int 320,
            a checkbox dict), written back as it was.
    """

    category: str
    via_shape: dict | None = None
    polygons: list[list[float]] | None = None
    rle: dict | None = None
    bbox_xywh: list[float] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    iscrowd: int = 0
    score: float | None = None
    source: str = ""
    category_from_default: bool = False
    id: int | None = None
    label_value: Any = None

    @property
    def shape_name(self) -> str:
        """Name of the geometry: a VIA shape name, or "polygon"/"rle"/"bbox" for COCO input."""
        if self.via_shape is not None:
            return str(self.via_shape.get("name"))
        if self.polygons is not None:
            return "polygon"
        if self.rle is not None:
            return "rle"
        return "bbox"


@dataclass
class ImageRecord:
    """One image and its annotations.

    Attributes:
        file_name: name as written in the annotation file (may hold sub-folders).
        id: COCO image id when read from COCO (kept stable), else assigned on writing.
        width, height: pixel size as a user sees it (EXIF rotation applied); None until known.
        size_bytes: VIA's ``size`` field (file bytes; -1 or None when unknown).
        path: the resolved image file on disk, None when not (yet) found.
        attributes: VIA file attributes / COCO image attributes.
        annotations: objects with an area (or a box).
        nonarea_regions: VIA polylines and points as ``(region_index, region_dict)`` pairs.
        extra: other COCO image fields kept verbatim (license, coco_url, ...).
    """

    file_name: str
    id: int | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None
    path: Path | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    annotations: list[Annotation] = field(default_factory=list)
    nonarea_regions: list[tuple[int, dict]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    """A whole annotation file in memory.

    Attributes:
        images: image records in file order.
        categories: categories in id order (ids 1-based, unique).
        source_path: the file or folder this was read from.
        source_format: detected format, e.g. "via2-project", "coco".
        label_attr: the VIA region attribute the categories came from, if any.
        default_category: the category given to regions without a label.
        via_attributes: VIA 2 ``_via_attributes`` definitions (kept for a lossless round trip).
        via_settings: VIA 2 ``_via_settings`` of the source project, if any.
        info: COCO ``info`` (or other top-level metadata) kept verbatim.
    """

    images: list[ImageRecord]
    categories: list[Category]
    source_path: Path
    source_format: str
    label_attr: str | None = None
    default_category: str = "object"
    via_attributes: dict | None = None
    via_settings: dict | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_annotations(self) -> int:
        """Number of area annotations over all images."""
        return sum(len(image.annotations) for image in self.images)

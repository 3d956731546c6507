"""COCO instances JSON read into a Dataset and written from one.

Reading accepts polygons (single and multi-part), uncompressed and compressed RLE, and empty
segmentations (box only); it is strict about ids (duplicates and unknown references are
errors) and keeps category ids as they are, except that a category id 0 is dropped when unused
(labelme's ``_background_``) or all ids are shifted by one when it is used (id 0 is background to
torchvision). Writing computes every area and box with pycocotools on the rasterised mask and
keeps each VIA region's original shape in ``attributes["via_shape"]`` so COCO -> VIA restores it
(except an unchanged VIA polygon, which the segmentation holds exactly).
"""

from __future__ import annotations

import copy
from itertools import chain
from pathlib import Path

import numpy as np

from segcli import __version__
from segcli.formats import geometry
from segcli.formats.geometry import check_numbers, is_int
from segcli.formats.images import pixel_limit_problem
from segcli.formats.via import valid_attribute_defs, validate_via_shape
from segcli.ledger import Ledger
from segcli.structures import Annotation, Category, Dataset, ImageRecord

SHAPE_ATTR = "via_shape"
LABEL_VALUE_ATTR = "via_label_value"
NONAREA_ATTR = "via_nonarea_regions"
META_KEY = "segcli"
IMAGE_KEYS = ("id", "file_name", "width", "height", "attributes", "via_size")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd",
                   "attributes", "score")


def is_coco(data: object) -> bool:
    """True for a COCO instances file (a dict with ``images`` and ``annotations``)."""
    return isinstance(data, dict) and "images" in data and "annotations" in data


def read_coco(data: dict, path: Path, ledger: Ledger) -> Dataset:
    """Read COCO instances (already parsed JSON) into a Dataset; problems go to the ledger."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            ledger.error(f"'{key}' must be a list" if key in data else f"missing key '{key}'")
    if ledger.errors:
        return Dataset([], [], path, "coco")
    categories, id_to_name = _read_categories(data["categories"], data["annotations"], ledger)
    categories.sort(key=lambda c: c.id)
    images = _read_images(data["images"], ledger)
    seen_ids: set[int] = set()
    for index, raw in enumerate(data["annotations"]):
        _read_annotation(index, raw, images, id_to_name, seen_ids, ledger)
    meta = _read_meta(data.get(META_KEY), ledger)
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    dataset = Dataset(images=list(images.values()), categories=categories, source_path=path,
                      source_format="coco", label_attr=meta.get("label_attr"),
                      default_category=meta.get("default_category", "object"),
                      via_attributes=meta.get("via_attributes"), via_settings=meta.get("via_settings"),
                      info=info)
    if meta:
        _mark_default_categories(dataset)
    return dataset


def _read_meta(meta: object, ledger: Ledger) -> dict:
    """The ``segcli`` block a segcli-written COCO file carries (VIA details for COCO -> VIA);
    a block edited into other types is refused, since VIA output would be built from it."""
    if not isinstance(meta, dict):
        return {}
    meta = dict(meta)
    expected = {"label_attr": (str, type(None)), "default_category": str, "via_attributes": (dict, type(None)),
                "via_settings": (dict, type(None))}
    for key, types in expected.items():
        if key in meta and not isinstance(meta[key], types):
            ledger.error(f"'{META_KEY}.{key}' has the wrong type ({type(meta.pop(key)).__name__})")
    if meta.get("via_attributes") is not None and not valid_attribute_defs(meta["via_attributes"]):
        ledger.error(f"'{META_KEY}.via_attributes' must be {{\"region\": {{...}}, \"file\": {{...}}}}")
        meta["via_attributes"] = None
    return meta


def _read_categories(raw: list, annotations: list, ledger: Ledger) -> tuple[list[Category], dict]:
    categories: list[Category] = []
    ids, names = set(), set()  # sets: a scan of the list per category was quadratic (200,000: hours)
    for index, cat in enumerate(raw):
        item = f"category {index}"
        if not isinstance(cat, dict) or not is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            ledger.error("category needs an integer 'id' and a string 'name'", item=item)
            continue
        if cat["id"] in ids:
            ledger.error(f"duplicate category id {cat['id']}", item=item)
        elif cat["name"] in names:
            ledger.error(f"duplicate category name {cat['name']!r}", item=item)
        else:
            ids.add(cat["id"])
            names.add(cat["name"])
            categories.append(Category(cat["id"], cat["name"], str(cat.get("supercategory") or "")))
    used = {a.get("category_id") for a in annotations if isinstance(a, dict) and is_int(a.get("category_id"))}
    zero = next((c for c in categories if c.id == 0), None)
    if zero is not None and 0 not in used:
        categories.remove(zero)
        ledger.add("dropped", f"category id 0 {zero.name!r}: no annotation uses it and id 0 is the "
                   "implicit background")
    elif zero is not None or any(c.id < 0 for c in categories):
        shift = 1 - min(c.id for c in categories)
        ledger.add("renumbered", f"category ids start at {1 - shift}; all ids shifted by +{shift} "
                   "(id 0 is the background)")
        categories = [Category(c.id + shift, c.name, c.supercategory) for c in categories]
        return categories, {c.id - shift: c.name for c in categories}
    return categories, {c.id: c.name for c in categories}


def _read_images(raw: list, ledger: Ledger) -> dict[int, ImageRecord]:
    images: dict[int, ImageRecord] = {}
    for index, img in enumerate(raw):
        item = f"image {index}"
        if not isinstance(img, dict) or not is_int(img.get("id")) or not isinstance(img.get("file_name"), str):
            ledger.error("image needs an integer 'id' and a string 'file_name'", item=item)
            continue
        if img["id"] in images:
            ledger.error(f"duplicate image id {img['id']}", img["file_name"], item)
            continue
        width, height = img.get("width"), img.get("height")
        if width is not None or height is not None:
            if not (is_int(width) and is_int(height) and width > 0 and height > 0):
                ledger.error(f"width/height must be positive integers, got {width!r}x{height!r}",
                             img["file_name"], item)
                width = height = None
            elif (problem := pixel_limit_problem(width, height)) is not None:
                ledger.error(f"size in the file: {problem}", img["file_name"], item)
                width = height = None
        attributes = img.get("attributes") if isinstance(img.get("attributes"), dict) else {}
        attributes = dict(attributes)
        nonarea = attributes.pop(NONAREA_ATTR, [])
        if not isinstance(nonarea, list):
            ledger.error(f"attributes.{NONAREA_ATTR} must be a list", img["file_name"], item)
            nonarea = []
        record = ImageRecord(file_name=img["file_name"], id=img["id"], width=width, height=height,
                             size_bytes=img.get("via_size") if is_int(img.get("via_size")) else None,
                             attributes=attributes,
                             extra={k: v for k, v in img.items() if k not in IMAGE_KEYS})
        record.nonarea_regions = [(int(r["index"]), r["region"]) for r in nonarea
                                  if isinstance(r, dict) and is_int(r.get("index")) and isinstance(r.get("region"), dict)]
        images[img["id"]] = record
    return images


def _read_annotation(index: int, raw: object, images: dict, id_to_name: dict, seen_ids: set,
                     ledger: Ledger) -> None:
    item = f"annotation {index}"
    if not isinstance(raw, dict):
        ledger.error("annotation must be an object", item=item)
        return
    if is_int(raw.get("id")):
        item = f"annotation id {raw['id']}"
    image = images.get(raw.get("image_id")) if is_int(raw.get("image_id")) else None
    if image is None:
        ledger.error(f"unknown image_id {raw.get('image_id')!r}", item=item)
        return
    if not is_int(raw.get("category_id")) or raw.get("category_id") not in id_to_name:
        ledger.error(f"unknown category_id {raw.get('category_id')!r}", image.file_name, item)
        return
    attributes = dict(raw["attributes"]) if isinstance(raw.get("attributes"), dict) else {}
    annotation = Annotation(category=id_to_name[raw["category_id"]], attributes=attributes,
                            iscrowd=1 if raw.get("iscrowd") else 0, source=item,
                            id=raw["id"] if is_int(raw.get("id")) else None,
                            score=raw.get("score") if check_numbers([raw.get("score")], "") is None else None)
    problem = _read_geometry(raw, annotation, image)
    if problem:
        ledger.error(problem, image.file_name, item)
        return
    if annotation.id is not None:
        if annotation.id in seen_ids:
            ledger.error(f"duplicate annotation id {annotation.id}", image.file_name, item)
            return
        seen_ids.add(annotation.id)
    image.annotations.append(annotation)


def _read_geometry(raw: dict, annotation: Annotation, image: ImageRecord) -> str | None:
    """Fill the annotation's geometry from ``segmentation``/``bbox``; return a problem or None."""
    annotation.label_value = annotation.attributes.pop(LABEL_VALUE_ATTR, None)
    shape = annotation.attributes.pop(SHAPE_ATTR, None)
    if shape is not None:
        problem = validate_via_shape(shape)
        if problem:
            return f"attributes.{SHAPE_ATTR}: {problem}"
        annotation.via_shape = dict(shape)
        return None
    segmentation = raw.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        if all(isinstance(v, (int, float)) for v in segmentation):
            segmentation = [segmentation]  # a single flat polygon, seen in some exporters
        parts = []
        for part in segmentation:
            problem = check_numbers(part, "segmentation polygon")
            if problem:
                return problem
            if len(part) % 2:
                return f"segmentation polygon has an odd number of values ({len(part)})"
            parts.append(list(part))
        annotation.polygons = parts
        return None
    if isinstance(segmentation, dict):
        return _read_rle(segmentation, annotation, image)
    if segmentation not in (None, []):
        return f"segmentation must be a list of polygons or an RLE object, got {type(segmentation).__name__}"
    bbox = raw.get("bbox")
    problem = check_numbers(bbox, "bbox") if bbox is not None else "no segmentation and no bbox"
    if problem:
        return problem
    if len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
        return f"bbox must be [x, y, width, height] with width, height >= 0, got {bbox}"
    annotation.bbox_xywh = [float(v) for v in bbox]
    return None


def _read_rle(segmentation: dict, annotation: Annotation, image: ImageRecord) -> str | None:
    problem = geometry.rle_json_problem(segmentation)
    if problem:
        return problem
    size, counts = segmentation["size"], segmentation["counts"]
    if image.height is not None and [image.height, image.width] != list(size):
        return f"RLE size {size} does not match the image size [{image.height}, {image.width}]"
    try:
        annotation.rle = geometry.rle_from_json({"size": size, "counts": counts}, size[0], size[1])
        geometry.rle_area_bbox(annotation.rle)
    except Exception as exc:  # pycocotools raises bare exceptions on corrupt counts
        return f"corrupt RLE: {exc}"
    return None


def _mark_default_categories(dataset: Dataset) -> None:
    """Annotations that had no label in the VIA file a segcli COCO file came from."""
    definition = ((dataset.via_attributes or {}).get("region") or {}).get(dataset.label_attr or "", {})
    options = set((definition.get("options") or {}).values())
    for image in dataset.images:
        for annotation in image.annotations:
            annotation.category_from_default = (
                annotation.category == dataset.default_category
                and annotation.category not in options and dataset.label_attr not in annotation.attributes)


def write_coco(dataset: Dataset, ledger: Ledger, recorded_info: dict | None = None) -> dict:
    """COCO instances dict for ``dataset``; every image must have a known size or is skipped.

    Image ids are kept when the source had them, else 1..N in file order; annotation ids
    likewise. Area and bbox come from the rasterised mask. ``recorded_info``: segcli's keys for
    ``info`` (where the images are); a source's own keys of that kind are dropped when not
    given again, as they would point to the source's location.
    """
    images_out, annotations_out = [], []
    keep_image_ids = _unique_ids([img.id for img in dataset.images])
    keep_ann_ids = _unique_ids([a.id for img in dataset.images for a in img.annotations])
    next_ann_id = 1
    category_ids = {c.name: c.id for c in dataset.categories}
    trusted = _prechecked_polygons(dataset)
    for number, image in enumerate(dataset.images, start=1):
        if image.width is None:
            ledger.add("skipped", f"image size unknown (file not found): its {len(image.annotations)} "
                       "object(s) are not written, COCO needs the size", image.file_name)
            continue
        image_id = image.id if keep_image_ids else number
        images_out.append(_image_json(image, image_id))
        for annotation in image.annotations:
            ann_id = annotation.id if keep_ann_ids else next_ann_id
            next_ann_id += 1
            record = annotation_to_json(annotation, image, ledger, id(annotation) in trusted,
                                        trusted.get(id(annotation)))
            if record is not None:
                record.update(id=ann_id, image_id=image_id, category_id=category_ids[annotation.category])
                annotations_out.append(_order_keys(record))
    info = {key: value for key, value in dataset.info.items() if not key.startswith("segcli_")}
    return {"info": {**info, "description": dataset.info.get("description")
                     or f"converted by segcli {__version__} from {dataset.source_path.name}", **(recorded_info or {})},
            "licenses": [],
            "images": images_out,
            "annotations": annotations_out,
            "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory}
                           for c in dataset.categories],
            META_KEY: {"version": __version__, "source_format": dataset.source_format,
                       "label_attr": dataset.label_attr, "default_category": dataset.default_category,
                       "via_attributes": dataset.via_attributes,
                       "via_settings": _without_default_filepath(dataset.via_settings)}}


def _without_default_filepath(settings: object) -> object:
    """VIA settings with ``core.default_filepath`` blanked: it was relative to the VIA file, not
    to this one (the images folder is recorded in ``info``, and COCO -> VIA sets it anew)."""
    if not (isinstance(settings, dict) and isinstance(settings.get("core"), dict)
            and settings["core"].get("default_filepath")):
        return settings
    return {**settings, "core": {**settings["core"], "default_filepath": ""}}


def _prechecked_polygons(dataset: Dataset) -> dict[int, np.ndarray | None]:
    """VIA polygons and rects that are valid and inside their image, keyed by
    ``id(annotation)`` (value: the rect's outline; None for polygons, whose own numbers are
    written), found in one vectorised pass so the per-object path skips shapely: the hot path
    on big sets."""
    candidates = [(a, image) for image in dataset.images if image.width is not None
                  for a in image.annotations
                  if a.via_shape is not None and a.via_shape["name"] in ("polygon", "rect")]
    if not candidates:
        return {}
    outlines = [geometry.via_shape_to_points(a.via_shape) if a.via_shape["name"] == "rect" else None
                for a, _ in candidates]
    xs = list(chain.from_iterable(a.via_shape["all_points_x"] if o is None else o[:, 0]
                                  for (a, _), o in zip(candidates, outlines)))
    ys = list(chain.from_iterable(a.via_shape["all_points_y"] if o is None else o[:, 1]
                                  for (a, _), o in zip(candidates, outlines)))
    counts = [len(a.via_shape["all_points_x"]) if o is None else 4 for (a, _), o in zip(candidates, outlines)]
    ok = geometry.simple_polygons_inside(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64),
                                         np.asarray(counts), np.array([img.width for _, img in candidates]),
                                         np.array([img.height for _, img in candidates]))
    return {id(a): outline for (a, _), outline, good in zip(candidates, outlines, ok) if good}


def _unique_ids(ids: list) -> bool:
    return bool(ids) and None not in ids and len(set(ids)) == len(ids)


def _image_json(image: ImageRecord, image_id: int) -> dict:
    record = {"id": image_id, "file_name": image.file_name, "width": image.width,
              "height": image.height, **copy.deepcopy(image.extra)}
    attributes = dict(image.attributes)
    if image.nonarea_regions:
        attributes[NONAREA_ATTR] = [{"index": i, "region": r} for i, r in image.nonarea_regions]
    if attributes:
        record["attributes"] = attributes
    if image.size_bytes is not None:
        record["via_size"] = image.size_bytes
    return record


def _order_keys(record: dict) -> dict:
    return {k: record[k] for k in ANNOTATION_KEYS if k in record}


def annotation_to_json(annotation: Annotation, image: ImageRecord, ledger: Ledger,
                       prechecked: bool = False, outline: np.ndarray | None = None) -> dict | None:
    """COCO fields (segmentation, area, bbox, iscrowd, attributes) for one annotation on an
    image of known size; None (with a ledger entry) when nothing with an area is left.
    ``prechecked``: a VIA polygon/rect already known valid and inside the image (no cleaning
    needed); ``outline``: its outline when it is a rect."""
    height, width = image.height, image.width

    def note(action: str, reason: str) -> None:
        ledger.add(action, reason, image.file_name, annotation.source)

    attributes = dict(annotation.attributes)
    if annotation.label_value is not None and not isinstance(annotation.label_value, str):
        attributes[LABEL_VALUE_ATTR] = annotation.label_value  # an int or checkbox label, kept as is
    if annotation.via_shape is not None:
        if prechecked and annotation.via_shape["name"] == "polygon":
            # the segmentation is the VIA polygon itself (original numbers), so COCO -> VIA gets
            # it back from there; storing it twice would double the file
            shape = annotation.via_shape
            segmentation = [[v for xy in zip(shape["all_points_x"], shape["all_points_y"]) for v in xy]]
            rle = geometry.polygons_to_rle(segmentation, height, width)
        elif prechecked:
            attributes[SHAPE_ATTR] = annotation.via_shape
            segmentation = [geometry.points_to_flat(outline)]
            rle = geometry.polygons_to_rle(segmentation, height, width)
        else:
            attributes[SHAPE_ATTR] = annotation.via_shape
            points = geometry.via_shape_to_points(annotation.via_shape)
            segmentation, rle = _polygons_to_segmentation([points], width, height, note)
    elif annotation.polygons is not None:
        points = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in annotation.polygons]
        segmentation, rle = _polygons_to_segmentation(points, width, height, note)
    elif annotation.rle is not None:
        rle = annotation.rle
        segmentation = geometry.rle_to_json(rle)
    else:
        return _bbox_only_json(annotation, attributes, width, height, note)
    if segmentation is None:
        return None
    area, bbox = geometry.rle_area_bbox(rle)
    if area == 0:
        note("dropped", "mask is empty once rasterised (object smaller than a pixel)")
        return None
    record = {"segmentation": segmentation, "area": area, "bbox": bbox, "iscrowd": annotation.iscrowd,
              "attributes": attributes}
    if annotation.score is not None:
        record["score"] = annotation.score
    return record


def _polygons_to_segmentation(parts: list[np.ndarray], width: int, height: int, note) -> tuple:
    """Clean polygon parts; the original coordinates are written when nothing had to change."""
    cleaned, changed = [], False
    for points in parts:
        result, part_changed = geometry.clean_polygon(points, width, height, note)
        cleaned.extend(result)
        changed |= part_changed
    if not cleaned:
        return None, None
    if changed:
        return geometry.shapely_to_segmentation(cleaned, height, width)
    flat = [geometry.points_to_flat(points) for points in parts]
    return flat, geometry.polygons_to_rle(flat, height, width)


def _bbox_only_json(annotation: Annotation, attributes: dict, width: int, height: int, note) -> dict | None:
    x, y, w, h = annotation.bbox_xywh
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        note("clipped", f"box extends outside the image: {width}x{height}")
    if x1 <= x0 or y1 <= y0:
        note("dropped", "box has no area inside the image")
        return None
    record = {"segmentation": [], "area": float((x1 - x0) * (y1 - y0)),
              "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": annotation.iscrowd, "attributes": attributes}
    if annotation.score is not None:
        record["score"] = annotation.score
    return record

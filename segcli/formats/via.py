"""VIA 1.x / 2.x annotations (JSON exports, projects and CSV) read into a Dataset, and VIA 2
projects written from one.

Reading keeps everything: regions of every shape (polylines and points go to
``ImageRecord.nonarea_regions``), all region and file attributes, the project's attribute
definitions and settings. The category of a region comes from one labelling attribute; dropdown
and radio option ids are mapped to their labels. Shape codes and file layouts follow VIA's own
sources (via.js of VIA 1.0 and 2.0.11).
"""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

from segcli.errors import SegcliError
from segcli.fileio import parse_json, read_text
from segcli.formats.geometry import check_numbers
from segcli.formats.labels import categories_for_labels, label_of_region, pick_label_attr
from segcli.ledger import Ledger
from segcli.structures import NON_AREA_SHAPES, Annotation, Dataset, ImageRecord

SHAPE_KEYS = {
    "polygon": ("all_points_x", "all_points_y"),
    "polyline": ("all_points_x", "all_points_y"),
    "rect": ("x", "y", "width", "height"),
    "circle": ("cx", "cy", "r"),
    "ellipse": ("cx", "cy", "rx", "ry"),
    "point": ("cx", "cy"),
}
NON_NEGATIVE_KEYS = ("width", "height", "r", "rx", "ry")

VIA2_SETTINGS = {
    "ui": {"annotation_editor_height": 25, "annotation_editor_fontsize": 0.8,
           "leftsidebar_width": 18,
           "image_grid": {"img_height": 80, "rshape_fill": "none", "rshape_fill_opacity": 0.3,
                          "rshape_stroke": "yellow", "rshape_stroke_width": 2,
                          "show_region_shape": True, "show_image_policy": "all"},
           "image": {"region_label": "__via_region_id__",
                     "region_color": "__via_default_region_color__",
                     "region_label_font": "10px Sans",
                     "on_image_annotation_editor_placement": "NEAR_REGION"}},
    "core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""},
    "project": {"name": "segcli"},
}
"""The settings block VIA 2.0.x writes; VIA refuses projects with keys it does not know."""


def is_via_export(data: object) -> bool:
    """True for a VIA 1.x/2.x export: a dict of dicts each with ``filename`` and ``regions``."""
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(v, dict) and "filename" in v and "regions" in v for v in data.values()))


def read_via_json(data: dict, path: Path, ledger: Ledger, label_attr: str | None,
                  default_category: str) -> Dataset:
    """Read a VIA 1.x/2.x export or a VIA 2.x project (already parsed JSON)."""
    if "_via_img_metadata" in data:
        metadata = data["_via_img_metadata"]
        attributes = data.get("_via_attributes")
        settings = data.get("_via_settings")
        fmt = "via2-project"
        if not isinstance(metadata, dict):
            ledger.error(f"_via_img_metadata must be an object, got {type(metadata).__name__}")
            metadata = {}
        if attributes is not None and not valid_attribute_defs(attributes):
            ledger.error("_via_attributes must be {\"region\": {...}, \"file\": {...}}")
            attributes = None
    else:
        metadata, attributes, settings = data, None, None
        fmt = "via1-export" if any(isinstance(v.get("regions"), dict) for v in data.values()) else "via2-export"
    images = [_read_image_entry(key, entry, ledger) for key, entry in metadata.items()]
    images = [image for image in images if image is not None]
    return build_via_dataset(images, path, fmt, ledger, label_attr, default_category,
                             attributes, settings if isinstance(settings, dict) else None)


def valid_attribute_defs(attributes: object) -> bool:
    return (isinstance(attributes, dict)
            and all(isinstance(attributes.get(k, {}), dict) for k in ("region", "file"))
            and all(isinstance(v, dict) for k in ("region", "file") for v in attributes.get(k, {}).values()))


def _read_image_entry(key: str, entry: object, ledger: Ledger) -> tuple[ImageRecord, list] | None:
    """One ``_via_img_metadata`` value -> (ImageRecord without annotations, raw region list)."""
    if not isinstance(entry, dict):
        ledger.error(f"entry must be an object, got {type(entry).__name__}", item=f"key '{key}'")
        return None
    name = entry.get("filename")
    if not isinstance(name, str) or not name:
        ledger.error("missing or empty 'filename'", item=f"key '{key}'")
        return None
    file_attributes = entry.get("file_attributes", {})
    if not isinstance(file_attributes, dict):
        ledger.error("'file_attributes' must be an object", image=name)
        file_attributes = {}
    regions = entry.get("regions", [])
    if isinstance(regions, dict):  # VIA 1.x: {"0": region, "1": region}
        try:
            regions = [regions[k] for k in sorted(regions, key=int)]
        except ValueError:
            regions = list(regions.values())
    if not isinstance(regions, list):
        ledger.error(f"'regions' must be a list or object, got {type(regions).__name__}", image=name)
        regions = []
    image = ImageRecord(file_name=name, size_bytes=_parse_size(entry.get("size")),
                        attributes=dict(file_attributes))
    return image, regions


def _parse_size(size: object) -> int | None:
    if isinstance(size, bool):
        return None
    if isinstance(size, int):
        return size if size >= 0 else None
    if isinstance(size, str) and size.strip().isdigit():
        return int(size)
    return None


def validate_via_shape(shape: object) -> str | None:
    """Return a problem description for a malformed VIA ``shape_attributes``, else None."""
    if not isinstance(shape, dict):
        return f"shape_attributes must be an object, got {type(shape).__name__}"
    name = shape.get("name")
    if not isinstance(name, str) or name not in SHAPE_KEYS:  # a list or dict name is unhashable
        return f"unknown shape {name!r}" if name is not None else "shape has no 'name'"
    for key in SHAPE_KEYS[name]:
        if key not in shape:
            return f"{name} is missing '{key}'"
    keys = SHAPE_KEYS[name]
    if name in ("polygon", "polyline"):
        xs, ys = shape["all_points_x"], shape["all_points_y"]
        if not (isinstance(xs, list) and isinstance(ys, list) and check_numbers(xs + ys, "") is None):
            for key in keys:  # find which list is wrong, for the message
                problem = check_numbers(shape[key], key)
                if problem:
                    return problem
        if len(xs) != len(ys):
            return (f"all_points_x has {len(shape['all_points_x'])} values but all_points_y "
                    f"has {len(shape['all_points_y'])}")
        return None
    values = [shape[k] for k in keys] + ([shape["theta"]] if "theta" in shape else [])
    problem = check_numbers(values, f"{name} parameters")
    if problem:
        return problem
    for key in NON_NEGATIVE_KEYS:
        if key in shape and shape[key] < 0:
            return f"{name} has negative {key} ({shape[key]})"
    return None


def build_via_dataset(entries: list[tuple[ImageRecord, list]], path: Path, fmt: str, ledger: Ledger,
                      label_attr: str | None, default_category: str, attributes: dict | None,
                      settings: dict | None) -> Dataset:
    """Turn (image, raw regions) pairs into a Dataset: validate shapes, pick the labelling
    attribute, map option ids to labels and build the categories."""
    region_defs = (attributes or {}).get("region", {})
    checked = [(image, _valid_regions(image, regions, ledger)) for image, regions in entries]
    all_region_attrs = [attrs for _, regions in checked for _, _, attrs in regions]
    attr = pick_label_attr(all_region_attrs, region_defs, label_attr, ledger, default_category)
    labels: list[str] = []
    for image, regions in checked:
        for index, shape, attrs in regions:
            if shape["name"] in NON_AREA_SHAPES:
                region = {"shape_attributes": shape, "region_attributes": attrs}
                image.nonarea_regions.append((index, region))
                ledger.add("kept", f"no area ({shape['name']}): kept in the image's attributes, "
                           "not a mask", image.file_name, f"region {index}")
                continue
            label = label_of_region(attrs, attr, region_defs.get(attr) if attr else None)
            kept = {k: v for k, v in attrs.items() if not (label is not None and k == attr)}
            crowd = kept.get("iscrowd") in (1, "1", True)  # written by write_via_project
            if crowd:
                del kept["iscrowd"]
            annotation = Annotation(category=label if label is not None else default_category,
                                    via_shape=shape, attributes=kept, source=f"region {index}",
                                    category_from_default=label is None, iscrowd=int(crowd),
                                    label_value=attrs[attr] if label is not None else None)
            image.annotations.append(annotation)
            labels.append(annotation.category)
    categories = categories_for_labels(labels, region_defs.get(attr) if attr else None)
    return Dataset(images=[image for image, _ in checked], categories=categories, source_path=path,
                   source_format=fmt, label_attr=attr, default_category=default_category,
                   via_attributes=attributes, via_settings=settings)


def _valid_regions(image: ImageRecord, regions: list, ledger: Ledger) -> list[tuple[int, dict, dict]]:
    """(index, shape, attributes) for each well-formed region; errors go to the ledger."""
    valid = []
    for index, region in enumerate(regions):
        item = f"region {index}"
        if not isinstance(region, dict):
            ledger.error(f"region must be an object, got {type(region).__name__}", image.file_name, item)
            continue
        shape = region.get("shape_attributes")
        problem = validate_via_shape(shape)
        if problem:
            ledger.error(problem, image.file_name, item)
            continue
        attrs = region.get("region_attributes", {})
        if not isinstance(attrs, dict):
            ledger.error("region_attributes must be an object", image.file_name, item)
            continue
        valid.append((index, shape, attrs))
    return valid


def read_via_csv(path: Path, ledger: Ledger, label_attr: str | None, default_category: str) -> Dataset:
    """Read a VIA 1.x/2.x CSV export (JSON objects inside CSV fields)."""
    text = read_text(path, "a CSV file")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise SegcliError(f"invalid CSV: {exc}", path) from None
    if not rows or not rows[0] or rows[0][0].lstrip("#") != "filename":
        ledger.error("not a VIA CSV export: the header must start with 'filename' or '#filename'")
        return build_via_dataset([], path, "via-csv", ledger, label_attr, default_category, None, None)
    entries: dict[str, tuple[ImageRecord, list]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 7:
            ledger.error(f"expected 7 columns, found {len(row)}", item=f"line {line}")
            continue
        name, size, file_attrs, _, _, shape, region_attrs = row
        fields = {"file_attributes": file_attrs, "region_shape_attributes": shape, "region_attributes": region_attrs}
        try:
            file_attrs, shape, region_attrs = _parse_fields(fields)
        except _BadField as exc:
            ledger.error(str(exc), item=f"line {line}")
            continue
        except ValueError as exc:  # NaN, Infinity or 1e400: no JSON output could hold them
            ledger.error(f"a field is {exc}", item=f"line {line}")
            continue
        except RecursionError:
            ledger.error("a field holds JSON nested too deeply", item=f"line {line}")
            continue
        image, regions = entries.setdefault(name, (ImageRecord(name, size_bytes=_parse_size(size),
                                                               attributes=file_attrs if isinstance(file_attrs, dict) else {}), []))
        if shape:
            regions.append({"shape_attributes": shape, "region_attributes": region_attrs})
    return build_via_dataset(list(entries.values()), path, "via-csv", ledger, label_attr,
                             default_category, None, None)


def _parse_fields(fields: dict[str, str]) -> list:
    """The JSON of each CSV field. The error says why a field is not JSON: VIA 0.1b's
    'name=...;' syntax when a field uses it, else the first field's JSON flaw (a NUL in a
    string, an unescaped quote) at its column."""
    values, flaws = [], []
    for name, text in fields.items():
        try:
            values.append(parse_json(text))
        except json.JSONDecodeError as exc:
            if "=" in text and not text.lstrip().startswith(("{", "[", '"')):
                raise _BadField(f"{name} is not JSON (the VIA 0.1b 'name=...;' syntax is not supported: "
                                "export JSON from VIA instead)") from None
            flaws.append(f"{name} is not JSON: {exc.msg} at column {exc.colno}")
    if flaws:
        raise _BadField(flaws[0])
    return values


class _BadField(ValueError):
    """A VIA CSV field that is not JSON, with the reason."""


def write_via_project(dataset: Dataset, ledger: Ledger, default_filepath: str | None = None) -> dict:
    """A VIA 2 project dict for ``dataset`` (opens in VIA 2.0.x with Project > Load).

    ``default_filepath``: the images folder as VIA wants it (prepended to each file name), set
    in ``_via_settings.core`` so VIA and segcli readers find the images from the project's
    folder; None keeps the source's settings as they were.

    Regions come back in their original order and shape (``via_shape``); COCO-only geometry
    becomes polygons (RLE via its contours) or rects (boxes), each noted in the ledger. The
    category is written to the labelling attribute (an option id when it is a dropdown/radio).
    """
    from segcli.formats.labels import option_ids_by_label, unreadable_label_problem
    problem = unreadable_label_problem([c.name for c in dataset.categories])
    if problem is not None:  # what segcli writes, segcli must read back as it was
        raise SegcliError(f"{problem}; write COCO instead", dataset.source_path)
    attributes = copy.deepcopy(dataset.via_attributes) if dataset.via_attributes else {"region": {}, "file": {}}
    attributes.setdefault("region", {})
    attributes.setdefault("file", {})
    label_attr = dataset.label_attr or "category"
    if label_attr not in attributes["region"]:
        attributes["region"][label_attr] = {
            "type": "dropdown", "description": "object class",
            "options": {c.name: c.name for c in dataset.categories}, "default_options": {}}
    definition = attributes["region"][label_attr]
    option_ids = option_ids_by_label(definition)
    metadata, id_list = {}, []
    for image in dataset.images:
        regions = [(index, region) for index, region in image.nonarea_regions]
        slots = sorted(i for i, _ in regions)
        position = 0
        for annotation in image.annotations:
            while position in slots:
                position += 1
            for region in _annotation_regions(annotation, image, ledger):
                attrs = dict(annotation.attributes)
                if annotation.label_value is not None and label_of_region(
                        {label_attr: annotation.label_value}, label_attr, definition) == annotation.category:
                    attrs[label_attr] = annotation.label_value
                elif not annotation.category_from_default:
                    attrs[label_attr] = option_ids.get(annotation.category, annotation.category)
                if annotation.iscrowd:
                    attrs["iscrowd"] = 1
                if annotation.score is not None:
                    attrs["score"] = round(float(annotation.score), 4)
                regions.append((position, {"shape_attributes": region, "region_attributes": attrs}))
                position += 1
        _define_attributes(attributes, image.attributes, [r["region_attributes"] for _, r in regions])
        size = image.size_bytes if image.size_bytes is not None else (
            image.path.stat().st_size if image.path is not None else -1)
        key = _unique_key(f"{image.file_name}{size}", metadata)
        metadata[key] = {"filename": image.file_name, "size": size,
                         "regions": [r for _, r in sorted(regions, key=lambda pair: pair[0])],
                         "file_attributes": dict(image.attributes)}
        id_list.append(key)
    settings = copy.deepcopy(dataset.via_settings if _looks_like_via2_settings(dataset.via_settings) else VIA2_SETTINGS)
    if default_filepath is not None and isinstance(settings.get("core"), dict):
        settings["core"]["default_filepath"] = default_filepath
    return {"_via_settings": settings, "_via_img_metadata": metadata, "_via_attributes": attributes,
            "_via_data_format_version": "2.0.10", "_via_image_id_list": id_list}


def _unique_key(key: str, metadata: dict) -> str:
    """VIA's key (file name + size), with a suffix when another image has it already (two
    entries of one name and size, or 'a.png1'+'23' and 'a.png12'+'3'): one key holds one entry,
    and a second one would replace the first."""
    if key not in metadata:
        return key
    number = 2
    while f"{key}~{number}" in metadata:
        number += 1
    return f"{key}~{number}"


def _annotation_regions(annotation: Annotation, image: ImageRecord, ledger: Ledger) -> list[dict]:
    """VIA shapes for one annotation (several when a COCO object has several parts)."""
    from segcli.formats import geometry
    if annotation.via_shape is not None:
        return [annotation.via_shape]
    item = annotation.source
    if annotation.bbox_xywh is not None and annotation.polygons is None and annotation.rle is None:
        x, y, w, h = annotation.bbox_xywh
        ledger.add("converted", "box-only annotation written as a rect", image.file_name, item)
        return [{"name": "rect", "x": x, "y": y, "width": w, "height": h}]
    if annotation.polygons is not None:
        shapes = [{"name": "polygon", "all_points_x": p[0::2], "all_points_y": p[1::2]}
                  for p in annotation.polygons]
    else:
        shapes, holes = geometry.mask_to_via_polygons(geometry.rle_to_mask(annotation.rle))
        ledger.add("converted", "RLE mask written as polygon(s) traced from its outline", image.file_name, item)
        if holes:
            ledger.add("changed", "mask has holes, which VIA polygons cannot hold: holes filled",
                       image.file_name, item)
    if len(shapes) > 1:
        ledger.add("changed", f"multi-part object split into VIA regions: {len(shapes)} parts",
                   image.file_name, item)
    if not shapes:
        ledger.add("dropped", "empty mask", image.file_name, item)
    return shapes


def _define_attributes(attributes: dict, file_attrs: dict, region_attrs: list[dict]) -> None:
    """Add text/checkbox definitions for attributes VIA would otherwise not show."""
    for target, values in (("file", [file_attrs]), ("region", region_attrs)):
        for attrs in values:
            for name, value in attrs.items():
                if name not in attributes[target]:
                    kind = "checkbox" if isinstance(value, dict) else "text"
                    attributes[target][name] = {"type": kind, "description": "", "options": {},
                                                "default_options": {}}
                definition = attributes[target][name]
                if isinstance(value, dict) and isinstance(definition.get("options"), dict):
                    for option in value:  # every option any region uses, or VIA hides it
                        definition["options"].setdefault(option, option)


def _looks_like_via2_settings(settings: dict | None) -> bool:
    return isinstance(settings, dict) and set(settings) <= set(VIA2_SETTINGS) and "core" in settings

"""VIA 3.x projects (``project``, ``file``, ``view``, ``attribute``, ``metadata``) read into a
Dataset.

A VIA 3 region is a metadata entry whose ``xy`` is a shape code followed by numbers
(``_VIA_RSHAPE`` in VIA's ``_via_metadata.js``: 1 point, 2 rect, 3 circle, 4 ellipse, 5 line,
6 polyline, 7 polygon; ``_via_const.js`` adds 8 extreme rectangle and 9 extreme circle). Shapes are
turned into VIA 2 ``shape_attributes`` so the rest of segcli sees one layout, and attribute
definitions into VIA 2 ``_via_attributes``. Video and audio files and temporal segments are
skipped with a ledger entry.
"""

from __future__ import annotations

import math
from pathlib import Path

from segcli.formats.geometry import check_numbers
from segcli.formats.via import build_via_dataset
from segcli.ledger import Ledger
from segcli.structures import Dataset, ImageRecord

VIA3_TYPES = {1: "text", 2: "checkbox", 3: "radio", 4: "dropdown", 5: "image"}
IMAGE_FILE_TYPE = 2


def is_via3_project(data: object) -> bool:
    """True for a VIA 3 project file."""
    return isinstance(data, dict) and all(k in data for k in ("project", "file", "metadata"))


def xy_to_shape(xy: list) -> tuple[dict | None, str | None, str | None]:
    """VIA 3 ``xy`` -> (VIA 2 shape_attributes, problem, conversion note)."""
    problem = check_numbers(xy, "xy")
    if problem:
        return None, problem, None
    code, values = int(xy[0]), [float(v) for v in xy[1:]]
    need = {1: 2, 2: 4, 3: 3, 4: 4, 5: 4}
    if code in need and len(values) != need[code]:
        return None, f"shape code {code} needs {need[code]} numbers, found {len(values)}", None
    if code in (6, 7, 8, 9) and (len(values) % 2 or len(values) < 4):
        return None, f"shape code {code} needs x,y pairs, found {len(values)} numbers", None
    xs, ys = values[0::2], values[1::2]
    if code == 1:
        return {"name": "point", "cx": values[0], "cy": values[1]}, None, None
    if code == 2:
        x, y, w, h = values
        return {"name": "rect", "x": x, "y": y, "width": w, "height": h}, None, None
    if code == 3:
        return {"name": "circle", "cx": values[0], "cy": values[1], "r": values[2]}, None, None
    if code == 4:
        cx, cy, rx, ry = values
        return {"name": "ellipse", "cx": cx, "cy": cy, "rx": rx, "ry": ry, "theta": 0}, None, None
    if code in (5, 6):
        note = "line written as a 2-point polyline" if code == 5 else None
        return {"name": "polyline", "all_points_x": xs, "all_points_y": ys}, None, note
    if code == 7:
        return {"name": "polygon", "all_points_x": xs, "all_points_y": ys}, None, None
    if code == 8:
        x, y = min(xs), min(ys)
        return ({"name": "rect", "x": x, "y": y, "width": max(xs) - x, "height": max(ys) - y},
                None, "extreme-point rectangle written as its bounding rect")
    if code == 9:
        cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
        r = sum(math.hypot(px - cx, py - cy) for px, py in zip(xs, ys)) / len(xs)
        return ({"name": "circle", "cx": cx, "cy": cy, "r": r}, None,
                "extreme-point circle written as the circle through its mean centre")
    return None, f"unknown VIA 3 shape code {code}", None


def read_via3(data: dict, path: Path, ledger: Ledger, label_attr: str | None,
              default_category: str) -> Dataset:
    """Read a VIA 3 project (already parsed JSON)."""
    files = data.get("file") if isinstance(data.get("file"), dict) else {}
    views = data.get("view") if isinstance(data.get("view"), dict) else {}
    attribute = data.get("attribute") if isinstance(data.get("attribute"), dict) else {}
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    names = {aid: str(a.get("aname", aid)) for aid, a in attribute.items() if isinstance(a, dict)}
    entries: dict[str, tuple[ImageRecord, list]] = {}
    for vid, view in views.items():
        fids = view.get("fid_list", []) if isinstance(view, dict) else []
        record = files.get(str(fids[0])) if isinstance(fids, list) and len(fids) == 1 else None
        if not isinstance(record, dict) or not isinstance(record.get("fname"), str):
            ledger.error("view must list exactly one known file", item=f"view {vid}")
            continue
        if record.get("type", IMAGE_FILE_TYPE) != IMAGE_FILE_TYPE:
            ledger.add("skipped", f"not an image file: type {record.get('type')} (video/audio)",
                       record["fname"], f"view {vid}")
            continue
        entries[str(vid)] = (ImageRecord(file_name=record["fname"]), [])
    for mid, meta in metadata.items():
        _add_metadata(str(mid), meta, entries, set(map(str, views)), names, ledger)
    if not entries and (files or metadata):
        ledger.error("no image with spatial regions: VIA 3 video/audio projects are not supported")
    return build_via_dataset(list(entries.values()), path, "via3-project", ledger, label_attr,
                             default_category, _via2_attribute_defs(attribute), None)


def _add_metadata(mid: str, meta: object, entries: dict, view_ids: set[str], names: dict,
                  ledger: Ledger) -> None:
    vid = str(meta.get("vid")) if isinstance(meta, dict) else None
    if vid not in view_ids:
        ledger.error("metadata entry must be an object with a known 'vid'", item=f"metadata {mid}")
        return
    if vid not in entries:  # its view was skipped (video, audio) and reported already
        return
    image, regions = entries[vid]
    av = meta.get("av") if isinstance(meta.get("av"), dict) else {}
    attrs = {names.get(aid, aid): value for aid, value in av.items()}
    xy, z = meta.get("xy") or [], meta.get("z") or []
    if not xy:
        if z:
            ledger.add("skipped", "temporal segment (z) with no spatial region", image.file_name,
                       f"metadata {mid}")
        else:
            image.attributes.update(attrs)
        return
    shape, problem, note = xy_to_shape(xy)
    if problem:
        ledger.error(problem, image.file_name, f"metadata {mid}")
        return
    if note:
        ledger.add("converted", note, image.file_name, f"metadata {mid}")
    regions.append({"shape_attributes": shape, "region_attributes": attrs})


def _via2_attribute_defs(attribute: dict) -> dict:
    """VIA 3 attribute definitions in VIA 2 ``_via_attributes`` form."""
    defs: dict[str, dict] = {"region": {}, "file": {}}
    for aid, a in attribute.items():
        if not isinstance(a, dict):
            continue
        anchor = str(a.get("anchor_id", ""))
        target = "file" if anchor.endswith("XY0") else "region"
        options = a.get("options") if isinstance(a.get("options"), dict) else {}
        defs[target][str(a.get("aname", aid))] = {
            "type": VIA3_TYPES.get(a["type"], "text") if isinstance(a.get("type"), int) else "text",
            "description": str(a.get("desc", "")),
            "options": {str(k): str(v) for k, v in options.items()}, "default_options": {}}
    return defs

"""Instance-id mask folders: one 16-bit PNG per image, 0 background and ``k`` the k-th instance
of the image (k = 1..K, in the annotation file's order), plus ``instances.json`` giving each
id its category and crowd flag.

Unlike class-value maps, every instance comes back on reading, touching ones of one class
included; only the pixels where instances overlap belong to one of them (the smaller, painted
last), and the writer lists each instance that loses pixels that way. ``instances.json``::

    {"format": "segcli instance masks", "version": 1,
     "categories": [{"id": 1, "name": "balloon", "supercategory": ""}],
     "images": [{"mask": "a.png", "file_name": "a.jpg", "width": 640, "height": 480,
                 "instances": [{"id": 1, "category_id": 1, "iscrowd": 0}, ...]}]}

A folder holding ``instances.json`` is read this way; a folder with ``classes.txt`` as class maps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segcli.errors import SegcliError
from segcli.fileio import read_json
from segcli.formats import geometry, mask_losses
from segcli.formats.geometry import is_int
from segcli.formats.images import ImageFolder, files_inside
from segcli.formats.masks import INSTANCES_FILE, _attach_image, _safe_relative, encode_label_png, mask_targets, read_label_map
from segcli.formats.rasterize import rasterize_image
from segcli.ledger import Ledger
from segcli.structures import Annotation, Category, Dataset, ImageRecord

FORMAT_NAME = "segcli instance masks"
MAX_INSTANCES = 65535
"""Most instances one image's map holds: the PNGs are 16-bit."""


def is_instance_folder(folder: Path) -> bool:
    return (Path(folder) / INSTANCES_FILE).is_file()


def write_instance_folder(dataset: Dataset, folder: Path, ledger: Ledger) -> mask_losses.LossCounts:
    """Write one instance-id PNG per image of known size and ``instances.json`` into ``folder``
    (created); instances that overlaps hide (wholly or in part) go to the ledger."""
    category_ids = {c.name: c.id for c in dataset.categories}
    totals = mask_losses.LossCounts()
    entries = []
    folder.mkdir(parents=True)
    for image, target in mask_targets(dataset, folder, ledger):
        objects = rasterize_image(image, ledger)
        painted = mask_losses.paint(image, objects)
        ids = _instance_ids(painted, image, dataset.source_path)
        counts = mask_losses.report_losses(painted, image, ledger, None)
        for name, value in counts.to_json().items():
            setattr(totals, name, getattr(totals, name) + value)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_label_png(mask_losses.values_map(painted, ids, np.uint16)))
        by_id = sorted((int(k), obj) for k, obj in zip(ids, painted.objects) if k)
        entries.append({"mask": target.relative_to(folder).as_posix(), "file_name": image.file_name,
                        "width": image.width, "height": image.height,
                        "instances": [{"id": k, "category_id": category_ids[obj.annotation.category],
                                       "iscrowd": int(obj.annotation.iscrowd)} for k, obj in by_id]})
    document = {"format": FORMAT_NAME, "version": 1,
                "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory}
                               for c in dataset.categories],
                "images": entries}
    (folder / INSTANCES_FILE).write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return totals


def _instance_ids(painted: mask_losses.Painted, image: ImageRecord, source: Path) -> np.ndarray:
    """Each painted object's id (paint order): 1..K for the visible ones in file order, 0 for
    the wholly hidden (they have no pixel to carry an id)."""
    shown = sorted((painted.file_index[index], index) for index in range(len(painted.objects)) if painted.visible[index])
    if len(shown) > MAX_INSTANCES:
        raise SegcliError(f"{len(shown)} instances in one image: instance PNGs are 16-bit and hold at most "
                          f"{MAX_INSTANCES}; write COCO instead", source, f"image {image.file_name[:60]!r}")
    ids = np.zeros(len(painted.objects), dtype=np.int64)
    for number, (_, index) in enumerate(shown, start=1):
        ids[index] = number
    return ids


def read_instance_folder(folder: Path, ledger: Ledger, images_dir: Path | None) -> Dataset:
    """Read an instance-id folder: one instance per id listed in ``instances.json``."""
    document = read_json(folder / INSTANCES_FILE)
    categories, entries = _read_document(document, ledger)
    if ledger.errors:
        return Dataset([], [], folder, "masks")
    names = {c.id: c.name for c in categories}
    images_folder = ImageFolder(images_dir) if images_dir is not None else None
    listed = {entry["mask"]: entry for entry in entries}
    images = []
    for path in sorted(files_inside(folder, (p for p in folder.rglob("*.png") if not p.name.startswith(".")))):
        relative = path.relative_to(folder).as_posix()
        entry = listed.pop(relative, None)
        if entry is None:
            ledger.error(f"label map not listed in {INSTANCES_FILE}", relative)
            continue
        record = _read_image(path, entry, names, ledger)
        if record is None:
            continue
        if images_folder is not None:
            _attach_image(record, images_folder, path, ledger)
        images.append(record)
    for relative in listed:
        ledger.error(f"listed in {INSTANCES_FILE} but there is no such PNG in the folder", relative)
    return Dataset(images, categories, folder, "masks")


def _read_image(path: Path, entry: dict, names: dict[int, str], ledger: Ledger) -> ImageRecord | None:
    relative = entry["mask"]
    try:
        ids = read_label_map(path)
    except (OSError, ValueError) as exc:
        ledger.error(f"unreadable instance map: {exc}", relative)
        return None
    height, width = ids.shape
    if (entry.get("width"), entry.get("height")) not in ((width, height), (None, None)):
        ledger.error(f"{INSTANCES_FILE} says {entry.get('width')}x{entry.get('height')}, the PNG is {width}x{height}",
                     relative)
        return None
    instances = entry["instances"]
    known = {i["id"] for i in instances}
    present = set(np.unique(ids).tolist()) - {0}
    unlisted = sorted(present - known)
    if unlisted:
        ledger.error(f"instance ids {unlisted[:10]} are not listed in {INSTANCES_FILE}", relative)
        return None
    record = ImageRecord(file_name=entry.get("file_name") or relative, height=height, width=width)
    shown = [i for i in instances if i["id"] in present]
    for instance in instances:
        if instance["id"] not in present:
            ledger.add("dropped", "instance has no pixel in the map", relative, f"instance {instance['id']}")
    lookup = np.full(max(known | present | {0}) + 1, -1, dtype=np.int64)
    lookup[[i["id"] for i in shown]] = np.arange(len(shown))
    rles = geometry.components_to_rles(lookup[ids], len(shown))
    for instance, rle in zip(shown, rles):
        record.annotations.append(Annotation(category=names[instance["category_id"]], rle=rle,
                                             iscrowd=instance["iscrowd"], source=f"instance {instance['id']}"))
    return record


def _read_document(document: object, ledger: Ledger) -> tuple[list[Category], list[dict]]:
    """Categories and image entries of ``instances.json``, each checked (errors to the ledger)."""
    if not isinstance(document, dict) or not isinstance(document.get("categories"), list) \
            or not isinstance(document.get("images"), list):
        ledger.error(f"{INSTANCES_FILE} must be an object with lists 'categories' and 'images'")
        return [], []
    categories, seen_ids, seen_names = [], set(), set()
    for number, raw in enumerate(document["categories"]):
        if not (isinstance(raw, dict) and is_int(raw.get("id")) and isinstance(raw.get("name"), str)) \
                or raw["id"] in seen_ids or raw["name"] in seen_names:
            ledger.error("a category needs a unique integer 'id' and a unique string 'name'", "",
                         f"category {number}")
            continue
        seen_ids.add(raw["id"])
        seen_names.add(raw["name"])
        supercategory = raw.get("supercategory")
        categories.append(Category(raw["id"], raw["name"], supercategory if isinstance(supercategory, str) else ""))
    entries = [entry for number, raw in enumerate(document["images"])
               if (entry := _checked_entry(number, raw, seen_ids, ledger)) is not None]
    return sorted(categories, key=lambda c: c.id), entries


def _checked_entry(number: int, raw: object, category_ids: set, ledger: Ledger) -> dict | None:
    item = f"images[{number}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("mask"), str) or not isinstance(raw.get("instances"), list):
        ledger.error("an image entry needs a string 'mask' and a list 'instances'", "", item)
        return None
    if _safe_relative(raw["mask"]).as_posix() != raw["mask"]:
        ledger.error(f"'mask' {raw['mask'][:60]!r} must be a relative path inside the folder", "", item)
        return None
    if raw.get("file_name") is not None and not isinstance(raw["file_name"], str):
        ledger.error("'file_name' must be a string", raw["mask"], item)
        return None
    ids = set()
    for instance in raw["instances"]:
        good = (isinstance(instance, dict) and is_int(instance.get("id")) and 1 <= instance["id"] <= MAX_INSTANCES
                and instance["id"] not in ids and instance.get("category_id") in category_ids
                and instance.get("iscrowd", 0) in (0, 1))
        if not good:
            ledger.error(f"an instance needs a unique 'id' in 1..{MAX_INSTANCES}, a listed 'category_id' "
                         f"and 'iscrowd' 0 or 1: {str(instance)[:80]}", raw["mask"], item)
            return None
        ids.add(instance["id"])
        instance.setdefault("iscrowd", 0)
    return raw

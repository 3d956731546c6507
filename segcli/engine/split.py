"""``segcli split``: one annotation set into train/val (and test) parts, by image, stratified by
class, reproducible with a seed, each part written in the input's own format.

The unit is the image: every entry naming the same image file (VIA may list one twice) goes to
the same part with all its objects. Parts are built from the input's own JSON (or CSV rows, or
label PNGs), filtered, so nothing is converted: a VIA 1 export stays a VIA 1 export, COCO
categories keep their ids and order in every part, attributes and settings are kept. The layout
is what ``segcli train DATA`` reads, ``DIR/train/train.json`` and ``DIR/val/val.json`` (a label-
mask input gives the mask folders ``DIR/train/`` and ``DIR/val/``), and images are never copied:
``DIR/split.json`` records the images folder (``segcli train DIR`` looks there, see
``formats.split_record``), a VIA 2 project's ``default_filepath`` is set to it, and
``DIR/train.txt`` etc. list each part's image files (absolute paths, one a line). Everything is
built in a temporary folder renamed into place, so a failure leaves nothing behind.

Stratification (see ``assign_parts``): first each class gets one image in train, one in val when
it has 2 images or more, one in test when it has 3 or more (rarest classes first, images with
the fewest classes preferred); then the other images are placed by iterative stratification
(Sechidis et al. 2011: the class with the fewest images left goes first, each of its images to
the part lacking most of that class, then the part lacking most images); images without objects
fill the parts to their sizes last. The seed shuffles the images (sorted by name first, so the
file's order does not matter).
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from segcli.errors import SegcliError
from segcli.fileio import (
    atomic_path,
    read_json,
    read_text,
    refuse_writing_inputs,
    write_json_atomic,
)
from segcli.formats import masks
from segcli.formats.images import is_regular_file
from segcli.formats.io import detect_format, locate_images, read_annotations
from segcli.formats.split_record import SPLIT_FILE, SPLIT_KIND
from segcli.ledger import Ledger
from segcli.structures import Dataset

"""The ``kind`` of a split.json, so that ``segcli train`` only trusts a file segcli wrote."""

METHOD = ("by image; each class gets 1 image in train, 1 in val from 2 images, 1 in test from 3 "
          "(rarest first), then iterative stratification (Sechidis et al. 2011) on the images' class "
          "sets; images without objects fill the parts to their sizes")


@dataclass
class ImageGroup:
    """One image of the split: every entry naming it, its classes and object counts."""

    key: str
    names: set[str] = field(default_factory=set)
    objects: Counter = field(default_factory=Counter)
    path: Path | None = None
    classes: frozenset[str] = frozenset()  # set once every entry is read


@dataclass
class SplitResult:
    """What a split did: the output folder, the parts' files and the per-class table."""

    out: Path
    input_format: str
    parts: dict[str, dict]
    classes: list[dict]
    images_folder: Path | None
    images_found: int
    images_total: int
    record: dict


# ------------------------------------------------------------------ checks

def part_fractions(val: float, test: float | None) -> dict[str, float]:
    """{"train": ..., "val": ..., ["test": ...]}; refuses fractions outside (0, 1) and val + test >= 1."""
    for option, value in (("--val", val), ("--test", test)):
        if value is not None and not 0 < value < 1:  # NaN fails this test too
            raise SegcliError(f"{option} {value:g}: expected a fraction between 0 and 1 (both excluded)")
    if test is not None and val + test >= 1:
        raise SegcliError(f"--val {val:g} + --test {test:g} = {val + test:g}: leaves no image for train "
                          "(the sum must be below 1)")
    fractions = {"train": round(1 - val - (test or 0), 12), "val": val}
    if test is not None:
        fractions["test"] = test
    return fractions


def check_out(out: Path, annotations: Path, images_dir: Path | None) -> None:
    """--out must be a new or empty folder, not the input's folder nor inside an input mask folder."""
    input_folder = annotations if annotations.is_dir() else annotations.parent
    if out.exists() and out.resolve() == input_folder.resolve():
        raise SegcliError("--out is the input's folder: choose a new folder for the parts", out)
    refuse_writing_inputs(out, [annotations] + ([images_dir] if images_dir else []),
                          [annotations] if annotations.is_dir() else [], "--out")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise SegcliError("--out exists and is not a folder", out)
        if any(out.iterdir()):
            raise SegcliError("--out is not empty: choose a new or empty folder", out)


def part_sizes(count: int, fractions: dict[str, float], source: Path) -> dict[str, int]:
    """Images per part: val and test are rounded (half up) and at least 1, train gets the rest
    and at least 1."""
    if count < len(fractions):
        raise SegcliError(f"{count} image{'s' if count != 1 else ''} cannot make {len(fractions)} parts "
                          f"({', '.join(fractions)}): each part needs at least one", source)
    sizes = {part: max(1, math.floor(count * share + 0.5)) for part, share in fractions.items() if part != "train"}
    while count - sum(sizes.values()) < 1:  # rounding up left train empty: take from the largest
        largest = max(sizes, key=lambda p: (sizes[p], p))
        sizes[largest] -= 1
    return {"train": count - sum(sizes.values()), **sizes}


# ------------------------------------------------------------------ stratification

def assign_parts(groups: list[ImageGroup], fractions: dict[str, float], seed: int,
                 source: Path) -> dict[str, str]:
    """Image key -> part; see the module docstring for the method. Linear in the images' class
    memberships (a heap picks the class with the fewest images left), so 100,000 images of
    1,000 classes take seconds."""
    sizes = part_sizes(len(groups), fractions, source)
    order = sorted(groups, key=lambda g: (min(g.names), g.key))  # by name: not by file order nor folder
    random.Random(seed).shuffle(order)
    rank = {g.key: i for i, g in enumerate(order)}
    images_of: dict[str, list[ImageGroup]] = {}
    for group in order:
        for cls in group.classes:
            images_of.setdefault(cls, []).append(group)
    state = _Assignment(sizes, fractions, {c: len(images) for c, images in images_of.items()})
    for cls in sorted(images_of, key=lambda c: (len(images_of[c]), c)):
        _cover(cls, images_of[cls], state, rank)
    heap = [(left, cls) for cls, left in state.left.items() if left]
    heapq.heapify(heap)
    while heap:
        left, cls = heapq.heappop(heap)
        if left != state.left[cls] or not left:  # stale: a newer, smaller entry is in the heap
            continue
        for group in images_of[cls]:
            if group.key not in state.part_of:
                for other in state.assign(group, state.best_part(cls)):
                    if other != cls and state.left[other]:
                        heapq.heappush(heap, (state.left[other], other))
    for group in order:  # images without objects
        if group.key not in state.part_of:
            state.assign(group, state.best_part(None))
    return state.part_of


def _cover(cls: str, images: list[ImageGroup], state: _Assignment, rank: dict[str, int]) -> None:
    """Give ``cls`` one image in train, in val (from 2 images) and in test (from 3) if it has none there."""
    wanted = ["train", "val", "test"][:len(images)]
    for part in (p for p in wanted if p in state.sizes):
        if state.class_filled[cls, part]:
            continue
        free = [g for g in images if g.key not in state.part_of]
        if free:  # the image with the fewest classes locks the fewest other choices
            state.assign(min(free, key=lambda g: (len(g.classes), rank[g.key])), part)


class _Assignment:
    """Parts being filled: how many images and how much of each class each still lacks."""

    def __init__(self, sizes: dict[str, int], fractions: dict[str, float], class_count: dict[str, int]):
        self.sizes = sizes
        self.fractions = fractions
        self.class_count = class_count  # images of each class
        self.left = dict(class_count)  # images of each class not yet placed
        self.part_of: dict[str, str] = {}
        self.filled: Counter = Counter()
        self.class_filled: Counter = Counter()  # (class, part) -> images

    def assign(self, group: ImageGroup, part: str) -> frozenset[str]:
        """Place ``group`` in ``part``; returns its classes (their counts of images left changed)."""
        self.part_of[group.key] = part
        self.filled[part] += 1
        for cls in group.classes:
            self.class_filled[cls, part] += 1
            self.left[cls] -= 1
        return group.classes

    def best_part(self, cls: str | None) -> str:
        """The part lacking most of ``cls`` among those not full, then the one lacking most images."""
        open_parts = [p for p in self.sizes if self.filled[p] < self.sizes[p]] or list(self.sizes)

        def lack(part: str) -> tuple[float, int]:
            images_lacking = self.sizes[part] - self.filled[part]
            if cls is None:
                return (images_lacking, 0)
            return (self.class_count[cls] * self.fractions[part] - self.class_filled[cls, part], images_lacking)

        return max(open_parts, key=lack)


# ------------------------------------------------------------------ reading

def read_groups(dataset: Dataset) -> list[ImageGroup]:
    """The images as groups: entries naming one file go together (by resolved path when found,
    else by name)."""
    groups: dict[str, ImageGroup] = {}
    key_of: dict[str, str] = {}
    for image in dataset.images:
        key = key_of.get(image.file_name) or (str(image.path) if image.path is not None else f"name:{image.file_name}")
        group = groups.setdefault(key, ImageGroup(key, path=image.path))
        group.names.add(image.file_name)
        group.objects.update(a.category for a in image.annotations)
        key_of[image.file_name] = key
    for group in groups.values():
        group.classes = frozenset(group.objects)
    return list(groups.values())


def load(annotations: Path, images_dir: Path | None, label_attr: str | None,
         category: str) -> tuple[Dataset, object, Path | None]:
    """(dataset with images located, the parsed JSON or None, the images folder or None)."""
    detected = detect_format(annotations)
    ledger = Ledger(str(annotations))
    reading_images = None if detected[0] == "masks" else images_dir  # mask names must stay the PNGs'
    dataset = read_annotations(annotations, ledger, label_attr, category, reading_images, detected)
    ledger.raise_errors()
    folder = images_dir
    if detected[0] != "masks":
        folder = locate_images(dataset, images_dir, ledger, require_found=False)
    return dataset, detected[1], Path(folder).resolve() if folder is not None else None


# ------------------------------------------------------------------ writing the parts in the input's format

def _coco_part(data: dict, names: set[str], folder: Path | None) -> dict:
    images = [im for im in data["images"] if im["file_name"] in names]
    ids = {im["id"] for im in images}
    return {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}


def _via_export_part(data: dict, names: set[str], folder: Path | None) -> dict:
    return {key: entry for key, entry in data.items() if entry["filename"] in names}


def _via_project_part(data: dict, names: set[str], folder: Path | None) -> dict:
    metadata = {k: e for k, e in data["_via_img_metadata"].items() if e["filename"] in names}
    part = {**data, "_via_img_metadata": metadata}
    if isinstance(data.get("_via_image_id_list"), list):  # VIA 2.0.10 keeps the image order here
        part["_via_image_id_list"] = [k for k in data["_via_image_id_list"] if k in metadata]
    if folder is not None:  # VIA (and segcli) look for the images there: the originals
        settings = dict(data["_via_settings"]) if isinstance(data.get("_via_settings"), dict) else {}
        core = dict(settings["core"]) if isinstance(settings.get("core"), dict) else {}
        core["default_filepath"] = folder.as_posix().rstrip("/") + "/"
        part["_via_settings"] = {**settings, "core": core}
    return part


def _via3_part(data: dict, names: set[str], folder: Path | None) -> dict:
    files = data.get("file") or {}
    views = {vid: view for vid, view in (data.get("view") or {}).items()
             if isinstance(view, dict) and len(view.get("fid_list") or []) == 1
             and (files.get(str(view["fid_list"][0])) or {}).get("fname") in names}
    kept_files = {str(view["fid_list"][0]) for view in views.values()}
    part = {**data, "file": {fid: f for fid, f in files.items() if str(fid) in kept_files}, "view": views,
            "metadata": {mid: m for mid, m in (data.get("metadata") or {}).items()
                         if isinstance(m, dict) and str(m.get("vid")) in views}}
    project = data.get("project")
    if isinstance(project, dict) and isinstance(project.get("vid_list"), list):
        part["project"] = {**project, "vid_list": [v for v in project["vid_list"] if str(v) in views]}
    return part


JSON_PARTS = {"coco": _coco_part, "via1-export": _via_export_part, "via2-export": _via_export_part,
              "via2-project": _via_project_part, "via3-project": _via3_part}


def _csv_part(source: Path, names: set[str]) -> str:
    rows = list(csv.reader(io.StringIO(read_text(source, "a CSV file"))))  # read whole before: it parsed
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(rows[0])
    writer.writerows(row for row in rows[1:] if row and row[0] in names)
    return buffer.getvalue()


def _mask_part(source: Path, folder: Path, names: set[str]) -> None:
    """A label-mask part: the PNGs of its images and the class file (or, for an instance-id
    folder, ``instances.json`` holding only the part's images, categories unchanged)."""
    if is_regular_file(source / masks.INSTANCES_FILE):
        document = read_json(source / masks.INSTANCES_FILE)  # checked whole by the reader already
        entries = [e for e in document["images"] if (e.get("file_name") or e["mask"]) in names]
        write_json_atomic(folder / masks.INSTANCES_FILE, {**document, "images": entries}, indent=1)
        masks_to_copy = [e["mask"] for e in entries]
    else:
        classes = masks.find_classes_file(source)
        shutil.copyfile(classes, folder / classes.name)
        masks_to_copy = sorted(names)  # a class-value map's name is its PNG's path in the folder
    for name in masks_to_copy:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, folder / name)


def write_part(folder: Path, part: str, fmt: str, source: Path, data: object, names: set[str],
               images_folder: Path | None) -> Path:
    """Write one part into ``folder`` (a part folder inside the temporary output); returns its annotation path."""
    folder.mkdir()
    if fmt == "masks":
        _mask_part(source, folder, names)
        return folder
    if fmt == "via-csv":
        path = folder / f"{part}.csv"
        path.write_text(_csv_part(source, names), encoding="utf-8")
        return path
    path = folder / f"{part}.json"
    write_json_atomic(path, JSON_PARTS[fmt](data, names, images_folder))
    return path


# ------------------------------------------------------------------ the command

def split_dataset(annotations: Path, out: Path, val: float = 0.2, test: float | None = None, seed: int = 0,
                  images_dir: Path | None = None, label_attr: str | None = None,
                  category: str = "object") -> SplitResult:
    """Split ``annotations`` into ``out``; see the module docstring. Raises SegcliError on bad input."""
    annotations, out = Path(annotations), Path(out)
    fractions = part_fractions(val, test)
    if not annotations.exists():
        raise SegcliError("file not found", annotations)
    check_out(out, annotations, images_dir)
    dataset, data, folder = load(annotations, images_dir, label_attr, category)
    groups = read_groups(dataset)
    part_of = assign_parts(groups, fractions, seed, annotations)
    by_part = {part: [g for g in sorted(groups, key=lambda g: g.key) if part_of[g.key] == part] for part in fractions}
    classes = class_table(dataset, by_part)
    record = split_record(annotations, dataset, seed, fractions, folder, by_part, classes)
    with atomic_path(out, overwrite=out.is_dir()) as tmp:
        tmp.mkdir()
        for part, members in by_part.items():
            names = {name for g in members for name in g.names}
            written = write_part(tmp / part, part, dataset.source_format, annotations, data, names, folder)
            record["parts"][part]["annotations"] = written.relative_to(tmp).as_posix()
            listed = "".join(f"{g.path}\n" for g in members if g.path is not None)
            (tmp / f"{part}.txt").write_text(listed, encoding="utf-8", errors="surrogateescape")
        write_json_atomic(tmp / SPLIT_FILE, record, indent=1)
    found = sum(1 for g in groups if g.path is not None)
    return SplitResult(out, dataset.source_format, record["parts"], classes, folder, found, len(groups), record)


def class_table(dataset: Dataset, by_part: dict[str, list[ImageGroup]]) -> list[dict]:
    """Per category (in id order): images and objects in each part."""
    images = {part: Counter(c for g in members for c in g.classes) for part, members in by_part.items()}
    objects = {part: Counter() for part in by_part}
    for part, members in by_part.items():
        for group in members:
            objects[part].update(group.objects)
    return [{"name": c.name, "id": c.id, "images": {p: images[p][c.name] for p in by_part},
             "objects": {p: objects[p][c.name] for p in by_part}} for c in dataset.categories]


def split_record(annotations: Path, dataset: Dataset, seed: int, fractions: dict[str, float], folder: Path | None,
                 by_part: dict[str, list[ImageGroup]], classes: list[dict]) -> dict:
    """What split.json holds: enough to redo the split and to find the images again."""
    def relative(path: Path | None) -> str | None:
        if path is None or folder is None or not path.resolve().is_relative_to(folder):
            return None
        return path.resolve().relative_to(folder).as_posix()

    parts = {part: {"images": len(members), "objects": sum(sum(g.objects.values()) for g in members),
                    "empty_images": sum(1 for g in members if not g.objects),
                    "image_names": sorted(name for g in members for name in g.names),
                    "image_files": sorted(r for g in members if (r := relative(g.path)) is not None)}
             for part, members in by_part.items()}
    used = [row for row in classes if sum(row["images"].values())]
    return {"kind": SPLIT_KIND, "version": 1, "input": str(annotations), "input_format": dataset.source_format,
            "seed": seed, "fractions": fractions, "method": METHOD,
            "images_folder": str(folder) if folder is not None else None, "parts": parts, "classes": classes,
            "classes_with_one_image": [r["name"] for r in used if sum(r["images"].values()) == 1],  # train only
            "classes_missing_from_val": [r["name"] for r in used
                                         if sum(r["images"].values()) >= 2 and r["images"]["val"] == 0]}

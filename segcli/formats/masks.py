"""Label-map folders: one PNG per image holding a class index per pixel, plus ``classes.txt``.

Written maps hold 0 for background, ``k`` for the k-th category (in category-id order, so
``classes.txt`` line k names it) and 255 for ignored pixels (crowd regions). Where objects overlap,
the smaller object wins: objects are painted largest first, so a small object on a large one
stays visible. Maps are 8-bit, or 16-bit PNG when there are more than 254 classes (at most
65,535). Reading turns each connected component (8-connectivity) of each class into one instance.
Palette ("P") PNGs, as PASCAL VOC and labelme write them, are read by index.

``classes.txt`` holds one name a line, read back exactly (blank lines are skipped): names that
a line cannot hold (blank, or with a line break or another control character) and duplicate
names are refused, on writing and on reading, so a class never takes another's index.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segcli.errors import SegcliError
from segcli.fileio import read_text
from segcli.formats import geometry
from segcli.formats.images import IMAGE_SUFFIXES, ImageFolder, files_inside, read_image_size
from segcli.formats.rasterize import IGNORE_INDEX, rasterize_image, render_label_map
from segcli.ledger import Ledger
from segcli.structures import Annotation, Category, Dataset, ImageRecord

CLASS_FILES = ("classes.txt", "class_names.txt", "labels.txt")
BACKGROUND_NAMES = {"_background_", "background", "__background__", "bg"}
BACKGROUND = "_background_"
MAX_CLASSES = 65535
"""Most categories a label-mask folder holds: label PNGs are at most 16-bit."""


def find_classes_file(folder: Path) -> Path | None:
    """``classes.txt`` (or labelme's ``class_names.txt``) in the folder or its parent."""
    for directory in (folder, folder.parent):
        for name in CLASS_FILES:
            if (directory / name).is_file():
                return directory / name
    return None


def read_classes(path: Path) -> list[str]:
    """Class names by index; index 0 is background whatever its name. Lines are names exactly
    as written (spaces kept, so that what ``classes_text`` writes reads back the same); blank
    lines are skipped; a name on two lines is refused (the second would never be used)."""
    numbered = [(number, line) for number, line in enumerate(read_text(path).splitlines(), start=1)
                if line.strip()]
    if numbered and numbered[0][1].strip().lower() in BACKGROUND_NAMES:
        numbered = numbered[1:]  # else a file listing only object classes
    first_line: dict[str, int] = {}
    for number, name in numbered:
        if name in first_line:
            raise SegcliError(f"class name {name!r} is on lines {first_line[name]} and {number}: "
                              "each class needs its own name", path)
        first_line[name] = number
    return [BACKGROUND] + [name for _, name in numbered]


def classes_text(names: list[str]) -> str:
    """``classes.txt`` for object classes ``names`` (line 0 is the background); refuses names
    ``read_classes`` would not read back as written (see ``check_class_names``)."""
    check_class_names(names)
    return "\n".join([BACKGROUND, *names]) + "\n"


def check_class_names(names: list[str], source: str | Path | None = None) -> None:
    """Raise SegcliError for a name a classes.txt line cannot hold, or a name given twice."""
    seen: set[str] = set()
    for name in names:
        problem = _class_name_problem(name)
        if problem is None and name in seen:
            problem = "is given twice"
        if problem is not None:
            raise SegcliError(f"category name {name!r} {problem}: classes.txt cannot hold it "
                              "(rename the category)", source)
        seen.add(name)


def _class_name_problem(name: str) -> str | None:
    if not name.strip():
        return "is blank"
    # Cc: line breaks, tabs, NUL...; Zl/Zp: U+2028/U+2029, which str.splitlines() also splits at
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    return None if bad is None else f"holds the control character U+{ord(bad):04X}"


def check_mask_categories(dataset: Dataset) -> None:
    """Refuse, before any work, categories a label-mask folder cannot hold: more than 16-bit
    label values can number, or names classes.txt cannot hold."""
    if len(dataset.categories) > MAX_CLASSES:
        raise SegcliError(f"{len(dataset.categories)} categories: label-mask PNGs hold at most {MAX_CLASSES} "
                          "(16-bit values); write COCO or VIA instead", dataset.source_path)
    check_class_names([c.name for c in dataset.categories], dataset.source_path)


def read_label_map(path: Path) -> np.ndarray:
    """H x W integer label map from a single-channel or palette PNG."""
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"label maps must be single-channel or palette PNGs, got mode {image.mode}")
        return np.asarray(image).astype(np.int64)


def read_mask_folder(folder: Path, ledger: Ledger, images_dir: Path | None,
                     classes_file: Path | None = None) -> Dataset:
    """Read a folder of label PNGs into instances (one per connected component per class)."""
    classes_file = classes_file or find_classes_file(folder)
    if classes_file is None:
        ledger.error(f"no classes file ({', '.join(CLASS_FILES)}) in the folder or its parent")
        return Dataset([], [], folder, "masks")
    names = read_classes(classes_file)
    categories = [Category(i, name) for i, name in enumerate(names[1:], start=1)]
    images_folder = ImageFolder(images_dir) if images_dir is not None else None
    images = []
    for path in sorted(files_inside(folder, (p for p in folder.rglob("*.png") if not p.name.startswith(".")))):
        relative = path.relative_to(folder).as_posix()
        try:
            label_map = read_label_map(path)
        except (OSError, ValueError) as exc:
            ledger.error(f"unreadable label map: {exc}", relative)
            continue
        record = ImageRecord(file_name=relative, height=label_map.shape[0], width=label_map.shape[1])
        if images_folder is not None:
            _attach_image(record, images_folder, path, ledger)
        _add_components(record, label_map, names, ledger)
        images.append(record)
    return Dataset(images, categories, folder, "masks")


def _attach_image(record: ImageRecord, folder: ImageFolder, mask_path: Path, ledger: Ledger) -> None:
    matches = [p for p in folder.root.rglob(mask_path.stem + ".*") if p.suffix.lower() in IMAGE_SUFFIXES
               and folder.inside(p)]
    if len(matches) != 1:
        ledger.add("missing", f"image file not found: {len(matches)} images named {mask_path.stem}.* in {folder.root}",
                   record.file_name)
        return
    width, height = read_image_size(matches[0])
    if (width, height) != (record.width, record.height):
        ledger.error(f"label map is {record.width}x{record.height} but image {matches[0].name} "
                     f"is {width}x{height}", record.file_name)
        return
    record.file_name, record.path = matches[0].relative_to(folder.root).as_posix(), matches[0]


def _add_components(record: ImageRecord, label_map: np.ndarray, names: list[str], ledger: Ledger) -> None:
    values = np.unique(label_map)
    unknown = [int(v) for v in values if v != 0 and v != IGNORE_INDEX and v >= len(names)]
    if unknown:
        ledger.error(f"label values {unknown} have no class in the classes file ({len(names)} lines)",
                     record.file_name)
        return
    if IGNORE_INDEX in values:
        ledger.add("dropped", f"void pixels (label {IGNORE_INDEX}) are not objects: "
                   f"{int((label_map == IGNORE_INDEX).sum())} px left out", record.file_name)
    for value in values:
        if value == 0 or value == IGNORE_INDEX:
            continue
        count, components = cv2.connectedComponents((label_map == value).astype(np.uint8), connectivity=8)
        for component in range(1, count):
            rle = geometry.mask_to_rle(components == component)
            record.annotations.append(Annotation(category=names[value], rle=rle,
                                                 source=f"class {int(value)} component {component}"))


def write_mask_folder(dataset: Dataset, folder: Path, ledger: Ledger) -> None:
    """Write one label PNG per image of known size into ``folder`` (created) plus classes.txt."""
    check_mask_categories(dataset)
    folder.mkdir(parents=True)
    index = {c.name: i for i, c in enumerate(dataset.categories, start=1)}
    dtype = np.uint8 if len(index) < IGNORE_INDEX else np.uint16
    (folder / "classes.txt").write_text(classes_text(list(index)), encoding="utf-8")
    written: set[str] = set()
    for image in dataset.images:
        if image.width is None:
            ledger.add("skipped", "image size unknown (file not found): no label map written", image.file_name)
            continue
        name = _safe_relative(image.file_name).with_suffix(".png").as_posix()
        if name in written:
            ledger.add("skipped", f"name clash: another image already maps to {name}", image.file_name)
            continue
        written.add(name)
        label_map = render_label_map(image, rasterize_image(image, ledger), index, dtype)
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), label_map):
            raise OSError(f"could not write {target}")


def foreign_content(folder: Path) -> str | None:
    """What in ``folder`` a label-mask folder written by ``write_mask_folder`` would not hold
    (anything but classes.txt at the top and 8/16-bit single-channel PNGs), or None: such a
    folder may hold the user's own files, so it must not be replaced. Stops at the first find."""
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or not (path.is_dir() or path == folder / "classes.txt" or _is_label_png(path)):
                return f"{path.relative_to(folder).as_posix()!r}, which is not a label map"
    if any(folder.iterdir()) and not _is_regular(folder / "classes.txt"):
        return "label maps but no classes.txt"
    return None


def _is_regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _is_label_png(path: Path) -> bool:
    if path.suffix != ".png" or not _is_regular(path):  # is_file: never open a FIFO
        return False
    try:
        with Image.open(path) as image:  # the header only
            return image.format == "PNG" and image.mode in ("L", "I;16")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _safe_relative(file_name: str) -> Path:
    """A relative path with no '..', drive or root, for writing beside other outputs."""
    parts = [p for p in Path(file_name.replace("\\", "/")).parts if p not in ("..", ".", "/") and ":" not in p]
    return Path(*parts) if parts else Path("image")

"""Label-map folders: one PNG per image holding a class index per pixel, plus ``classes.txt``.

Written maps hold 0 for background, ``k`` for the k-th category (in category-id order, so
``classes.txt`` line k names it) and 255 for ignored pixels (crowd regions). Where objects overlap,
the smaller object wins: objects are painted largest first, so a small object on a large one
stays visible. Maps are palette ("P") PNGs with PASCAL VOC's colours (index = class, 255 void),
so a viewer shows the classes and PIL, VOC and MMSeg tools read the indices; 16-bit PNGs when
there are more than 254 classes (at most 65,535). Reading turns each connected component
(8-connectivity) of each class into one instance, so the writer lists in the ledger every object
that cannot come back as it was (``mask_losses``). Palette PNGs, as PASCAL VOC and labelme write
them, are read by index. Instance-id folders (``instance_masks``) keep every object.

``classes.txt`` holds one name a line, read back exactly (blank lines are skipped): names that
a line cannot hold (blank, or with a line break or another control character) and duplicate
names are refused, on writing and on reading, so a class never takes another's index.
"""

from __future__ import annotations

import io
import os
import unicodedata
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segcli.errors import SegcliError
from segcli.fileio import read_text
from segcli.formats import geometry, mask_losses
from segcli.formats.images import ImageFolder, files_inside, open_image, pixel_limit_problem, read_image_size
from segcli.formats.rasterize import IGNORE_INDEX, rasterize_image
from segcli.ledger import Ledger
from segcli.structures import Annotation, Category, Dataset, ImageRecord

CLASS_FILES = ("classes.txt", "class_names.txt", "labels.txt")
BACKGROUND_NAMES = {"_background_", "background", "__background__", "bg"}
BACKGROUND = "_background_"
INSTANCES_FILE = "instances.json"
"""Beside instance-id PNGs: the class of each id (see ``instance_masks``)."""
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
    """H x W integer label map from a single-channel or palette PNG.

    Raises:
        OSError / ValueError: unreadable, not a regular file (a FIFO is never opened), over the
        pixel limit (checked from the header, before decoding), or not a label map.
    """
    with open_image(path) as image:
        if (problem := pixel_limit_problem(*image.size)) is not None:
            raise ValueError(problem)
        if image.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"label maps must be single-channel or palette PNGs, got mode {image.mode}")
        return np.asarray(image).astype(np.int64)


def read_mask_folder(folder: Path, ledger: Ledger, images_dir: Path | None,
                     classes_file: Path | None = None, names: list[str] | None = None) -> Dataset:
    """Read a folder of label PNGs into instances (one per connected component per class).
    ``names``: class names by value (0 background) to use when the folder has no classes file."""
    classes_file = classes_file or find_classes_file(folder)
    if classes_file is None and names is None:
        ledger.error(f"no classes file ({', '.join(CLASS_FILES)}) in the folder or its parent")
        return Dataset([], [], folder, "masks")
    names = read_classes(classes_file) if classes_file is not None else names
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
    matches = folder.with_stem(mask_path.stem)  # one index of the folder, not a search per mask
    if len(matches) != 1:
        ledger.add("missing", f"image file not found: {len(matches)} images named {mask_path.stem}.* in {folder.root}",
                   record.file_name)
        return
    try:
        width, height = read_image_size(matches[0])
    except (OSError, ValueError) as exc:
        ledger.add("missing", f"unreadable image: {matches[0].name}: {exc}", record.file_name)
        return
    if (width, height) != (record.width, record.height):
        ledger.error(f"label map is {record.width}x{record.height} but image {matches[0].name} "
                     f"is {width}x{height}", record.file_name)
        return
    record.file_name, record.path = matches[0].relative_to(folder.root).as_posix(), matches[0]


def _add_components(record: ImageRecord, label_map: np.ndarray, names: list[str], ledger: Ledger) -> None:
    values = np.unique(label_map)
    unknown = [int(v) for v in values if v != 0 and v != IGNORE_INDEX and v >= len(names)]
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        ledger.error(f"label values [{shown}] have no class in the classes file ({len(names)} lines)",
                     record.file_name)
        return
    if IGNORE_INDEX in values:
        ledger.add("dropped", f"void pixels (label {IGNORE_INDEX}) are not objects: "
                   f"{int((label_map == IGNORE_INDEX).sum())} px left out", record.file_name)
    components, component_values = label_components(label_map)
    rles = geometry.components_to_rles(components, len(component_values))
    number_in_class = _number_within_class(component_values)
    for rle, value, number in zip(rles, component_values.tolist(), number_in_class.tolist()):
        record.annotations.append(Annotation(category=names[value], rle=rle,
                                             source=f"class {value} component {number}"))


NEIGHBOUR_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))
"""Right, down and both diagonals down: with their mirrors, the 8 neighbours of a pixel."""


def label_components(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of equal object labels (not 0 nor the void label), all classes in
    one pass: (H x W component number, -1 outside objects; the label of each component).

    Components are numbered by class, then in raster order of their first pixel. Linear in the pixels whatever the number of
    classes or specks: one cv2 pass per class over the whole map cost classes x pixels (60,000
    classes in a 300x300 map: 22 s), one mask per component components x pixels. A union-find
    over the pixel grid, vectorised: each round links every tree root to a smaller neighbouring
    root and flattens the trees; trees only grow, so a few rounds settle every component.
    """
    height, width = label_map.shape
    flat = label_map.ravel()
    is_object = (flat != 0) & (flat != IGNORE_INDEX)
    first, second = _equal_neighbours(label_map, is_object.reshape(height, width))
    parent = np.arange(flat.size, dtype=first.dtype)
    while first.size:
        root_a, root_b = parent[first], parent[second]
        apart = root_a != root_b
        first, second, root_a, root_b = first[apart], second[apart], root_a[apart], root_b[apart]
        if not first.size:
            break
        # a larger root points to a smaller one: parents only decrease, so no cycle can form
        parent[np.maximum(root_a, root_b)] = np.minimum(root_a, root_b)
        while True:  # flatten: every pixel points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    roots = parent[is_object]  # each component's root is its first pixel in raster order
    values = flat[is_object]
    order = np.lexsort((roots, values))  # by class, then by first pixel
    unique_first = np.ones(order.size, dtype=bool)
    sorted_roots = roots[order]
    unique_first[1:] = sorted_roots[1:] != sorted_roots[:-1]
    number = np.cumsum(unique_first) - 1  # component number of each object pixel, sorted
    components = np.full(flat.size, -1, dtype=np.int64)
    components[np.flatnonzero(is_object)[order]] = number
    return components.reshape(height, width), values[order][unique_first]


def _equal_neighbours(label_map: np.ndarray, is_object: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (a, b) of every pair of 8-neighbouring object pixels with the same label."""
    height, width = label_map.shape
    # int32 halves the memory of the pair lists (4 per pixel at most) for any map under 2**31 px
    index = np.arange(label_map.size, dtype=np.int32 if label_map.size < 2**31 else np.int64).reshape(height, width)
    firsts, seconds = [], []
    for dy, dx in NEIGHBOUR_OFFSETS:
        x0, x1 = max(0, -dx), width - max(0, dx)
        a = (slice(0, height - dy), slice(x0, x1))
        b = (slice(dy, height), slice(x0 + dx, x1 + dx))
        same = is_object[a] & (label_map[a] == label_map[b])
        firsts.append(index[a][same])
        seconds.append(index[b][same])
    return np.concatenate(firsts), np.concatenate(seconds)


def _number_within_class(values: np.ndarray) -> np.ndarray:
    """1, 2, ... for the components of each class (``values`` is sorted by class)."""
    if not values.size:
        return values
    starts = np.ones(values.size, dtype=bool)
    starts[1:] = values[1:] != values[:-1]
    positions = np.arange(values.size)
    return positions - np.maximum.accumulate(np.where(starts, positions, 0)) + 1


def write_mask_folder(dataset: Dataset, folder: Path, ledger: Ledger) -> mask_losses.LossCounts:
    """Write one label PNG per image of known size into ``folder`` (created) plus classes.txt;
    every object a read-back cannot give back (merged, hidden, split) goes to the ledger.
    Returns the totals (objects painted, objects a read-back finds)."""
    check_mask_categories(dataset)
    index = {c.name: i for i, c in enumerate(dataset.categories, start=1)}
    dtype = np.uint8 if len(index) < IGNORE_INDEX else np.uint16
    totals = mask_losses.LossCounts()
    folder.mkdir(parents=True)
    (folder / "classes.txt").write_text(classes_text(list(index)), encoding="utf-8")
    for image, target in mask_targets(dataset, folder, ledger):
        painted = mask_losses.paint(image, rasterize_image(image, ledger))
        values = np.array([IGNORE_INDEX if o.annotation.iscrowd else index[o.annotation.category]
                           for o in painted.objects], dtype=np.int64)
        counts = mask_losses.report_losses(painted, image, ledger, values)
        for name, value in counts.to_json().items():
            setattr(totals, name, getattr(totals, name) + value)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_label_png(mask_losses.values_map(painted, values, dtype)))
    return totals


def mask_targets(dataset: Dataset, folder: Path, ledger: Ledger):
    """(image, label-map path) for each image of known size; names are checked before the
    first is yielded, and an image whose name another already took is skipped (ledger)."""
    names = {id(image): _mask_name(image, dataset.source_path) for image in dataset.images if image.width is not None}
    written: set[str] = set()
    for image in dataset.images:
        if image.width is None:
            ledger.add("skipped", "image size unknown (file not found): no label map written", image.file_name)
            continue
        name = names[id(image)]
        if name in written:
            ledger.add("skipped", f"name clash: another image already maps to {name}", image.file_name)
            continue
        written.add(name)
        yield image, folder / name


def voc_palette() -> list[int]:
    """PASCAL VOC's 256-colour palette (flat RGB): 0 black, 1 dark red, 2 green, ..., 255 the
    cream VOC uses for void, so index 255 keeps its meaning."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette += [red, green, blue]
    return palette


VOC_PALETTE = voc_palette()


def encode_label_png(label_map: np.ndarray) -> bytes:
    """PNG bytes of a label map: a palette PNG (index = value) for 8-bit maps, so a viewer
    shows the classes and every reader that honours palettes (PIL, VOC, MMSeg, segcli) gets the
    indices; 16-bit greyscale otherwise. Bytes, not a path: OpenCV's path functions crash
    (SIGSEGV) on a path that is not UTF-8, and callers write atomically."""
    if label_map.dtype == np.uint8:
        image = Image.fromarray(label_map)
        image.putpalette(VOC_PALETTE)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()
    encoded, data = cv2.imencode(".png", label_map.astype(np.uint16))
    if not encoded:
        raise OSError("could not encode a label map")
    return data.tobytes()


NAME_MAX = 255
"""Longest file or folder name in bytes (Linux, macOS and Windows file systems)."""


def _mask_name(image: ImageRecord, source: Path) -> str:
    """The label map's relative path for an image; refuses, before anything is written, a
    name no file can have (a NUL, a part longer than NAME_MAX bytes)."""
    name = _safe_relative(image.file_name).with_suffix(".png").as_posix()
    problem = "holds a NUL character" if "\0" in name else next(
        (f"has a part of {len(os.fsencode(part))} bytes, too long for a file name (at most {NAME_MAX})"
         for part in name.split("/") if len(os.fsencode(part)) > NAME_MAX), None)
    if problem is not None:
        raise SegcliError(f"no label map can be named after it: the name {problem}", source,
                          f"image {image.file_name[:60]!r}")
    return name


def foreign_content(folder: Path) -> str | None:
    """What in ``folder`` a label-mask folder written by segcli would not hold (anything but
    classes.txt or instances.json at the top and 8/16-bit single-channel or palette PNGs), or None: such a
    folder may hold the user's own files, so it must not be replaced. Stops at the first find."""
    own_files = (folder / "classes.txt", folder / INSTANCES_FILE)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or not (path.is_dir() or path in own_files or _is_label_png(path)):
                return f"{path.relative_to(folder).as_posix()!r}, which is not a label map"
    if any(folder.iterdir()) and not any(_is_regular(path) for path in own_files):
        return f"label maps but no classes.txt or {INSTANCES_FILE}"
    return None


def _is_regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _is_label_png(path: Path) -> bool:
    if path.suffix != ".png" or not _is_regular(path):  # is_file: never open a FIFO
        return False
    try:
        with Image.open(path) as image:  # the header only
            return image.format == "PNG" and image.mode in ("L", "P", "I;16")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _safe_relative(file_name: str) -> Path:
    """A relative path with no '..', drive or root, for writing beside other outputs."""
    parts = [p for p in Path(file_name.replace("\\", "/")).parts if p not in ("..", ".", "/") and ":" not in p]
    return Path(*parts) if parts else Path("image")

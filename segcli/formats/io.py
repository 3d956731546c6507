"""Detect an annotation file's format from its content, read it, write a Dataset in a format.

Detection never trusts the file extension alone: a JSON file is a VIA 2 project if it has
``_via_img_metadata``, VIA 3 if it has ``project``/``file``/``metadata``, COCO if it has
``images`` and ``annotations``, a VIA 1/2 export if it is an object of entries with ``filename``
and ``regions``; a CSV with a ``#filename`` header is a VIA CSV export; a folder is label masks.
"""

from __future__ import annotations

import os
from pathlib import Path

from segcli.errors import SegcliError
from segcli.fileio import read_json
from segcli.formats import coco, instance_masks, masks, via, via3
from segcli.formats.images import IMAGE_SUFFIXES, is_regular_file, resolve_images
from segcli.formats.split_record import recorded_part_images
from segcli.ledger import Ledger
from segcli.structures import Dataset

OUTPUT_FORMATS = ("coco", "via", "masks")
RECORDED_IMAGES_KEY = "segcli_images_dir"
"""Key of a COCO file's ``info`` where convert records its images folder (COCO has no field for
it): ``{"relative": path from the file's folder, "absolute": path}``. Other COCO tools ignore
unknown ``info`` keys."""
NAMES_CHECKED = 200
"""Images whose names are looked for directly in a candidate folder before it is chosen."""


def detect_format(path: Path) -> tuple[str, object]:
    """(format name, parsed JSON or None) for an annotation file or mask folder."""
    path = Path(path)
    if path.is_dir():
        return "masks", None
    if not path.exists():
        raise SegcliError("file not found", path)
    if path.suffix.lower() == ".csv":
        return "via-csv", None
    data = read_json(path)
    if isinstance(data, dict) and "_via_img_metadata" in data:
        return "via2-project", data
    if via3.is_via3_project(data):
        return "via3-project", data
    if coco.is_coco(data):
        return "coco", data
    if via.is_via_export(data):
        return "via-export", data
    raise SegcliError(_unknown_format_reason(data), path)


def _unknown_format_reason(data: object) -> str:
    if isinstance(data, list):
        if data and isinstance(data[0], dict) and "score" in data[0]:
            return "this is a COCO results (predictions) file, not a dataset: use `segcli eval --pred`"
        return "unknown format: a JSON list is neither VIA nor COCO"
    if isinstance(data, dict) and "image" in data and "annotations" in data:
        return "unknown format: SA-1B style per-image files are not supported"
    if isinstance(data, dict) and not data:
        return "unknown format: empty JSON object (no images)"
    if isinstance(data, dict) and "images" in data:
        return "COCO file without 'annotations'"
    return ("unknown format: expected a VIA 1/2 export, VIA 2 or 3 project, or COCO instances "
            "(no '_via_img_metadata', 'images'+'annotations', or entries with 'filename'+'regions')")


def read_annotations(path: Path, ledger: Ledger, label_attr: str | None = None,
                     default_category: str = "object", images_dir: Path | None = None,
                     detected: tuple[str, object] | None = None) -> Dataset:
    """Read any supported annotation file or mask folder; problems go to ``ledger``.
    ``detected``: the result of ``detect_format`` when the caller has it (saves a parse)."""
    path = Path(path)
    fmt, data = detected or detect_format(path)
    if fmt == "masks":
        if instance_masks.is_instance_folder(path):
            return instance_masks.read_instance_folder(path, ledger, images_dir)
        return masks.read_mask_folder(path, ledger, images_dir)
    if fmt == "via-csv":
        return via.read_via_csv(path, ledger, label_attr, default_category)
    if fmt == "via3-project":
        return via3.read_via3(data, path, ledger, label_attr, default_category)
    if fmt == "coco":
        if label_attr is not None:
            raise SegcliError("--label-attr applies to VIA files; COCO has category_id", path)
        return coco.read_coco(data, path, ledger)
    return via.read_via_json(data, path, ledger, label_attr, default_category)


def default_images_dir(dataset: Dataset) -> Path:
    """Where images are looked for without --images (see ``default_image_folder``)."""
    return default_image_folder(dataset)[0]


def default_image_folder(dataset: Dataset) -> tuple[Path, bool, str | None]:
    """(folder, search sub-folders, note) for images without --images.

    The annotation file's folder (the mask folder's parent for masks), unless a VIA 2 project's
    ``default_filepath`` names a folder that is safe to look in: a relative one that stays
    inside the project's folder, or an absolute folder that exists and directly holds one of
    the named images (which is then never searched below: "/" must not walk the file
    system); or, for a COCO file whose folder holds none of its images directly, the folder
    convert recorded (``RECORDED_IMAGES_KEY``) when it directly holds one of them (then never
    searched below either). The note says which was used and why, for the ledger; None when
    there was nothing to choose from.
    """
    base = dataset.source_path.parent
    settings = dataset.via_settings if isinstance(dataset.via_settings, dict) else {}
    core = settings.get("core")
    default_path = core.get("default_filepath") if isinstance(core, dict) else None
    if not isinstance(default_path, str) or not default_path.strip():
        recorded = recorded_part_images(dataset.source_path)  # a part `segcli split` wrote: originals
        if recorded is not None:
            return recorded, True, f"images looked for in {recorded}, where the split.json of this part records them"
        return _recorded_image_folder(dataset, base)
    why_not = _default_path_problem(default_path, base, dataset)
    if why_not is None:
        candidate = base / default_path
        return (candidate, not Path(default_path).is_absolute(),
                f"images looked for in the project's default_filepath {default_path!r}")
    return base, True, (f"default_filepath {default_path!r} not used ({why_not}): images looked for in "
                        f"the project's folder {base}")


def _default_path_problem(default_path: str, base: Path, dataset: Dataset) -> str | None:
    if "://" in default_path:
        return "a URL"
    candidate = base / default_path
    try:
        if not candidate.is_dir():
            return "not a folder"
        if not Path(default_path).is_absolute():
            inside = candidate.resolve().is_relative_to(base.resolve())
            return None if inside else "it leads out of the project's folder"
    except (OSError, ValueError) as exc:  # a NUL, a name too long
        return f"not a usable path: {exc}"
    # an absolute folder: used only when it holds a named image itself (checked directly)
    if _holds_named_image(candidate, dataset, limit=None):
        return None
    return "it holds none of the images the project names"


def _holds_named_image(folder: Path, dataset: Dataset, limit: int | None = NAMES_CHECKED) -> bool:
    """True when ``folder`` itself holds an image named in the dataset (of its first ``limit``)."""
    images = dataset.images if limit is None else dataset.images[:limit]
    try:
        return any(Path(image.file_name).suffix.lower() in IMAGE_SUFFIXES
                   and is_regular_file(folder / image.file_name.replace("\\", "/")) for image in images)
    except (OSError, ValueError):  # a NUL, a name too long
        return False


def _recorded_image_folder(dataset: Dataset, base: Path) -> tuple[Path, bool, str | None]:
    """The COCO file's folder, or the folder convert recorded when only that one holds the images
    (its relative path first: it survives moving both folders together; then the absolute)."""
    recorded = dataset.info.get(RECORDED_IMAGES_KEY) if isinstance(dataset.info, dict) else None
    if not isinstance(recorded, dict) or _holds_named_image(base, dataset):
        return base, True, None
    for key in ("relative", "absolute"):
        value = recorded.get(key)
        if not isinstance(value, str) or not value or "://" in value:
            continue
        candidate = base / value
        try:
            usable = candidate.is_dir() and _holds_named_image(candidate, dataset)
        except (OSError, ValueError):
            usable = False
        if usable:
            return candidate, False, (f"images looked for in {candidate}, the folder convert recorded "
                                      f"(info.{RECORDED_IMAGES_KEY}.{key}): none is beside the file")
    return base, True, (f"the folder convert recorded (info.{RECORDED_IMAGES_KEY}) holds none of the images: "
                        f"looked for them beside the file, in {base}")


def images_reference(folder: Path, output: Path) -> dict:
    """How an output file records its images folder: relative to the output's folder (still
    right when both folders move together) and absolute (still right when the file moves alone)."""
    absolute = Path(folder).resolve()
    try:
        relative = Path(os.path.relpath(absolute, Path(output).parent.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        relative = None
    return {"relative": relative, "absolute": str(absolute)}


def via_default_filepath(reference: dict) -> str:
    """VIA 2's ``default_filepath`` for an images folder (VIA prepends it to each file name, so
    it ends with a slash): relative when the folder lies inside the project's folder (readers use
    no other relative path), else absolute; "" for the project's own folder."""
    relative = reference["relative"]
    if relative == ".":
        return ""
    if relative is not None and relative != ".." and not relative.startswith("../"):
        return relative + "/"
    return reference["absolute"].rstrip("/") + "/"


def locate_images(dataset: Dataset, images_dir: Path | None, ledger: Ledger,
                  require_found: bool = True) -> Path:
    """Resolve image files and sizes for ``dataset`` and check masks against them; returns the
    folder used. ``require_found``: fail when not one image is found (sizes are needed).
    Without ``images_dir`` the folder is ``default_image_folder``'s (its note goes to the ledger)."""
    recursive = True
    if images_dir is not None:
        folder = Path(images_dir)
    else:
        folder, recursive, note = default_image_folder(dataset)
        if note is not None:
            ledger.add("defaulted", note)
    if not folder.is_dir():
        raise SegcliError("image folder not found", folder)
    resolve_images(dataset, folder, ledger, recursive=recursive)
    check_mask_sizes(dataset, ledger)
    if require_found and dataset.images and all(image.path is None for image in dataset.images):
        unreadable = next((e for e in ledger.entries if e.action == "missing" and e.reason.startswith("unreadable")), None)
        if unreadable is not None:  # found, but not an image: --images would not help
            raise SegcliError(f"none of the {len(dataset.images)} images it names can be read (sizes are needed); "
                              f"first: {unreadable.reason}", dataset.source_path)
        raise SegcliError(f"none of the {len(dataset.images)} images it names was found in {folder} "
                          "(sizes are needed): pass --images DIR", dataset.source_path)
    return folder


def check_mask_sizes(dataset: Dataset, ledger: Ledger) -> None:
    """An RLE mask must have its image's size (known once the file is read)."""
    for image in dataset.images:
        if image.height is None:
            continue
        for annotation in image.annotations:
            if annotation.rle is not None and list(annotation.rle["size"]) != [image.height, image.width]:
                ledger.error(f"RLE size {list(annotation.rle['size'])} does not match the image size "
                             f"[{image.height}, {image.width}]", image.file_name, annotation.source)


def build_output(dataset: Dataset, to: str, ledger: Ledger, instances: bool = False,
                 images: dict | None = None):
    """The output for ``to``: a JSON-able dict (coco, via) or a writer function (masks; it
    returns the ``mask_losses.LossCounts`` of what it wrote). ``instances``: instance-id masks.
    ``images``: the images folder as ``images_reference`` gives it, recorded in a COCO file's
    ``info`` or a VIA project's ``default_filepath``."""
    if to == "coco":
        return coco.write_coco(dataset, ledger, {RECORDED_IMAGES_KEY: images} if images else None)
    if to == "via":
        return via.write_via_project(dataset, ledger, via_default_filepath(images) if images else None)
    if to == "masks" and instances:
        return lambda folder: instance_masks.write_instance_folder(dataset, folder, ledger)
    if to == "masks":
        return lambda folder: masks.write_mask_folder(dataset, folder, ledger)
    raise SegcliError(f"unknown output format {to!r} (choose from {', '.join(OUTPUT_FORMATS)})")

"""Where a ``segcli split`` output's images are: ``DIR/split.json`` records the original images
folder (the parts name the images, which are never copied), so readers that look for a part's
images without ``--images`` (train, stats, convert, eval) find them. A plain record reader: the
split itself is ``segcli.engine.split``.
"""

from __future__ import annotations

import os
from pathlib import Path

from segcli.errors import SegcliError
from segcli.fileio import read_json
from segcli.formats.images import is_regular_file

SPLIT_FILE = "split.json"
SPLIT_KIND = "segcli split"


def recorded_images_folder(data: Path) -> Path | None:
    """The images folder ``segcli split`` recorded in ``DATA/split.json``, for ``segcli train DATA``
    (its parts name the original images, which stay where they were), or None.

    Trusted only as far as a VIA project's absolute ``default_filepath`` is: the folder must be an
    absolute path to a folder that holds one of the image files the split recorded (a split.json
    naming "/" or "/etc" is not followed)."""
    path = Path(data) / SPLIT_FILE
    if not is_regular_file(path):
        return None
    try:
        record = read_json(path)
    except SegcliError:
        return None
    if not isinstance(record, dict) or record.get("kind") != SPLIT_KIND or not isinstance(record.get("images_folder"), str):
        return None
    folder = Path(record["images_folder"])
    parts = record.get("parts") if isinstance(record.get("parts"), dict) else {}
    files = [f for p in parts.values() if isinstance(p, dict) and isinstance(p.get("image_files"), list)
             for f in p["image_files"][:20] if isinstance(f, str)]
    try:
        if not folder.is_absolute() or not folder.is_dir():
            return None
        root = Path(os.path.realpath(folder))
        if any(is_regular_file(folder / f) and Path(os.path.realpath(folder / f)).is_relative_to(root) and
               not Path(f).is_absolute() and ".." not in Path(f).parts for f in files):
            return folder
    except (OSError, ValueError):  # a NUL, a name too long
        return None
    return None


def recorded_part_images(annotation: Path) -> Path | None:
    """The images folder of ``annotation`` when it is a part a split wrote (``DIR/val/val.json``
    named in ``DIR/split.json``), for readers looking for images without --images; else None."""
    annotation = Path(annotation)
    split_dir = annotation.parent if annotation.is_dir() else annotation.parent.parent  # DIR/train/ or DIR/train/train.json
    record_path = split_dir / SPLIT_FILE
    if not is_regular_file(record_path):
        return None
    try:
        record = read_json(record_path)
    except SegcliError:
        return None
    parts = record.get("parts") if isinstance(record, dict) else None
    named = {p.get("annotations") for p in parts.values() if isinstance(p, dict)} if isinstance(parts, dict) else set()
    try:
        relative = annotation.resolve().relative_to(split_dir.resolve()).as_posix()
    except (OSError, ValueError):
        return None
    return recorded_images_folder(split_dir) if relative in named else None

"""What ``segcli predict folder`` writes, built on the dataset model and the format writers.

Predictions become a ``Dataset`` (one image record per image, one annotation per instance with
its score), so ``dataset.json`` (COCO), ``predictions.json`` (COCO results for ``loadRes``) and
``via_project.json`` (VIA 2, for a person to correct) come from the same writers ``segcli
convert`` uses. The VIA project lists the least confident images first and marks instances
below the review threshold with ``needs_review``. An instance's COCO ``bbox`` is the detector's
box (what COCO results mean, and what ``segcli eval`` scores with a model), not its mask's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from segcli.engine.core.results import coco_results, predictions_coco
from segcli.errors import SegcliError
from segcli.fileio import TEMPORARY_PREFIX, write_bytes_atomic, write_json_atomic
from segcli.formats import geometry
from segcli.formats.masks import encode_label_png
from segcli.formats.via import write_via_project
from segcli.ledger import Ledger
from segcli.structures import Category, Dataset, ImageRecord


def predictions_dataset(records: list[ImageRecord], categories: list[dict], source: Path) -> Dataset:
    # the source folder's name goes into dataset.json's description: printable, whatever its bytes
    return Dataset(images=records, categories=[Category(c["id"], c["name"]) for c in categories],
                   source_path=Path(printable_name(str(source))), source_format="predictions", label_attr="category")


def write_prediction_files(dataset: Dataset, out: Path, polygons: bool, formats: set[str],
                           outlines: dict[tuple[int, int], list[list[float]]] | None = None) -> dict[str, Path]:
    """dataset.json, predictions.json and via_project.json (as ``formats`` asks); returns paths.

    ``outlines``: polygon parts already traced (on the writer thread) per (image id, annotation
    index), used for VIA regions and ``polygons`` instead of tracing the masks again here.
    """
    outlines = outlines or {}
    ledger = Ledger("predictions")
    written = {}
    coco = predictions_coco(dataset, ledger)
    if polygons:
        position: Counter = Counter()
        for annotation in coco["annotations"]:
            k, position[annotation["image_id"]] = position[annotation["image_id"]], position[annotation["image_id"]] + 1
            if isinstance(annotation["segmentation"], dict):
                parts = outlines.get((annotation["image_id"], k))
                if parts is None:
                    parts = mask_outline(geometry.rle_from_json(annotation["segmentation"], 0, 0))
                annotation["segmentation"] = parts
    files = {}
    if "coco" in formats:
        files["predictions.json"] = coco_results(coco)
        files["dataset.json"] = coco
        written.update(predictions=out / "predictions.json", dataset=out / "dataset.json")
    if "via" in formats:
        least_confident_first = sorted(dataset.images, key=lambda image: min(
            (a.score for a in image.annotations if a.score is not None), default=0.0))
        least_confident_first = [_with_outlines(image, outlines) for image in least_confident_first]
        via_dataset = Dataset(least_confident_first, dataset.categories, dataset.source_path, dataset.source_format,
                              label_attr="category")
        files["via_project.json"] = write_via_project(via_dataset, ledger)
        written["via"] = out / "via_project.json"
    write_json_files_together(out, files)
    return written


def write_json_files_together(out: Path, files: dict[str, object]) -> None:
    """Write ``files`` (name -> JSON data) into folder ``out`` all or nothing: each is written
    whole into a temporary folder first, and only then are they moved in, so a failure (a file
    that cannot be encoded, a full disk, a folder in the way) leaves none of them new."""
    for name in files:
        if (out / name).is_dir():
            raise SegcliError("output is a folder, expected a file path", out / name)
    staging = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, suffix=".tmp", dir=out))
    try:
        for name, data in files.items():
            write_json_atomic(staging / name, data)
        for name in files:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def mask_outline(rle: dict) -> list[list[float]]:
    """Polygon parts (flat x, y lists) tracing a mask's outer outlines exactly (holes filled)."""
    return geometry.mask_to_polygons(geometry.rle_to_mask(rle), tolerance=0.5)[0]


def _with_outlines(image: ImageRecord, outlines: dict) -> ImageRecord:
    """``image`` with its RLE annotations given as their traced outlines where known."""
    annotations = [replace(a, rle=None, polygons=outlines[(image.id, k)]) if (image.id, k) in outlines else a
                   for k, a in enumerate(image.annotations)]
    return replace(image, annotations=annotations)


NAME_MAX = 255
"""Longest file name (one path component) in bytes on Linux and macOS file systems."""


def output_stems(file_names: list[str]) -> dict[str, str]:
    """The output name without extension of each image (overlays/STEM.jpg, masks/STEM.png), unique
    whatever the inputs: the image's relative path without its extension, or with it where two
    images would share a name (photo.jpg, photo.png -> photo.jpg, photo.png; compared ignoring
    case, for case-insensitive file systems), and ``~2``, ``~3``... for what still collides.
    Depends only on the set of names (every run, --resume included, gives the same)."""
    plain = {name: str(PurePosixPath(name).with_suffix("")) for name in file_names}
    sharing = Counter(stem.casefold() for stem in plain.values())
    wanted = {name: _fit_name_max(stem if sharing[stem.casefold()] == 1 else name) for name, stem in plain.items()}
    taken: set[str] = set()
    stems = {}
    for name in sorted(file_names, key=lambda n: (wanted[n].casefold(), n)):
        stem, number = wanted[name], 2
        while stem.casefold() in taken:
            stem, number = _fit_name_max(f"{wanted[name]}~{number}"), number + 1
        taken.add(stem.casefold())
        stems[name] = stem
    return stems


def _fit_name_max(stem: str, extension_bytes: int = 4) -> str:
    """``stem`` with its last component shortened (a hash of it appended) if, with a 4-byte
    extension such as .jpg, it would be longer than NAME_MAX bytes."""
    folder, _, last = stem.rpartition("/")
    encoded = os.fsencode(last)
    if len(encoded) + extension_bytes <= NAME_MAX:
        return stem
    digest = hashlib.sha1(encoded).hexdigest()[:12]
    keep = encoded[:NAME_MAX - extension_bytes - len(digest) - 1]
    short = f"{os.fsdecode(keep).rstrip()}~{digest}"
    while len(os.fsencode(short)) + extension_bytes > NAME_MAX:  # a multi-byte character cut in two
        keep = keep[:-1]
        short = f"{os.fsdecode(keep)}~{digest}"
    return f"{folder}/{short}" if folder else short


def printable_name(name: str) -> str:
    """``name`` as text any output can hold: bytes that are not UTF-8 (Linux file names may
    hold any) shown as ``\\xff``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def write_label_map(label_map: np.ndarray, path: Path) -> None:
    """A label PNG (a palette PNG for 8-bit maps, as convert writes them), written atomically
    (a kill never leaves half a file)."""
    write_bytes_atomic(path, encode_label_png(label_map))


def write_overlay(rgb: np.ndarray, path: Path) -> None:
    """An RGB picture (format from the suffix), written atomically."""
    _write_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), path)


def _write_image(pixels: np.ndarray, path: Path) -> None:
    ok, encoded = cv2.imencode(Path(path).suffix, pixels)
    if not ok:
        raise OSError(f"could not encode {path}")
    write_bytes_atomic(path, encoded.tobytes())

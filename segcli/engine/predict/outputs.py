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
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from segcli.errors import SegcliError
from segcli.fileio import TEMPORARY_PREFIX, write_bytes_atomic, write_json_atomic
from segcli.formats import geometry
from segcli.formats.coco import write_coco
from segcli.formats.masks import encode_label_png
from segcli.formats.via import write_via_project
from segcli.ledger import Ledger
from segcli.structures import Annotation, Category, Dataset, ImageRecord


def prediction_record(prediction, image_id: int, names: list[str], review_below: float) -> ImageRecord:
    """An ImageRecord holding one image's predictions as scored annotations."""
    record = ImageRecord(file_name=prediction.file_name, id=image_id, width=prediction.width,
                         height=prediction.height, path=prediction.path)
    if prediction.rles is not None:
        for k, (rle, box, label, score) in enumerate(zip(prediction.rles, prediction.boxes_xyxy, prediction.labels,
                                                         prediction.scores)):
            if geometry.rle_area_bbox(rle)[0] == 0:
                continue
            record.annotations.append(Annotation(
                category=names[int(label) - 1], rle=rle, bbox_xywh=detector_box(box), score=round(float(score), 4),
                source=f"detection {k}", attributes={"needs_review": "yes" if score < review_below else "no"}))
    elif prediction.label_map is not None:
        for value in np.unique(prediction.label_map):
            if value == 0:
                continue
            rle = geometry.mask_to_rle(prediction.label_map == value)
            record.annotations.append(Annotation(category=names[int(value) - 1], rle=rle, source=f"class {value}"))
    return record


def detector_box(box_xyxy) -> list[float]:
    """COCO ``[x, y, w, h]`` of a detector box ``[x1, y1, x2, y2]`` (float32 from the model)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def predictions_coco(dataset: Dataset, ledger: Ledger) -> dict:
    """The COCO dict of predictions (``dataset.json``): ``write_coco``'s, with each scored
    instance's bbox the detector's box rather than its mask's (the writer derives boxes from
    masks, as a converted annotation needs). Annotations come out in the records' order, one
    per record annotation (empty masks were left out of the records)."""
    coco = write_coco(dataset, ledger)
    boxes = {image.id: [a.bbox_xywh if a.score is not None else None for a in image.annotations]
             for image in dataset.images}
    position: Counter = Counter()
    for annotation in coco["annotations"]:
        image_id = annotation["image_id"]
        k, position[image_id] = position[image_id], position[image_id] + 1
        box = boxes[image_id][k] if k < len(boxes.get(image_id, ())) else None
        if box is not None:
            annotation["bbox"] = list(box)
    return coco


def coco_results(coco: dict) -> list[dict]:
    """COCO results (``predictions.json``, for ``loadRes``) from a predictions COCO dict;
    semantic results carry no score (COCO's stuff results format)."""
    return [{k: a[k] for k in ("image_id", "category_id", "segmentation", "bbox", "score") if k in a}
            for a in coco["annotations"]]


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


JOURNAL = "results.jsonl"
"""Per-image results, one JSON line each, appended and flushed as images finish: what --resume
reads back, and why an interrupted run loses nothing it had finished. A line torn by a kill is
ignored when read and cut off before the journal is appended to again."""


def open_journal(path: Path):
    """``path`` opened for appending lines, after cutting off a last line torn by a kill (else
    the next line would be glued to it, and that image lost from the journal)."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb+") as fh:
            end = keep = fh.seek(0, os.SEEK_END)
            while keep > 0:  # back to the last newline
                start = max(0, keep - 65536)
                fh.seek(start)
                newline = fh.read(keep - start).rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                keep = start
            if keep != end:
                fh.truncate(keep)
    return open(path, "a", encoding="utf-8")


def record_to_line(record: ImageRecord) -> dict:
    return {"file_name": record.file_name, "width": record.width, "height": record.height,
            "annotations": [{"category": a.category, "rle": geometry.rle_to_json(a.rle), "score": a.score,
                             "attributes": a.attributes, **({"bbox": a.bbox_xywh} if a.bbox_xywh else {})}
                            for a in record.annotations]}


def line_to_record(line: dict, image_id: int, root: Path) -> ImageRecord:
    record = ImageRecord(file_name=line["file_name"], id=image_id, width=line["width"], height=line["height"],
                         path=root / line["file_name"])
    for k, item in enumerate(line["annotations"]):
        rle = geometry.rle_from_json(item["rle"], line["height"], line["width"])
        record.annotations.append(Annotation(category=item["category"], rle=rle, score=item["score"],
                                             bbox_xywh=item.get("bbox"),  # journals before the box: the mask's
                                             attributes=item["attributes"], source=f"detection {k}"))
    return record


def read_journal(out: Path) -> dict[str, dict]:
    """Finished images of an earlier run in output folder ``out`` by file name, from its journal
    and any per-process journals a distributed run left (a line torn by a kill is ignored)."""
    return _journal_lines(sorted(Path(out).glob("results*.jsonl")))


def _journal_lines(paths: list[Path]) -> dict[str, dict]:
    lines = {}
    for path in paths:
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
                lines[line["file_name"]] = line
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return lines


def merge_journals(out: Path) -> dict[str, dict]:
    """Fold the per-process journals of a distributed run into ``out``'s journal (then remove
    them); returns their lines by file name."""
    parts = sorted(Path(out).glob("results.rank*.jsonl"))
    lines = _journal_lines(parts)
    if parts:
        with open_journal(Path(out) / JOURNAL) as journal:
            journal.writelines(json.dumps(line) + "\n" for line in lines.values())
            journal.flush()
            os.fsync(journal.fileno())
        for part in parts:
            part.unlink()
    return lines

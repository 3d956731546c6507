"""What ``segcli predict folder`` writes, built on the dataset model and the format writers.

Predictions become a ``Dataset`` (one image record per image, one annotation per instance with
its score), so ``dataset.json`` (COCO), ``predictions.json`` (COCO results for ``loadRes``) and
``via_project.json`` (VIA 2, for a person to correct) come from the same writers ``segcli
convert`` uses. The VIA project lists the least confident images first and marks instances
below the review threshold with ``needs_review``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from segcli.fileio import write_json_atomic
from segcli.formats import geometry
from segcli.formats.coco import write_coco
from segcli.formats.via import write_via_project
from segcli.ledger import Ledger
from segcli.structures import Annotation, Category, Dataset, ImageRecord


def prediction_record(prediction, image_id: int, names: list[str], review_below: float) -> ImageRecord:
    """An ImageRecord holding one image's predictions as scored annotations."""
    record = ImageRecord(file_name=prediction.file_name, id=image_id, width=prediction.width,
                         height=prediction.height, path=prediction.path)
    if prediction.rles is not None:
        for k, (rle, label, score) in enumerate(zip(prediction.rles, prediction.labels, prediction.scores)):
            if geometry.rle_area_bbox(rle)[0] == 0:
                continue
            record.annotations.append(Annotation(
                category=names[int(label) - 1], rle=rle, score=round(float(score), 4), source=f"detection {k}",
                attributes={"needs_review": "yes" if score < review_below else "no"}))
    elif prediction.label_map is not None:
        for value in np.unique(prediction.label_map):
            if value == 0:
                continue
            rle = geometry.mask_to_rle(prediction.label_map == value)
            record.annotations.append(Annotation(category=names[int(value) - 1], rle=rle, source=f"class {value}"))
    return record


def predictions_dataset(records: list[ImageRecord], categories: list[dict], source: Path) -> Dataset:
    return Dataset(images=records, categories=[Category(c["id"], c["name"]) for c in categories],
                   source_path=source, source_format="predictions", label_attr="category")


def write_prediction_files(dataset: Dataset, out: Path, polygons: bool, formats: set[str]) -> dict[str, Path]:
    """dataset.json, predictions.json and via_project.json (as ``formats`` asks); returns paths."""
    ledger = Ledger("predictions")
    written = {}
    coco = write_coco(dataset, ledger)
    if polygons:
        for annotation in coco["annotations"]:
            if isinstance(annotation["segmentation"], dict):
                mask = geometry.rle_to_mask(geometry.rle_from_json(annotation["segmentation"], 0, 0))
                annotation["segmentation"] = geometry.mask_to_polygons(mask, tolerance=0.5)[0]
    if "coco" in formats:
        results = [{k: a[k] for k in ("image_id", "category_id", "segmentation", "bbox", "score")}
                   for a in coco["annotations"] if "score" in a]
        write_json_atomic(out / "predictions.json", results, overwrite=True)
        write_json_atomic(out / "dataset.json", coco, overwrite=True)
        written.update(predictions=out / "predictions.json", dataset=out / "dataset.json")
    if "via" in formats:
        least_confident_first = sorted(dataset.images, key=lambda image: min(
            (a.score for a in image.annotations if a.score is not None), default=0.0))
        via_dataset = Dataset(least_confident_first, dataset.categories, dataset.source_path, dataset.source_format,
                              label_attr="category")
        write_json_atomic(out / "via_project.json", write_via_project(via_dataset, ledger), overwrite=True)
        written["via"] = out / "via_project.json"
    return written


def write_label_map(label_map: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), label_map):
        raise OSError(f"could not write {path}")


def write_overlay(rgb: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


JOURNAL = "results.jsonl"
"""Per-image results, one JSON line each, appended and flushed as images finish: what --resume
reads back, and why an interrupted run loses nothing it had finished."""


def record_to_line(record: ImageRecord) -> dict:
    return {"file_name": record.file_name, "width": record.width, "height": record.height,
            "annotations": [{"category": a.category, "rle": geometry.rle_to_json(a.rle), "score": a.score,
                             "attributes": a.attributes} for a in record.annotations]}


def line_to_record(line: dict, image_id: int, root: Path) -> ImageRecord:
    record = ImageRecord(file_name=line["file_name"], id=image_id, width=line["width"], height=line["height"],
                         path=root / line["file_name"])
    for k, item in enumerate(line["annotations"]):
        rle = geometry.rle_from_json(item["rle"], line["height"], line["width"])
        record.annotations.append(Annotation(category=item["category"], rle=rle, score=item["score"],
                                             attributes=item["attributes"], source=f"detection {k}"))
    return record


def read_journal(path: Path) -> dict[str, dict]:
    """Finished images of an earlier run by file name (a line torn by a kill is ignored)."""
    lines = {}
    if path.is_file():
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
                lines[line["file_name"]] = line
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return lines

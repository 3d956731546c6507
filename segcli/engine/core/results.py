"""Model outputs to COCO records and results: the one converter behind training validation,
``segcli eval`` with a model and ``segcli predict``, so all three score and write the same thing.

A Predictor's result for one image (``ImagePrediction``: RLE masks at the image's own size,
detector boxes, labels 1..C, scores) becomes an ``ImageRecord`` of scored annotations
(``prediction_record``); records become a COCO dict (``predictions_coco``: the format writer's,
with the detector's box) and COCO results for ``loadRes`` (``coco_results``). Scoring against a
ground truth keys the records to it (``TruthKeyedPredictions``: its image ids and file names, its
category ids by class name). Semantic logits become a label map at the original size
(``semantic_prediction``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_convert

from segcli.errors import SegcliError
from segcli.formats import geometry
from segcli.formats.coco import write_coco
from segcli.formats.labels import match_class_names
from segcli.ledger import Ledger
from segcli.models.defaults import REVIEW_BELOW
from segcli.structures import Annotation, Category, Dataset, ImageRecord


def prediction_record(prediction, image_id: int, names: list[str], review_below: float = REVIEW_BELOW) -> ImageRecord:
    """An ImageRecord holding one image's predictions as scored annotations (empty masks left
    out; scores to 4 decimals, as every output file holds them; ``needs_review`` below
    ``review_below``)."""
    record = ImageRecord(file_name=prediction.file_name, id=image_id, width=prediction.width,
                         height=prediction.height, path=prediction.path)
    if prediction.rles is not None:
        boxes = detector_boxes(prediction.boxes_xyxy)
        for k, (rle, box, label, score) in enumerate(zip(prediction.rles, boxes, prediction.labels,
                                                         prediction.scores)):
            if geometry.rle_area_bbox(rle)[0] == 0:
                continue
            record.annotations.append(Annotation(
                category=names[int(label) - 1], rle=rle, bbox_xywh=box, score=round(float(score), 4),
                source=f"detection {k}", attributes={"needs_review": "yes" if score < review_below else "no"}))
    elif prediction.label_map is not None:
        for value in np.unique(prediction.label_map):
            if value == 0:
                continue
            rle = geometry.mask_to_rle(prediction.label_map == value)
            record.annotations.append(Annotation(category=names[int(value) - 1], rle=rle, source=f"class {value}"))
    return record


def detector_boxes(boxes_xyxy) -> list[list[float]]:
    """COCO ``[x, y, w, h]`` of detector boxes ``[x1, y1, x2, y2]`` (float32 from the model)."""
    boxes = torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4))
    return [[float(v) for v in box] for box in box_convert(boxes, "xyxy", "xywh").tolist()]


def predictions_coco(dataset: Dataset, ledger: Ledger) -> dict:
    """The COCO dict of predictions (``dataset.json``): ``write_coco``'s, with each scored
    instance's bbox the detector's box rather than its mask's (the writer derives boxes from
    masks, as a converted annotation needs). Annotations come out in the records' order, one
    per record annotation (empty masks were left out of the records)."""
    coco = write_coco(dataset, ledger)
    boxes = {image.id: [a.bbox_xywh if a.score is not None else None for a in image.annotations]
             for image in dataset.images}
    position: dict[int, int] = {}
    for annotation in coco["annotations"]:
        image_id = annotation["image_id"]
        k = position[image_id] = position.get(image_id, -1) + 1
        box = boxes[image_id][k] if k < len(boxes.get(image_id, ())) else None
        if box is not None:
            annotation["bbox"] = list(box)
    return coco


def coco_results(coco: dict) -> list[dict]:
    """COCO results (``predictions.json``, for ``loadRes``) from a predictions COCO dict;
    semantic results carry no score (COCO's stuff results format)."""
    return [{k: a[k] for k in ("image_id", "category_id", "segmentation", "bbox", "score") if k in a}
            for a in coco["annotations"]]


def model_category_ids(model_categories: list[dict], truth_categories: list[dict], warnings: list[str]) -> dict:
    """Model label (1..C) -> ground-truth category id, by name (case-insensitive); a warning
    names the model classes the ground truth lacks.

    Raises:
        SegcliError: no class of the model is in the ground truth.
    """
    found = match_class_names([c["name"] for c in model_categories], [c["name"] for c in truth_categories])
    mapping, absent = {}, []
    for label, (category, position) in enumerate(zip(model_categories, found), start=1):
        if position is None:
            absent.append(category["name"])
        else:
            mapping[label] = truth_categories[position]["id"]
    if absent:
        warnings.append(f"model classes absent from the ground truth, their predictions left out: {', '.join(absent)}")
    if not mapping:
        raise SegcliError("no class of the model is in the ground truth (model: "
                          + ", ".join(c["name"] for c in model_categories) + ")")
    return mapping


class TruthKeyedPredictions:
    """A model's predictions keyed to a COCO ground truth, as ``segcli predict`` records them:
    each image under the ground truth's id and file name, each class under the ground truth's
    name for it (predictions of classes the ground truth lacks are left out, as the warning
    says). ``coco()`` is the predictions' COCO dict (``dataset.json``), whose ``coco_results``
    are what gets scored (and ``eval --pred`` scores the same figures from them)."""

    def __init__(self, truth: dict, model_categories: list[dict], warnings: list[str], source: str = ""):
        self.truth, self.source = truth, source
        self.ids = {image["file_name"]: image["id"] for image in truth["images"]}
        self.names = [c["name"] for c in model_categories]
        truth_names = {c["id"]: c["name"] for c in truth["categories"]}
        self.truth_name = {self.names[label - 1]: truth_names[gt_id]
                           for label, gt_id in model_category_ids(model_categories, truth["categories"],
                                                                  warnings).items()}
        self.records: list[ImageRecord] = []

    def add(self, prediction, file_name: str) -> int:
        """Record the predictions of the ground-truth image ``file_name``; returns its id."""
        image_id = self.ids[file_name]
        record = prediction_record(prediction, image_id, self.names)
        record.file_name, record.path = file_name, None
        record.annotations = [a for a in record.annotations if a.category in self.truth_name]
        for annotation in record.annotations:
            annotation.category = self.truth_name[annotation.category]
        self.records.append(record)
        return image_id

    def coco(self) -> dict:
        """dataset.json of the predictions: the ground truth's image ids, file names and categories."""
        categories = [Category(c["id"], c["name"]) for c in self.truth["categories"]]
        dataset = Dataset(images=self.records, categories=categories, source_path=Path(self.source),
                          source_format="predictions", label_attr="category")
        return predictions_coco(dataset, Ledger("predictions"))


def semantic_prediction(logits: torch.Tensor, height: int, width: int, dtype=np.int64,
                        band_rows: int = 256) -> np.ndarray:
    """H x W label map: the argmax over classes of ``[1, C, h, w]`` logits resized bilinearly to
    the original size (as ``F.interpolate(align_corners=False)`` then argmax), computed in bands of
    rows: the C float planes of a 10000x10000 image would take 1.6 GB for 4 classes, a band of 256
    rows takes 40 MB. The same weights, in the same order, as PyTorch's kernel."""
    logits = logits.float().reshape(-1, *logits.shape[-2:])
    h, w = logits.shape[-2:]
    if (h, w) == (height, width):
        return logits.argmax(0).numpy().astype(dtype)
    label_map = np.empty((height, width), dtype=dtype)
    left, right, w_left, w_right = _bilinear_taps(w, width, 0, width)
    for start in range(0, height, band_rows):
        stop = min(height, start + band_rows)
        top, bottom, w_top, w_bottom = _bilinear_taps(h, height, start, stop)
        upper, lower = logits[:, top], logits[:, bottom]
        values = (w_top[:, None] * (w_left * upper[..., left] + w_right * upper[..., right])
                  + w_bottom[:, None] * (w_left * lower[..., left] + w_right * lower[..., right]))
        label_map[start:stop] = values.argmax(0).numpy()
    return label_map


def _bilinear_taps(size_in: int, size_out: int, start: int, stop: int) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of outputs start..stop-1 as PyTorch's bilinear kernel computes
    them (align_corners=False): (low index, high index, weight of low, weight of high)."""
    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    source = (scale * (torch.arange(start, stop, dtype=torch.float32) + 0.5) - 0.5).clamp(min=0)
    low = source.long()
    high = torch.where(low < size_in - 1, low + 1, low)
    weight_high = source - low
    return low, high, 1 - weight_high, weight_high

"""Scores shared by ``segcli train`` (validation) and ``segcli eval``.

Instance: COCO box and mask AP through pycocotools' COCOeval (ground truth rebuilt for every
evaluation, since COCOeval rewrites it in place; segm scored without boxes so area buckets use
mask area). Semantic: a confusion matrix accumulated with ``np.bincount`` (ignore label dropped),
from which mIoU, pixel accuracy, mean class accuracy and frequency-weighted IoU follow; classes
with no ground truth are NaN and left out of means.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_from_dict(data: dict) -> COCO:
    """A pycocotools COCO index built from an in-memory dict, without its prints."""
    coco = COCO()
    coco.dataset = copy.deepcopy(data)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_scores(ground_truth: dict, detections: list[dict], iou_type: str) -> dict:
    """COCOeval statistics and per-class AP.

    Args:
        ground_truth: COCO instances dict (images, annotations, categories).
        detections: COCO results (image_id, category_id, score, and segmentation or bbox).
        iou_type: "segm" or "bbox".

    Returns:
        {"AP": ..., "AP50": ..., ..., "per_class": {name: AP}}; all -1 when nothing to score.
    """
    gt = coco_from_dict(ground_truth)
    if not detections or not gt.getAnnIds():
        return {**{name: 0.0 if gt.getAnnIds() else -1.0 for name in STAT_NAMES}, "per_class": {}}
    results = copy.deepcopy(detections)
    if iou_type == "segm":
        for result in results:
            result.pop("bbox", None)  # loadRes would take box area for the area buckets
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    scores = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [iou, recall, class, area, maxdets]
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[gt.cats[cat_id]["name"]] = float(values.mean()) if values.size else float("nan")
    scores["per_class"] = per_class
    return scores


class ConfusionMatrix:
    """Pixel counts ``matrix[true, predicted]`` over ``num_classes`` classes (0 = background)."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        """Add one image (or a batch) of int label maps of equal shape."""
        truth, predicted = np.asarray(truth).ravel(), np.asarray(predicted).ravel()
        keep = (truth != self.ignore_index) & (truth >= 0) & (truth < self.num_classes)
        index = truth[keep].astype(np.int64) * self.num_classes + predicted[keep].astype(np.int64)
        self.matrix += np.bincount(index, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def scores(self, names: list[str] | None = None) -> dict:
        """mIoU, pixel accuracy, mean class accuracy, fwIoU and per-class IoU/accuracy (NaN for
        classes with no ground-truth pixels, which are left out of the means)."""
        m = self.matrix.astype(np.float64)
        true_pixels, predicted_pixels, hits = m.sum(1), m.sum(0), np.diag(m)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(true_pixels > 0, hits / (true_pixels + predicted_pixels - hits), np.nan)
            accuracy = np.where(true_pixels > 0, hits / true_pixels, np.nan)
        total = true_pixels.sum()
        frequency = true_pixels / total if total else np.zeros_like(true_pixels)
        names = names or [str(i) for i in range(self.num_classes)]
        return {"mIoU": _nanmean(iou), "pixel_accuracy": float(hits.sum() / total) if total else float("nan"),
                "mean_accuracy": _nanmean(accuracy), "fwIoU": float(np.nansum(frequency * iou)),
                "per_class_iou": dict(zip(names, map(float, iou))),
                "per_class_accuracy": dict(zip(names, map(float, accuracy))),
                "classes_without_ground_truth": [n for n, t in zip(names, true_pixels) if t == 0]}


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

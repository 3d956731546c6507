"""Scores shared by ``segcli train`` (validation) and ``segcli eval``.

Instance: COCO box and mask AP through pycocotools' COCOeval (ground truth rebuilt for every
evaluation, since COCOeval rewrites it in place). A result's area, which puts an unmatched
detection in the small/medium/large buckets, is by default what pycocotools' ``loadRes`` makes it
(its box's area when the results carry boxes, else its mask's), so the figures are those of a
direct pycocotools call; ``segm_area="mask"`` buckets mask AP by mask area instead. Semantic: a
confusion matrix accumulated with ``np.bincount`` (ignore label dropped),
from which mIoU, pixel accuracy, mean class accuracy and frequency-weighted IoU follow; classes
with no ground truth are NaN and left out of means.
"""

from __future__ import annotations

import contextlib
import copy
import io
import multiprocessing

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segcli.errors import SegcliError

SEGM_AREAS = ("pycocotools", "mask")
COCO_MAX_DETS = 100  # COCO's detections per image (maxDets), and what a model keeps for scoring
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_from_dict(data: dict, backend: str = "pycocotools"):
    """A COCO index built from an in-memory dict, without prints.

    COCOeval rewrites ground-truth annotations in place (segmentation -> RLE, ignore flags) by
    assigning keys, so a fresh dict per annotation protects ``data``; a deep copy of every
    polygon would cost more than the evaluation of small objects."""
    coco = _backend(backend)[0]()
    coco.dataset = {**data, "annotations": [dict(a) for a in data.get("annotations", [])],
                    "images": [dict(i) for i in data.get("images", [])],
                    "categories": [dict(c) for c in data.get("categories", [])]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _backend(name: str):
    """(COCO class, COCOeval class) of an evaluation backend."""
    if name == "pycocotools":
        return COCO, COCOeval
    if name == "faster":
        try:
            from faster_coco_eval import COCO as FasterCOCO
            from faster_coco_eval import COCOeval_faster
        except ImportError:
            raise SegcliError("--backend faster needs faster-coco-eval: pip install 'segcli[faster]'") from None
        return FasterCOCO, COCOeval_faster
    raise SegcliError(f"unknown backend {name!r}; choose pycocotools or faster")


def coco_scores(ground_truth: dict, detections: list[dict], iou_type: str, backend: str = "pycocotools",
                max_dets: int | None = None, details: bool = False, gt_index=None, processes: int = 1,
                segm_area: str = "pycocotools") -> dict:
    """COCOeval statistics and per-class AP.

    Args:
        ground_truth: COCO instances dict (images, annotations, categories).
        detections: COCO results (image_id, category_id, score, and segmentation or bbox).
        iou_type: "segm" or "bbox".
        backend: "pycocotools" or "faster" (faster-coco-eval, same figures).
        max_dets: raise the largest maxDets from 100 to this (dense images).
        details: also return the precision array (PR curves) and per-image counts.
        gt_index: a ``coco_from_dict(ground_truth)`` to reuse (one index serves several calls).
        processes: pycocotools: share the per-image matching among this many forked processes.
        segm_area: a result's area for the area buckets of mask AP: "pycocotools" (as ``loadRes``
            sets it: the box's area when the first result has a box, else the mask's) or "mask".

    Returns:
        {"AP": ..., "AP50": ..., ..., "per_class": {name: AP}} (+ "precision", "recall_thresholds",
        "per_image" with ``details``); all -1 when there is no ground truth, 0 with no detections.
    """
    gt = gt_index or coco_from_dict(ground_truth, backend)
    if not detections or not gt.getAnnIds():
        return {**{name: 0.0 if gt.getAnnIds() else -1.0 for name in STAT_NAMES}, "per_class": {}}
    results = _results_for_load_res(detections, iou_type, segm_area)
    coco_eval = _backend(backend)[1]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluator = coco_eval(gt, dt, iou_type, **({"separate_eval": True} if backend == "faster" and details else {}))
        if max_dets:
            evaluator.params.maxDets = [1, 10, int(max_dets)]
        if backend == "pycocotools":
            evaluate_in_processes(evaluator, processes)
        else:
            evaluator.evaluate()
        evaluator.accumulate()
        if not max_dets:
            evaluator.summarize()
    precision = evaluator.eval["precision"]  # [iou, recall, class, area, maxdets]
    if max_dets:  # summarize() looks for maxDets == 100 and finds nothing: read the arrays directly
        scores = {"AP": _mean_valid(precision[:, :, :, 0, -1]), "AP50": _mean_valid(precision[0, :, :, 0, -1]),
                  "AP75": _mean_valid(precision[5, :, :, 0, -1]),
                  f"AR{int(max_dets)}": _mean_valid(evaluator.eval["recall"][:, :, 0, -1])}
    else:
        scores = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
    names = [gt.cats[cat_id]["name"] for cat_id in evaluator.params.catIds]
    per_class = {}
    for k, name in enumerate(names):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[name] = float(values.mean()) if values.size else float("nan")
    scores["per_class"] = per_class
    if details:
        scores["precision"] = {"iou_0.50": precision[0, :, :, 0, -1], "iou_0.75": precision[5, :, :, 0, -1],
                               "classes": names}
        scores["recall_thresholds"] = np.asarray(evaluator.params.recThrs)
        scores["per_image"] = _per_image_counts(evaluator)
    return scores


def _results_for_load_res(detections: list[dict], iou_type: str, segm_area: str) -> list[dict]:
    """Copies of the results (``loadRes`` adds id and area to each in place) that ``loadRes``
    reads as the chosen area rule says. pycocotools picks its rule from the first result: when it
    has a box, every result's area is its box's, and a later result without a box would crash
    it; such a result gets its mask's box (the bbox ``loadRes`` gives a mask-only result)."""
    if segm_area not in SEGM_AREAS:
        raise SegcliError(f"unknown area rule {segm_area!r}; choose {' or '.join(SEGM_AREAS)}")
    results = [dict(r) for r in detections]
    if iou_type == "segm" and segm_area == "mask":
        for result in results:
            result.pop("bbox", None)  # loadRes then takes the mask's area
    elif results and results[0].get("bbox"):
        for result in results:
            if not result.get("bbox") and "segmentation" in result:
                result["bbox"] = [float(v) for v in mask_utils.toBbox(result["segmentation"])]
    return results


PARALLEL_MIN_IMAGES = 400
_FORKED: tuple | None = None  # (evaluator, image id chunks) handed to forked workers


def evaluate_in_processes(evaluator: COCOeval, processes: int) -> None:
    """``evaluator.evaluate()``, its per-image matching shared among forked processes.

    COCOeval matches every (image, category, area range) on its own, in Python; each process
    runs the unchanged pycocotools code on a contiguous slice of the sorted image ids, and the
    slices' results are put back in COCOeval's own order (category, area range, image), so
    ``accumulate`` and every figure are exactly those of one process.
    """
    params = evaluator.params
    params.imgIds = [int(i) for i in np.unique(params.imgIds)]
    if (processes < 2 or len(params.imgIds) < PARALLEL_MIN_IMAGES
            or "fork" not in multiprocessing.get_all_start_methods()):
        evaluator.evaluate()
        return
    global _FORKED
    chunks = [[int(i) for i in chunk] for chunk in np.array_split(np.asarray(params.imgIds), processes)]
    _FORKED = (evaluator, chunks)
    try:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.map(_evaluate_chunk, range(processes))
    finally:
        _FORKED = None
    if params.useCats:
        params.catIds = [int(c) for c in np.unique(params.catIds)]
    params.maxDets = sorted(params.maxDets)
    categories, areas = (len(params.catIds) if params.useCats else 1), len(params.areaRng)
    merged = []
    for k in range(categories):
        for a in range(areas):
            for chunk, part in zip(chunks, parts):
                start = (k * areas + a) * len(chunk)
                merged += part[start:start + len(chunk)]
    evaluator.evalImgs = merged
    evaluator._paramsEval = copy.deepcopy(params)


def _evaluate_chunk(index: int) -> list:
    evaluator, chunks = _FORKED
    evaluator.params.imgIds = chunks[index]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    return evaluator.evalImgs


def _mean_valid(values: np.ndarray) -> float:
    values = values[values > -1]
    return float(values.mean()) if values.size else -1.0


PER_IMAGE_MIN_SCORE = 0.5
"""Detections below this score are left out of the per-image counts (and the worst-image overlays)."""


def _per_image_counts(evaluator, min_score: float = PER_IMAGE_MIN_SCORE) -> dict[int, dict]:
    """True positives, false positives and misses at IoU 0.5 per image among detections scoring
    at least ``min_score`` (what a user would keep), from COCOeval's greedy per-image matching
    (best score first, so lower-scored detections never change the matches of higher ones);
    crowd and ignored objects count for neither side."""
    counts: dict[int, dict] = {}
    for item in getattr(evaluator, "evalImgs", None) or []:
        if item is None or list(item["aRng"]) != list(evaluator.params.areaRng[0]):
            continue
        entry = counts.setdefault(int(item["image_id"]), {"tp": 0, "fp": 0, "fn": 0})
        matched = np.asarray(item["dtMatches"])[0] > 0 if len(item["dtIds"]) else np.zeros(0, bool)
        dt_ignore = np.asarray(item["dtIgnore"])[0].astype(bool) if len(item["dtIds"]) else np.zeros(0, bool)
        dt_ignore = dt_ignore | (np.asarray(item["dtScores"], dtype=float)[:len(dt_ignore)] < min_score)
        gt_ignore = np.asarray(item["gtIgnore"]).astype(bool)
        tp = int((matched & ~dt_ignore).sum())
        entry["tp"] += tp
        entry["fp"] += int((~matched & ~dt_ignore).sum())
        entry["fn"] += int((~gt_ignore).sum()) - tp
    return counts


class ConfusionMatrix:
    """Pixel counts ``matrix[true, predicted]`` over ``num_classes`` classes (0 = background)."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.image_iou: list[float] = []  # per image: mean IoU over the classes in its ground truth
        self.image_accuracy: list[float] = []

    def update(self, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """Add one image of int label maps of equal shape (predicted values in 0..C-1: callers map
        foreign label values first); returns that image's matrix."""
        truth, predicted = np.asarray(truth).ravel(), np.asarray(predicted).ravel()
        keep = (truth != self.ignore_index) & (truth >= 0) & (truth < self.num_classes)
        truth, predicted = truth[keep].astype(np.int64), predicted[keep].astype(np.int64)
        if predicted.size and (predicted.min() < 0 or predicted.max() >= self.num_classes):
            raise ValueError(f"predicted label {int(predicted.max())} outside 0..{self.num_classes - 1}")
        index = truth * self.num_classes + predicted
        matrix = np.bincount(index, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)
        self.matrix += matrix
        hits, truth_pixels, predicted_pixels = np.diag(matrix), matrix.sum(1), matrix.sum(0)
        union = truth_pixels + predicted_pixels - hits
        present = truth_pixels > 0  # the seed's definition: classes predicted but absent are not counted
        if present.any():
            self.image_iou.append(float((hits[present] / union[present]).mean()))
            self.image_accuracy.append(float(hits.sum() / truth.size) if truth.size else float("nan"))
        return matrix

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
                "classes_without_ground_truth": [n for n, t in zip(names, true_pixels) if t == 0],
                # the seed FCN+PSPNet work's definition: a mean over images of each image's IoU over
                # the classes in its ground truth (background included; predicted-only classes ignored)
                "per_image_mIoU": _nanmean(np.asarray(self.image_iou, dtype=np.float64)),
                "per_image_pixel_accuracy": _nanmean(np.asarray(self.image_accuracy, dtype=np.float64))}


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

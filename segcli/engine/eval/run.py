"""``segcli eval``: score predictions against ground truth, from files or by running a model.

Instance: COCO box and mask AP (``segcli.engine.core.metrics.coco_scores``, pycocotools or
faster-coco-eval), per-class AP, precision-recall curves, the images with the most errors at
IoU 0.5, and, when an image holds more than 100 objects, AP again with maxDets raised to the
largest count. Semantic: a confusion matrix over all pixels (mIoU, accuracies, fwIoU, per class)
plus the per-image mIoU of the seed FCN+PSPNet work. Results go to a new folder (metrics.json,
plots) and are returned as one JSON-able report; warnings explain every join and drop.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segcli.engine.core.metrics import (COCO_MAX_DETS, PER_IMAGE_MIN_SCORE, STAT_NAMES, ConfusionMatrix, coco_from_dict,
                                        coco_scores)
from segcli.engine.core.plots import plot_confusion_matrix, plot_pr_curves
from segcli.engine.core.results import TruthKeyedPredictions, coco_results
from segcli.engine.eval.inputs import (LabelMaps, MaskClasses, class_value_map, ground_truth_maps, is_mask_folder,
                                       join_predictions, load_ground_truth, load_predictions, mapping_note,
                                       read_mask_maps)
from segcli.engine.eval.options import EvalOptions
from segcli.engine.eval.output import LABEL_MAPS, StagedOutput, check_output_paths
from segcli.errors import SegcliError
from segcli.fileio import refuse_writing_inputs, write_json_atomic
from segcli.formats.instance_masks import is_instance_folder


def run_eval(options: EvalOptions, on_event: Callable[..., None] = lambda *a, **k: None) -> dict:
    """Evaluate as ``options`` says; returns the report (also written as metrics.json)."""
    if options.gt is None:
        raise SegcliError("give the ground truth: DATA_SPLIT (a folder with images and one annotation file) or --gt")
    if options.pred is not None and options.weights is not None:
        raise SegcliError("give either --pred (score files) or --weights (predict, then score), not both")
    check_json_path(options)
    check_out_path(options)
    check_output_paths(options.out, options.json_path)
    # all or nothing: files are staged inside --out and moved into place once all are written
    if options.pred is not None:
        report = (_semantic_files(options) if Path(options.pred).is_dir() and not is_instance_folder(options.pred)
                  else _instance_files(options))
        _warn_unused_classes(options, report)
        with StagedOutput(options.out) as output:
            _write_report(report, output, options)
    else:
        with StagedOutput(options.out) as output:  # before the work: the worst/ overlays go there
            report = _with_model(options, output, on_event)
            _warn_unused_classes(options, report)
            _write_report(report, output, options)
    return report


def _warn_unused_classes(options: EvalOptions, report: dict) -> None:
    """--classes names label-mask folders without a classes file; say so when there is none."""
    from segcli.formats.masks import find_classes_file

    folders = [Path(p) for p in (options.gt, options.pred) if p is not None and is_mask_folder(Path(p))]
    if options.classes and all(find_classes_file(folder) is not None for folder in folders):
        report["warnings"].append("--classes not used: it names the classes of a label-mask folder without a "
                                  "classes file, and there is none among the inputs")


def check_json_path(options: EvalOptions) -> None:
    """Refuse, before any work, a --json path that is, holds or lies inside an input (the ground
    truth, the predictions, the weights or the images): it would be replaced or pollute them."""
    if options.json_path is None:
        return
    json_path = Path(options.json_path)
    inputs = [Path(p) for p in (options.gt, options.pred, options.weights, options.images) if p is not None]
    refuse_writing_inputs(json_path, inputs, [p for p in inputs if p.is_dir()], what="--json")
    if json_path.is_dir():
        raise SegcliError("--json is a folder, expected a file path", json_path)


def check_out_path(options: EvalOptions) -> None:
    """Refuse, before any work, an --out among the inputs: the split, ground-truth or image
    folder itself (metrics.json beside the annotation file would make the split ambiguous), or
    a label-mask folder being scored or any folder below it (the plots would be read as label
    maps next time)."""
    if options.out is None:
        return
    folders = [Path(p) for p in (options.gt, options.pred, options.images) if p is not None and Path(p).is_dir()]
    mask_folders = [p for p in folders if p != options.images and is_mask_folder(p)]
    out = Path(options.out).resolve()
    for folder in folders:
        if out == folder.resolve():
            raise SegcliError(f"is the input folder {folder}: choose a folder outside the inputs", options.out, "--out")
    refuse_writing_inputs(Path(options.out), [], mask_folders, what="--out")
    # a semantic run replaces OUT/masks with its label maps: it must not be, nor hold, an input
    label_maps = out / LABEL_MAPS
    for path in (Path(p) for p in (options.gt, options.pred, options.weights, options.images) if p is not None):
        if _inside(path, label_maps):
            raise SegcliError(f"eval writes its label maps to {Path(options.out) / LABEL_MAPS}, which holds the input "
                              f"{path}: choose another --out", options.out, "--out")


# --- instance ---------------------------------------------------------------------------------


def _instance_files(options: EvalOptions) -> dict:
    truth = load_ground_truth(options.gt, options.images, options.label_attr, mask_classes=MaskClasses(options.classes))
    predictions = load_predictions(options.pred)
    results, warnings = join_predictions(truth, predictions)
    report = instance_report(truth.coco, results, options.backend, options.worst, segm_area=options.segm_area)
    report["warnings"] = truth.warnings + warnings + report["warnings"]
    report["notes"] = truth.notes + report["notes"]
    report["inputs"] = {"ground_truth": str(truth.annotation), "predictions": str(options.pred)}
    return report


def instance_report(ground_truth: dict, results: list[dict], backend: str = "pycocotools", worst: int = 10,
                    processes: int | None = None, segm_area: str = "pycocotools") -> dict:
    """Box and mask AP, per class, curves data, dense-image AP and the worst images.

    ``processes``: for pycocotools' per-image matching (default: the CPU count, at most 4).
    ``segm_area``: the area rule of mask AP's small/medium/large buckets (see ``coco_scores``)."""
    processes = processes or min(4, os.cpu_count() or 1)
    warnings, notes = [], []
    objects = Counter(a["image_id"] for a in ground_truth["annotations"] if not a.get("iscrowd", 0))
    with_masks = [r for r in results if "segmentation" in r]
    if with_masks and len(with_masks) < len(results):
        warnings.append(f"{len(results) - len(with_masks)} prediction(s) have a box only: left out of mask AP")
    index = coco_from_dict(ground_truth, backend)  # one index for every call (none changes what the next reads)
    segm = coco_scores(ground_truth, with_masks, "segm", backend, details=True, gt_index=index,
                       processes=processes, segm_area=segm_area) if (
        with_masks or not results) else None
    bbox = coco_scores(ground_truth, results, "bbox", backend, details=True, gt_index=index, processes=processes)
    report = {"task": "instance", "backend": backend, "segm_area": segm_area, "images": len(ground_truth["images"]),
              "ground_truth_objects": sum(objects.values()), "predictions": len(results),
              "segm": _public(segm), "bbox": _public(bbox)}
    if segm is None:
        notes.append("predictions have boxes only: mask AP not computed")
    else:
        notes.append(_area_note(with_masks, segm_area))
    no_truth = [c["name"] for c in ground_truth["categories"] if c["id"] not in
                {a["category_id"] for a in ground_truth["annotations"]}]
    if no_truth:
        notes.append(f"categories with no ground-truth object (n/a, not in the means): {', '.join(no_truth)}")
    densest = max(objects.values(), default=0)
    if densest > COCO_MAX_DETS and results:
        dense = {"max_dets": densest}
        for name, scores in (("segm", segm), ("bbox", bbox)):
            if scores is not None:
                again = coco_scores(ground_truth, with_masks if name == "segm" else results, name, backend,
                                    max_dets=densest, gt_index=index, processes=processes, segm_area=segm_area)
                dense[name] = {k: again[k] for k in ("AP", "AP50", "AP75")}
        report["dense"] = dense
        notes.append(f"an image holds {densest} objects, more than COCO's 100 detections: AP is also given with "
                     f"maxDets {densest} (dense)")
    main = segm or bbox
    names = {img["id"]: img.get("file_name", str(img["id"])) for img in ground_truth["images"]}
    rows = []
    for image_id, counts in main.get("per_image", {}).items():
        tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        rows.append({"image_id": image_id, "image": names.get(image_id, str(image_id)), "tp": tp, "fp": fp, "fn": fn,
                     "f1": round(f1, 4)})
    rows.sort(key=lambda r: (r["f1"], -(r["fp"] + r["fn"]), r["image"]))
    report["worst_images"] = [r for r in rows if r["f1"] < 1][:worst]
    report["notes"], report["warnings"] = notes, warnings
    report["_curves"] = {k: (v["precision"], v["recall_thresholds"]) for k, v in (("segm", segm), ("bbox", bbox))
                         if v is not None and "precision" in v}
    return report


def _area_note(results: list[dict], segm_area: str) -> str:
    """Which area put a prediction in mask AP's small/medium/large buckets (APs, APm, APl)."""
    if segm_area == "mask":
        return "mask APs/APm/APl: a prediction's area is its mask's (--segm-area mask; pycocotools' loadRes " \
               "would take its box's)"
    if results and results[0].get("bbox"):
        return "mask APs/APm/APl: a prediction's area is its box's, as pycocotools' loadRes sets it " \
               "(--segm-area mask: its mask's)"
    return "mask APs/APm/APl: a prediction's area is its mask's, as pycocotools' loadRes sets it when the first " \
           "prediction has no box"


def _public(scores: dict | None) -> dict | None:
    if scores is None:
        return None
    return {**{k: scores[k] for k in STAT_NAMES}, "per_class": scores["per_class"]}


# --- semantic ---------------------------------------------------------------------------------


def _semantic_files(options: EvalOptions) -> dict:
    warnings: list[str] = []
    notes: list[str] = []
    if is_mask_folder(options.gt):
        truth = read_mask_maps(options.gt, MaskClasses(options.classes))
        notes.append(mapping_note(Path(options.gt), truth.names, truth.classes_from))
    else:
        loaded = load_ground_truth(options.gt, options.images, options.label_attr)
        warnings += loaded.warnings
        truth = ground_truth_maps(loaded)
    # predicted label maps without a classes file: --classes, else the ground truth's classes
    predicted = read_mask_maps(options.pred, MaskClasses(options.classes, truth.names[1:], "the ground truth"))
    if predicted.classes_from in ("--classes", "the ground truth"):
        notes.append(mapping_note(Path(options.pred), predicted.names, predicted.classes_from))
    for maps in (truth, predicted):
        if maps.binary_255:
            warnings.append(f"{maps.source}: one-class masks of 0 and 255: 255 read as the class, not as ignore")
    report = semantic_report(truth, predicted, options.ignore_index, warnings)
    report["notes"] = notes + report["notes"]
    report["inputs"] = {"ground_truth": str(options.gt), "predictions": str(options.pred)}
    return report


def _foreign_value(label_map: np.ndarray, classes: int, ignore_index: int) -> int | None:
    """A value of ``label_map`` that is neither a class (0..classes-1) nor the ignore index."""
    if label_map.size == 0 or (label_map.min() >= 0 and label_map.max() < classes):
        return None
    values = np.unique(label_map[(label_map < 0) | (label_map >= classes)])
    values = values[values != ignore_index]
    return int(values[0]) if len(values) else None


def semantic_report(truth: LabelMaps, predicted: LabelMaps | Callable[[str], np.ndarray | None],
                    ignore_index: int = 255, warnings: list[str] | None = None,
                    predicted_names: list[str] | None = None) -> dict:
    """Score predicted label maps against ``truth`` (joined by file stem, classes by name)."""
    warnings = list(warnings or [])
    names = predicted.names if isinstance(predicted, LabelMaps) else predicted_names
    table = class_value_map(names, truth.names, warnings)
    matrix = ConfusionMatrix(len(truth.names), ignore_index)
    missing, used = [], set()
    for key in truth.maps:
        label_truth = truth.read(key)
        if isinstance(predicted, LabelMaps):
            found = predicted.find(key)
            used.add(found)
            label_predicted = predicted.read(found) if found is not None else None
        else:
            label_predicted = predicted(key)
        if label_predicted is None:
            missing.append(key)
            label_predicted = np.zeros_like(label_truth)
        elif label_predicted.shape != label_truth.shape:
            where = predicted.maps[found] if isinstance(predicted, LabelMaps) else key
            raise SegcliError(f"predicted mask is {label_predicted.shape[1]}x{label_predicted.shape[0]}, the ground "
                              f"truth {label_truth.shape[1]}x{label_truth.shape[0]}", where)
        # a value with no class would silently score as background (prediction) or not at all (truth)
        foreign = _foreign_value(label_predicted, len(names), ignore_index)
        if foreign is not None:
            raise SegcliError(f"predicted mask holds value {foreign}, beyond its "
                              f"{len(names)} classes", predicted.maps[found] if isinstance(predicted, LabelMaps)
                              else key)
        foreign = _foreign_value(label_truth, len(truth.names), ignore_index)
        if foreign is not None:
            raise SegcliError(f"ground-truth mask holds value {foreign}, beyond its {len(truth.names)} classes "
                              f"(ignore index {ignore_index})", truth.maps[key] if isinstance(truth.maps[key], Path)
                              else truth.source)
        matrix.update(label_truth, table[label_predicted])
    if missing:
        warnings.append(f"{len(missing)} image(s) without a predicted mask, scored as all background: "
                        f"{', '.join(missing[:5])}")
    if isinstance(predicted, LabelMaps):
        extra = sorted(set(predicted.maps) - used)
        if extra:
            warnings.append(f"{len(extra)} predicted mask(s) with no ground truth, left out: {', '.join(extra[:5])}")
    scores = matrix.scores(truth.names)
    notes = [f"ignore index {ignore_index}: those ground-truth pixels are not scored"]
    if scores["classes_without_ground_truth"]:
        notes.append("classes with no ground-truth pixel (n/a, not in the means): "
                     + ", ".join(scores["classes_without_ground_truth"]))
    notes.append("per_image_mIoU: mean over images of the IoU over the classes in each image's ground truth "
                  "(background included, classes only predicted ignored), as the seed FCN+PSPNet work reports it")
    return {"task": "semantic", "images": len(truth.maps), "classes": truth.names, **scores,
            "confusion_matrix": matrix.matrix.tolist(), "notes": notes, "warnings": warnings}


# --- with a model -----------------------------------------------------------------------------


def _with_model(options: EvalOptions, output: StagedOutput, on_event: Callable[..., None]) -> dict:
    from segcli.engine.core.inference import Predictor, unused_options_warning
    from segcli.models.defaults import EVAL_CONF, default_weights

    weights = Path(options.weights) if options.weights is not None else default_weights(options.task)
    predictor = Predictor.load(weights, options.conf, COCO_MAX_DETS, options.device, options.imgsz,
                               default_conf=EVAL_CONF)

    # a label-mask folder without a classes file: --classes, else the model's classes
    mask_classes = MaskClasses(options.classes, [c["name"] for c in predictor.categories], "the model")
    if predictor.task == "semantic" and is_mask_folder(options.gt):
        truth_maps, images, notes, warnings = _mask_folder_images(options, mask_classes)
        truth_name = str(options.gt)
    else:
        truth = load_ground_truth(options.gt, options.images, options.label_attr, need_images=True,
                                  mask_classes=mask_classes)
        truth_name, warnings, notes = str(truth.annotation), list(truth.warnings), list(truth.notes)
        if predictor.task == "semantic":
            truth_maps = ground_truth_maps(truth)
            images = {image.path: Path(image.file_name).with_suffix("").as_posix()
                      for image in truth.dataset.images if image.path is not None}
    if predictor.task == "instance":
        report = _instance_with_model(options, predictor, truth, output, warnings, on_event)
    else:
        report = _semantic_with_model(options, predictor, truth_maps, images, output, warnings, on_event)
    if predictor.unused_options:
        warnings.insert(0, unused_options_warning(predictor))
    report["warnings"] = warnings + report["warnings"]
    report["notes"] = notes + report["notes"]
    report["inputs"] = {"ground_truth": truth_name, "weights": str(weights)}
    if predictor.task == "instance":
        report["inputs"]["conf"] = predictor.conf
    on_event("end")
    return report


def _instance_with_model(options: EvalOptions, predictor, truth, output: StagedOutput, warnings: list[str],
                         on_event: Callable[..., None]) -> dict:
    from segcli.engine.core.inference import SkippedImage

    images = [image for image in truth.dataset.images if image.path is not None]
    by_path = {image.path: image for image in images}
    keyed = TruthKeyedPredictions(truth.coco, predictor.categories, warnings, str(truth.annotation))
    kept = {}
    paths = [image.path for image in images]
    on_event("start", total=len(paths), task=predictor.task)
    for done, item in enumerate(predictor.predict(paths, Path("/"), options.batch, options.workers), start=1):
        on_event("progress", done=done)
        if isinstance(item, SkippedImage):
            warnings.append(f"skipped {item.file_name}: {item.reason}")
            continue
        kept[keyed.add(item, by_path[item.path].file_name)] = item
    # scored exactly as ``segcli predict`` writes them (detector boxes, scores to 4 decimals),
    # and kept: RUN/predictions.json scored again gives these figures
    coco = keyed.coco()
    results = coco_results(coco)
    report = instance_report(truth.coco, results, options.backend, options.worst, segm_area=options.segm_area)
    report["worst_images"] = _draw_worst(report["worst_images"], kept, predictor, output)
    report["_predictions"] = {"predictions.json": results, "dataset.json": coco}
    return report


def _semantic_with_model(options: EvalOptions, predictor, truth_maps: LabelMaps, images: dict[Path, str],
                         output: StagedOutput, warnings: list[str], on_event: Callable[..., None]) -> dict:
    """Predict label maps for ``images`` (path -> ground-truth key), score them, and keep them
    in masks/ of the run folder (with classes.txt): ``--pred RUN/masks`` scores them again."""
    from segcli.engine.core.inference import SkippedImage

    predicted_maps = {}
    on_event("start", total=len(images), task=predictor.task)
    for done, item in enumerate(predictor.predict(list(images), Path("/"), options.batch, options.workers),
                                start=1):
        on_event("progress", done=done)
        if isinstance(item, SkippedImage):
            warnings.append(f"skipped {item.file_name}: {item.reason}")
            continue
        predicted_maps[images[item.path]] = item.label_map
    names = ["_background_"] + [c["name"] for c in predictor.categories]
    report = semantic_report(truth_maps, predicted_maps.get, options.ignore_index, predicted_names=names)
    _stage_label_maps(predicted_maps, names, output)
    return report


def _mask_folder_images(options: EvalOptions, mask_classes: MaskClasses) -> tuple[LabelMaps, dict[Path, str],
                                                                                   list[str], list[str]]:
    """A label-mask ground truth and the image of each label map (same name, any image suffix,
    anywhere in --images); label maps without an image are left out with a warning."""
    from segcli.formats.images import ImageFolder

    truth = read_mask_maps(options.gt, mask_classes)
    if options.images is None:
        raise SegcliError("a label-mask ground truth needs --images DIR (the images the masks belong to)", options.gt)
    folder = ImageFolder(Path(options.images))
    images, missing = {}, []
    for key in truth.maps:
        found = [path for path in folder.with_stem(Path(key).name) if not _inside(path, Path(options.gt))]
        if len(found) == 1:
            images[found[0]] = key
        else:
            missing.append(key)
    if not images:
        raise SegcliError(f"none of the {len(truth.maps)} label maps has its image in {options.images} (an image "
                          "named like the mask, any image suffix)", options.gt)
    notes, warnings = [mapping_note(Path(options.gt), truth.names, truth.classes_from)], []
    if truth.binary_255:
        warnings.append(f"{truth.source}: one-class masks of 0 and 255: 255 read as the class, not as ignore")
    if missing:
        left_out = set(missing)
        truth.maps = {key: value for key, value in truth.maps.items() if key not in left_out}
        warnings.append(f"{len(missing)} label map(s) without one image of that name in {options.images}, "
                        f"left out: {', '.join(missing[:5])}")
    return truth, images, notes, warnings


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _stage_label_maps(label_maps: dict[str, np.ndarray], names: list[str], output: StagedOutput) -> None:
    """The predicted label maps as masks/KEY.png (names kept inside masks/, one file each) and
    masks/classes.txt, in the staging folder."""
    from segcli.engine.predict.outputs import output_stems, write_label_map
    from segcli.fileio import write_bytes_atomic
    from segcli.formats.masks import classes_text

    folder = output.staging / "masks"
    safe = {key: _safe_relative(key) + ".png" for key in label_maps}
    stems = output_stems(sorted(set(safe.values())))
    for key, label_map in label_maps.items():
        write_label_map(label_map, folder / f"{stems[safe[key]]}.png")
    write_bytes_atomic(folder / "classes.txt", classes_text(names[1:]).encode())


def _safe_relative(key: str) -> str:
    """``key`` as a relative path with no '..', root or drive (a name from an annotation file)."""
    parts = [part for part in key.replace("\\", "/").split("/") if part not in ("", ".", "..") and ":" not in part]
    return "/".join(parts) or "image"


def _draw_worst(rows: list[dict], kept: dict, predictor, output: StagedOutput) -> list[dict]:
    """Overlays of the worst images in out/worst/, their paths added to the rows."""
    from segcli.engine.core.overlay import draw_instances
    from segcli.engine.predict.outputs import write_overlay
    from segcli.formats.images import decode_image

    names = [c["name"] for c in predictor.categories]
    for rank, row in enumerate(rows, start=1):
        item = kept.get(row["image_id"])
        rgb = decode_image(item.path) if item is not None else None
        if rgb is None or rgb.shape[:2] != (item.height, item.width):
            continue
        path = output.staging / "worst" / f"{rank:02d}_{Path(row['image']).stem}.jpg"
        shown = [k for k, score in enumerate(item.scores) if score >= PER_IMAGE_MIN_SCORE]  # what was counted
        write_overlay(draw_instances(rgb, [item.rles[k] for k in shown], item.boxes_xyxy[shown], item.labels[shown],
                                     item.scores[shown], names), path)
        row["overlay"] = str(output.final(path))
    return rows


# --- output -----------------------------------------------------------------------------------


def _write_report(report: dict, output: StagedOutput, options: EvalOptions) -> None:
    """Plots and metrics.json into the staging folder, --json in place (before the folder is
    committed, so a failure there leaves no complete-looking --out either)."""
    staging = output.staging
    report["out"] = str(output.folder)
    files = {"metrics": str(output.folder / "metrics.json")}
    for name, (precision, recall) in report.pop("_curves", {}).items():
        path = staging / f"pr_curves_{name}.png"
        plot_pr_curves(precision, recall, "mask" if name == "segm" else "box", path)
        files[f"pr_curves_{name}"] = str(output.final(path))
    if report["task"] == "semantic":
        path = staging / "confusion_matrix.png"
        plot_confusion_matrix(np.asarray(report["confusion_matrix"]), report["classes"], path)
        files["confusion_matrix"] = str(output.final(path))
    if (staging / "masks").is_dir():  # a semantic model's label maps
        files["masks"] = str(output.folder / "masks")
    for name, data in report.pop("_predictions", {}).items():  # with a model: what it predicted
        write_json_atomic(staging / name, data, overwrite=True)
        files[Path(name).stem] = str(output.folder / name)
    report["files"] = files
    clean = _json_safe(report)
    write_json_atomic(staging / "metrics.json", clean, overwrite=True, indent=1)
    if options.json_path is not None:
        write_json_atomic(Path(options.json_path), clean, overwrite=True, indent=1)


def _json_safe(value):
    """NaN (no ground truth) becomes null; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value

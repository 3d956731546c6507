"""What ``segcli eval`` scores: ground truth and predictions read from files and joined.

Ground truth is any annotation file segcli reads (a COCO file is scored as it is on disk, so the
figures equal a direct pycocotools call; VIA and the rest go through segcli's COCO writer, which
needs the images for their sizes), or a folder of label PNGs (scored as they are for semantic,
as one instance per connected component and class for instance AP; without a classes file, the
names of its values come from ``--classes`` or the model, and a note says which). Predictions are
COCO results (or a COCO file whose annotations carry scores, such as ``segcli predict``'s
dataset.json). When the predictions know their image file names and category names (a
dataset.json beside predictions.json), they are joined to the ground truth by name, so differing
ids never give a silent zero; every mapping and every dropped prediction is reported as a warning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segcli.engine.core.annotation_files import find_annotation_file
from segcli.errors import SegcliError, with_article
from segcli.fileio import read_json
from segcli.formats import geometry
from segcli.formats.coco import write_coco
from segcli.formats.images import files_inside
from segcli.formats.instance_masks import is_instance_folder, read_instance_folder
from segcli.formats.io import detect_format, locate_images, read_annotations
from segcli.formats.labels import match_class_names
from segcli.formats.masks import (BACKGROUND, CLASS_FILES, INSTANCES_FILE, check_class_names, find_classes_file, read_classes,
                                  read_label_map, read_mask_folder)
from segcli.formats.rasterize import IGNORE_INDEX, rasterize_image, render_label_map
from segcli.formats.split_record import recorded_part_images
from segcli.ledger import Ledger
from segcli.structures import Dataset


@dataclass
class GroundTruth:
    """Ground truth as a COCO instances dict plus the dataset it came from (image paths)."""

    coco: dict
    dataset: Dataset
    annotation: Path
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.coco["categories"]]


def annotation_path(path: Path) -> Path:
    """An annotation file, or the one annotation file in a split folder."""
    path = Path(path)
    if not path.exists():
        raise SegcliError("not found", path)
    return find_annotation_file(path) if path.is_dir() else path


def load_ground_truth(path: Path, images_dir: Path | None = None, label_attr: str | None = None,
                      need_images: bool = False, mask_classes: MaskClasses | None = None) -> GroundTruth:
    """Read ground truth from an annotation file, split folder or label-mask folder.

    ``need_images``: the images themselves are needed (predicting with a model), not only sizes.
    ``mask_classes``: the class names of a label-mask folder without a classes file.
    """
    if is_mask_folder(path) or is_instance_folder(path):
        return _mask_ground_truth(Path(path), images_dir, need_images, mask_classes or MaskClasses())
    annotation = annotation_path(path)
    if images_dir is None and Path(path).is_dir():
        images_dir = recorded_part_images(annotation) or Path(path)  # a part of `segcli split`: images stay in place
    ledger = Ledger(str(annotation))
    detected = detect_format(annotation)
    dataset = read_annotations(annotation, ledger, label_attr, images_dir=images_dir, detected=detected)
    ledger.raise_errors()
    warnings = []
    sizes_known = all(image.width is not None for image in dataset.images)
    if need_images or not sizes_known:
        locate_images(dataset, images_dir, ledger, require_found=True)  # clear error when none is found
        ledger.raise_errors()
        missing = [image.file_name for image in dataset.images if image.path is None]
        if missing:
            warnings.append(f"{len(missing)} ground-truth image(s) not found, left out: {_some(missing)}")
            if not sizes_known or need_images:
                dataset.images = [image for image in dataset.images if image.path is not None]
    if detected[0] == "coco":
        coco = detected[1]  # scored as on disk: areas, ids and crowd flags exactly as pycocotools sees them
        if len(dataset.images) < len(coco["images"]):
            kept = {image.file_name for image in dataset.images}
            ids = {img["id"] for img in coco["images"] if img.get("file_name") in kept}
            coco = {**coco, "images": [img for img in coco["images"] if img["id"] in ids],
                    "annotations": [a for a in coco["annotations"] if a.get("image_id") in ids]}
    else:
        coco = write_coco(dataset, ledger)
    if not coco["images"]:
        raise SegcliError("ground truth has no images", annotation)
    return GroundTruth(coco, dataset, annotation, warnings)


@dataclass
class MaskClasses:
    """Class names (values 1, 2, ...) for label-mask folders without a classes file: ``given``
    by --classes, else ``fallback`` (the model's, with a model) described by ``fallback_from``."""

    given: list[str] | None = None
    fallback: list[str] | None = None
    fallback_from: str = "the model"

    def names_for(self, folder: Path) -> tuple[list[str], str]:
        """(names by value, 0 background; where they came from) for mask folder ``folder``."""
        found = find_classes_file(folder)
        if found is not None:
            return read_classes(found), str(found)
        if self.given:
            return [BACKGROUND, *self.given], "--classes"
        if self.fallback:
            return [BACKGROUND, *self.fallback], self.fallback_from
        raise SegcliError(f"no classes file ({', '.join(CLASS_FILES)}) in the mask folder or its parent: "
                          "pass --classes NAME1,NAME2,... (the classes of label values 1, 2, ...)", folder)


def parse_classes(text: str | None) -> list[str] | None:
    """``--classes a,b,c``: the names of label values 1, 2, 3 (0 is the background)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        raise SegcliError("--classes needs at least one name, e.g. --classes circle,square")
    check_class_names(names, "--classes")  # blank, twice or unwritable in a classes.txt
    return names


def mapping_note(folder: Path, names: list[str], source: str) -> str:
    """One line saying which label value means which class, and where that came from."""
    values = _some([f"{value} {name}" for value, name in enumerate(names)], 20)
    return f"{folder}: label values {values} (classes from {source})"


def _mask_ground_truth(folder: Path, images_dir: Path | None, need_images: bool,
                       mask_classes: MaskClasses) -> GroundTruth:
    """A label-mask folder as instance ground truth: one object per connected component and
    class (``segcli convert``'s reading); image file names when ``images_dir`` holds them."""
    if need_images and images_dir is None:
        raise SegcliError("a label-mask ground truth needs --images DIR (the images the masks belong to)", folder)
    ledger = Ledger(str(folder))
    images_dir = Path(images_dir) if images_dir is not None else None
    if is_instance_folder(folder):  # instance-id maps: instances.json names every id's class
        dataset = read_instance_folder(folder, ledger, images_dir)
        note = f"masks: {folder} holds instance-id maps (classes from its {INSTANCES_FILE})"
    else:
        names, source = mask_classes.names_for(folder)
        dataset = read_mask_folder(folder, ledger, images_dir, names=names)
        note = mapping_note(folder, names, source)
    ledger.raise_errors()
    warnings = []
    if images_dir is not None:
        missing = [image.file_name for image in dataset.images if image.path is None]
        if missing and len(missing) == len(dataset.images):
            raise SegcliError(f"none of the {len(missing)} label maps has its image in {images_dir} "
                              "(an image named like the mask, any image suffix)", folder)
        if missing:
            warnings.append(f"{len(missing)} label map(s) without an image in {images_dir}, left out: {_some(missing)}")
            dataset.images = [image for image in dataset.images if image.path is not None]
    coco = write_coco(dataset, ledger)
    if not coco["images"]:
        raise SegcliError("no label PNGs in the mask folder", folder)
    return GroundTruth(coco, dataset, folder, warnings, [note])


@dataclass
class Predictions:
    """COCO results plus, when known, the predictions' own image names and category names."""

    results: list[dict]
    path: Path
    image_names: dict[int, str] | None = None
    category_names: dict[int, str] | None = None
    warnings: list[str] = field(default_factory=list)


def load_predictions(path: Path) -> Predictions:
    """COCO results (a list), or a COCO file whose annotations are the predictions."""
    path = Path(path)
    if is_instance_folder(path):
        raise SegcliError(f"an instance-id mask folder ({INSTANCES_FILE}) holds no scores, so it cannot be scored as "
                          "predictions; give it as --gt, or predictions as COCO results", path)
    data = read_json(path)  # a FIFO or a device is refused there, never opened
    warnings = []
    sibling = None
    if isinstance(data, list):
        results = data
        beside = path.parent / "dataset.json"
        if beside.is_file() and beside != path:
            sibling = read_json(beside)
            if not (isinstance(sibling, dict) and isinstance(sibling.get("images"), list)
                    and isinstance(sibling.get("categories"), list)):
                sibling = None
    elif isinstance(data, dict) and isinstance(data.get("annotations"), list):
        results, sibling = data["annotations"], data
        _check_coco_names(data, path)
        unscored = sum(1 for r in results if isinstance(r, dict) and "score" not in r)
        if unscored:
            warnings.append(f"{unscored} prediction(s) without a score: scored 1.0")
            results = [{**r, "score": 1.0} if isinstance(r, dict) and "score" not in r else r for r in results]
    else:
        raise SegcliError("not COCO predictions: expected a list of results or a COCO file with annotations", path)
    for k, result in enumerate(results):
        _check_result(result, k, path)
    image_names = category_names = None
    if sibling is not None:  # checked by _check_coco_names, or a dataset.json beside the results
        image_names = {img["id"]: img["file_name"] for img in sibling["images"]
                       if isinstance(img, dict) and geometry.is_int(img.get("id")) and isinstance(img.get("file_name"), str)}
        categories = sibling.get("categories") if isinstance(sibling.get("categories"), list) else []
        category_names = {c["id"]: c["name"] for c in categories
                          if isinstance(c, dict) and geometry.is_int(c.get("id")) and isinstance(c.get("name"), str)}
    return Predictions(results, path, image_names or None, category_names or None, warnings)


def _check_coco_names(data: dict, path: Path) -> None:
    """A COCO file of predictions: its images and categories (what it adds to a results list:
    the names the join uses) must be lists of objects with an integer id, a string name, and no
    id twice; else the join would silently fall back to ids or drop predictions."""
    for key, name_key, what in (("images", "file_name", "image"), ("categories", "name", "category")):
        entries = data.get(key)
        if entries is None:
            raise SegcliError(f"a COCO file of predictions needs {with_article(repr(key))} list (to join by name); "
                              f"a plain list of results is joined by id", path)
        if not isinstance(entries, list):
            raise SegcliError(f"'{key}' must be a list, got {type(entries).__name__}", path)
        seen = set()
        for k, entry in enumerate(entries):
            if not (isinstance(entry, dict) and geometry.is_int(entry.get("id"))
                    and isinstance(entry.get(name_key), str)):
                raise SegcliError(f"needs an integer 'id' and a string '{name_key}'", path, f"{what} {k}")
            if entry["id"] in seen:
                raise SegcliError(f"id {entry['id']} given twice", path, f"{what} {k}")
            seen.add(entry["id"])


def _check_result(result: object, index: int, path: Path) -> None:
    where = f"prediction {index}"
    if not isinstance(result, dict):
        raise SegcliError("each prediction must be an object", path, where)
    for key in ("image_id", "category_id"):
        if isinstance(result.get(key), bool) or not isinstance(result.get(key), int):
            raise SegcliError(f"{key} must be an integer", path, where)
    score = result.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not np.isfinite(score):
        raise SegcliError("score must be a finite number", path, where)
    segmentation, bbox = result.get("segmentation"), result.get("bbox")
    if segmentation is None and bbox is None:
        raise SegcliError("a prediction needs a segmentation or a bbox", path, where)
    if segmentation is not None and not isinstance(segmentation, (dict, list)):
        raise SegcliError("segmentation must be an RLE object or a polygon list", path, where)
    if isinstance(segmentation, dict):
        problem = geometry.rle_json_problem(segmentation)
        if problem:
            raise SegcliError(problem, path, where)
    if isinstance(segmentation, list):
        for part in segmentation:
            problem = geometry.check_numbers(part, "segmentation polygon")
            if problem or len(part) % 2:
                raise SegcliError(problem or f"segmentation polygon has an odd number of values ({len(part)})",
                                  path, where)
    if bbox is not None:
        problem = geometry.check_numbers(bbox, "bbox")  # also refuses booleans and +-1e308
        if problem is None and (len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0):
            problem = f"bbox must be 4 numbers [x, y, w, h] with w, h >= 0, got {len(bbox)} numbers" if len(
                bbox) != 4 else f"bbox must be [x, y, w, h] with w, h >= 0, got {bbox}"
        if problem:
            raise SegcliError(problem, path, where)


def join_predictions(truth: GroundTruth, predictions: Predictions) -> tuple[list[dict], list[str]]:
    """Predictions re-keyed to the ground truth's image and category ids, and the warnings.

    Images: by file name (then by base name) when the predictions know their names, else by id.
    Categories: by name when the predictions know their names, else by id. Predictions whose
    image or category is unknown to the ground truth are dropped and listed; polygon
    segmentations become RLE at the image's size; an RLE of another size is an error.
    """
    warnings = list(predictions.warnings)
    gt_images = {img["id"]: img for img in truth.coco["images"]}
    gt_categories = {c["id"]: c["name"] for c in truth.coco["categories"]}
    image_map = _image_map(truth, predictions, warnings)
    category_map = _category_map(gt_categories, predictions, warnings)
    joined, unknown_images, unknown_categories = [], Counter(), Counter()
    for k, result in enumerate(predictions.results):
        image_id = image_map.get(result["image_id"]) if image_map is not None else (
            result["image_id"] if result["image_id"] in gt_images else None)
        if image_id is None:
            unknown_images[result["image_id"]] += 1
            continue
        category_id = category_map.get(result["category_id"])
        if category_id is None:
            unknown_categories[result["category_id"]] += 1
            continue
        result = {**result, "image_id": image_id, "category_id": category_id}
        image = gt_images[image_id]
        segmentation = result.get("segmentation")
        if isinstance(segmentation, dict) and list(segmentation["size"]) != [image["height"], image["width"]]:
            raise SegcliError(f"mask size {list(segmentation['size'])} does not match image {image['file_name']!r} "
                              f"of the ground truth ([{image['height']}, {image['width']}])", predictions.path,
                              f"prediction {k}")
        if isinstance(segmentation, list):
            parts = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
            result["segmentation"] = geometry.rle_to_json(  # no part with an area: an empty mask
                geometry.polygons_to_rle(parts, image["height"], image["width"]) if parts else
                geometry.mask_to_rle(np.zeros((image["height"], image["width"]), dtype=bool)))
        elif isinstance(segmentation, dict) and isinstance(segmentation["counts"], list):
            # pycocotools' loadRes reads compressed RLE only
            result["segmentation"] = geometry.rle_to_json(
                geometry.rle_from_json(segmentation, image["height"], image["width"]))
        joined.append(result)
    if unknown_images:
        warnings.append(f"{sum(unknown_images.values())} prediction(s) for {len(unknown_images)} image id(s) not in the "
                        f"ground truth, left out: {_some(sorted(unknown_images))}")
    if unknown_categories:
        names = [f"{predictions.category_names.get(c, c)}" if predictions.category_names else str(c)
                 for c in sorted(unknown_categories, key=str)]
        warnings.append(f"{sum(unknown_categories.values())} prediction(s) of categories absent from the ground truth, "
                        f"left out: {_some(names)}")
    if predictions.results and not joined:
        warnings.append("none of the predictions matched an image and a category of the ground truth: every AP is 0")
    if not predictions.results:
        warnings.append("the prediction file is empty: every AP is 0")
    return joined, warnings


def _image_map(truth: GroundTruth, predictions: Predictions, warnings: list[str]) -> dict | None:
    if predictions.image_names is None:
        return None
    by_name = {img["file_name"]: img["id"] for img in truth.coco["images"]}
    base_ids = {base: by_name[name] for base, name in unique_by(by_name, lambda n: Path(n).name).items()}
    # label maps read without their images are named NAME.png: an image NAME.jpg is theirs
    stem_ids = ({stem: by_name[name] for stem, name in unique_by(by_name, lambda n: Path(n).stem).items()}
                if truth.dataset.source_format == "masks" else {})
    mapping, missing, by_stem_only = {}, [], 0
    for pred_id, name in predictions.image_names.items():
        gt_id = by_name.get(name, base_ids.get(Path(name).name))
        if gt_id is None and Path(name).stem in stem_ids:
            gt_id, by_stem_only = stem_ids[Path(name).stem], by_stem_only + 1
        if gt_id is None:
            missing.append(name)
        else:
            mapping[pred_id] = gt_id
    if by_stem_only:
        warnings.append(f"{by_stem_only} predicted image(s) joined to the label map of the same name without its "
                        "extension (pass --images to join by image file)")
    if missing:
        warnings.append(f"{len(missing)} predicted image(s) not in the ground truth: {_some(missing)}")
    return mapping


def unique_by(names, part) -> dict[str, str]:
    """``part(name) -> name`` for each of ``names`` whose part (its base name, its stem) no other
    name shares: the fallback join of names written with and without a folder."""
    counts = Counter(part(name) for name in names)
    return {part(name): name for name in names if counts[part(name)] == 1}


def _category_map(gt_categories: dict[int, str], predictions: Predictions, warnings: list[str]) -> dict:
    if predictions.category_names is None:
        return {i: i for i in gt_categories}
    gt_ids, gt_names = list(gt_categories), list(gt_categories.values())
    found = match_class_names(list(predictions.category_names.values()), gt_names)
    mapping, moved = {}, []
    for (pred_id, name), position in zip(predictions.category_names.items(), found):
        gt_id = None if position is None else gt_ids[position]
        if gt_id is not None:
            mapping[pred_id] = gt_id
            if gt_id != pred_id:
                moved.append(f"{name!r} {pred_id}->{gt_id}")
    if moved:
        warnings.append(f"category ids differ; matched by name (prediction id -> ground-truth id): {', '.join(moved)}")
    return mapping


def _some(items: list, count: int = 5) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:count]) + (f" and {len(items) - count} more" if len(items) > count else "")


# --- semantic --------------------------------------------------------------------------------


@dataclass
class LabelMaps:
    """Per-image label maps by relative file stem, with class names by value (0 background)."""

    names: list[str]
    maps: dict[str, Path | np.ndarray]
    source: Path
    binary_255: bool = False  # a one-class 0/255 mask set: 255 means the class, not "ignore"
    classes_from: str = ""  # the classes file, "--classes", "the model"... (for the mapping note)

    def find(self, key: str) -> str | None:
        """The key of ``key``'s map: the same relative stem, else the same base name if unique."""
        if key in self.maps:
            return key
        if not hasattr(self, "_by_base"):
            self._by_base = unique_by(self.maps, lambda k: Path(k).name)
        return self._by_base.get(Path(key).name)

    def read(self, key: str) -> np.ndarray:
        item = self.maps[key]
        label_map = item if isinstance(item, np.ndarray) else _read_map(item)
        if self.binary_255:
            label_map = np.where(label_map == 255, 1, label_map)
        return label_map


def _read_map(path: Path) -> np.ndarray:
    try:
        return read_label_map(path)  # refuses FIFOs and maps over the pixel limit before decoding
    except (OSError, ValueError) as exc:
        raise SegcliError(f"unreadable label map: {exc}", path) from None


def is_mask_folder(path: Path) -> bool:
    """A folder of label PNGs (and no annotation file)."""
    path = Path(path)
    return path.is_dir() and any(path.rglob("*.png")) and not any(
        p.suffix.lower() in (".json", ".csv") and not p.name.endswith(".report.json") for p in path.iterdir())


def read_mask_maps(folder: Path, mask_classes: MaskClasses | None = None) -> LabelMaps:
    """Label PNGs under ``folder`` (keys: relative path without suffix) and its class names
    (its classes file, else as ``mask_classes`` says)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SegcliError("mask folder not found", folder)
    names, source = (mask_classes or MaskClasses()).names_for(folder)
    maps = {p.relative_to(folder).with_suffix("").as_posix(): p
            for p in files_inside(folder, sorted(folder.rglob("*.png"))) if not p.name.startswith(".")}
    if not maps:
        raise SegcliError("no label PNGs in the mask folder", folder)
    return LabelMaps(names, maps, folder, binary_255=_looks_binary_255(names, maps), classes_from=source)


def _looks_binary_255(names: list[str], maps: dict[str, Path]) -> bool:
    """One object class and masks holding only 0 and 255 (MMSegmentation's classic trap)."""
    if len(names) != 2:
        return False
    sample = [_read_map(path) for path in list(maps.values())[:8]]
    values = set(np.unique(np.concatenate([m.ravel() for m in sample])).tolist()) if sample else set()
    return 255 in values and values <= {0, 255}


def ground_truth_maps(truth: GroundTruth) -> LabelMaps:
    """Label maps rendered from annotation ground truth (objects largest first, crowd = ignore)."""
    names = ["_background_"] + truth.names
    index = {name: i for i, name in enumerate(names) if i}
    ledger = Ledger(str(truth.annotation))
    maps = {}
    for image in truth.dataset.images:
        if image.width is None:
            continue
        objects = rasterize_image(image, ledger)
        dtype = np.uint8 if len(names) < IGNORE_INDEX else np.uint16
        maps[str(Path(image.file_name).with_suffix("").as_posix())] = render_label_map(image, objects, index, dtype)
    return LabelMaps(names, maps, truth.annotation)


def class_value_map(predicted: list[str], truth: list[str], warnings: list[str]) -> np.ndarray:
    """Lookup table: predicted label value -> ground-truth value, matched by class name (0 stays
    background). Predicted classes absent from the ground truth map to background, with a warning."""
    found = match_class_names(predicted, truth)
    table = np.zeros(max(len(predicted), 256), dtype=np.int64)
    absent, moved = [], []
    for value, (name, target) in enumerate(zip(predicted, found)):
        if value == 0:
            continue
        if target is None:
            absent.append(name)
        else:
            table[value] = target
            if target != value:
                moved.append(f"{name!r} {value}->{target}")
    if moved:
        warnings.append(f"class values differ; matched by name (prediction -> ground truth): {', '.join(moved)}")
    if absent:
        warnings.append(f"predicted classes absent from the ground truth, counted as background: {_some(absent)}")
    return table

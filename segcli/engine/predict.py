"""``segcli predict folder|image``: label images with a checkpoint and write every output.

Outputs in a new folder (``runs/predict/exp``, ``exp2``, ... unless ``--out``): ``overlays/``,
``predictions.json`` and ``dataset.json`` (COCO), ``via_project.json`` (VIA 2 to correct), and for
semantic models ``masks/`` (label PNGs + classes.txt), plus ``summary.json``. Overlays and masks
are written as images are done; the JSON files atomically at the end.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segcli.engine.overlay import draw_instances, draw_semantic
from segcli.engine.predict_outputs import (JOURNAL, line_to_record, prediction_record, predictions_dataset,
                                           read_journal, record_to_line, write_label_map, write_overlay,
                                           write_prediction_files)
from segcli.engine.predictor import Predictor, SkippedImage, decode_image, list_images, relative_name
from segcli.errors import SegcliError
from segcli.fileio import write_json_atomic

FORMATS = ("coco", "via", "masks", "all")


@dataclass
class PredictOptions:
    """Options of ``segcli predict`` (see its --help)."""

    weights: Path
    out: Path | None = None
    conf: float = 0.5
    iou: float | None = None
    max_det: int = 100
    batch: int = 4
    workers: int = 2
    device: str = "auto"
    imgsz: int | None = None
    recursive: bool = False
    classes: list[str] | None = None
    overlays: bool = True
    alpha: float = 0.45
    formats: set[str] = field(default_factory=lambda: {"coco", "via", "masks"})
    polygons: bool = False
    review_below: float = 0.7
    resume: bool = False


def new_output_dir(out: Path | None, resume: bool = False) -> Path:
    """``out`` if it does not exist yet or is empty (or, resuming, holds an earlier run); else
    refuse; default runs/predict/exp, exp2, ..."""
    if resume:
        if out is None or not (Path(out) / JOURNAL).is_file():
            raise SegcliError("--resume needs --out pointing at an earlier predict output (with results.jsonl)",
                              out)
        return Path(out)
    if out is not None:
        if Path(out).exists() and any(Path(out).iterdir()):
            raise SegcliError("output folder exists and is not empty; choose another --out, or --resume it", out)
        Path(out).mkdir(parents=True, exist_ok=True)
        return Path(out)
    base, number = Path("runs") / "predict", 1
    while (folder := base / ("exp" if number == 1 else f"exp{number}")).exists():
        number += 1
    folder.mkdir(parents=True)
    return folder


def predict_images(paths: list[Path], root: Path, options: PredictOptions,
                   on_event: Callable[..., None] = lambda *a, **k: None) -> dict:
    """Predict ``paths`` (relative names from ``root``) and write the outputs; returns the summary.

    Image ids are positions in the sorted list (stable across runs, so ``segcli eval`` can join
    them with ground truth); with ``options.resume`` images already in the output's journal are
    not predicted again.
    """
    if not paths:
        raise SegcliError("no images found (jpg, png, bmp, tif, webp); use --recursive for sub-folders", root)
    predictor = Predictor(options.weights, options.conf, options.max_det, options.device, options.imgsz, options.iou)
    names = [c["name"] for c in predictor.categories]
    keep = _class_filter(options.classes, names)
    out = new_output_dir(options.out, options.resume)
    lines = read_journal(out / JOURNAL) if options.resume else {}
    ids = {relative_name(path, root): number for number, path in enumerate(paths, start=1)}
    todo = [path for path in paths if relative_name(path, root) not in lines]
    start = time.perf_counter()
    on_event("start", total=len(todo), out=out, task=predictor.task, resumed=len(paths) - len(todo))
    writer = BackgroundWriter(lambda result: _write_image_outputs(result, out, names, options, predictor.task))
    try:
        with open(out / JOURNAL, "a", encoding="utf-8") as journal:
            for done, result in enumerate(predictor.predict(todo, root, options.batch, options.workers), start=1):
                if isinstance(result, SkippedImage):
                    line = {"file_name": result.file_name, "skipped": result.reason}
                    on_event("warning", text=f"skipped {result.file_name}: {result.reason}")
                else:
                    _filter_classes(result, keep)
                    line = record_to_line(prediction_record(result, ids[result.file_name], names, options.review_below))
                    writer.submit(result)
                journal.write(json.dumps(line) + "\n")
                journal.flush()
                lines[line["file_name"]] = line
                on_event("progress", done=done, total=len(todo), images_per_s=done / (time.perf_counter() - start))
    finally:
        writer.close()
    elapsed = time.perf_counter() - start
    ordered = [lines[name] for name in ids if name in lines]
    records = [line_to_record(line, ids[line["file_name"]], root) for line in ordered if "skipped" not in line]
    skipped = [{"image": line["file_name"], "reason": line["skipped"]} for line in ordered if "skipped" in line]
    counts = Counter(a.category for record in records for a in record.annotations)
    dataset = predictions_dataset(records, predictor.categories, root)
    formats = {"coco", "via", "masks"} if "all" in options.formats else set(options.formats)
    written = write_prediction_files(dataset, out, options.polygons, formats)
    if predictor.task == "semantic" and "masks" in formats:
        (out / "masks" / "classes.txt").write_text("\n".join(["_background_"] + names) + "\n", encoding="utf-8")
    new = len(todo) - sum(1 for path in todo if "skipped" in lines.get(relative_name(path, root), {}))
    summary = {"out": str(out), "weights": str(options.weights), "task": predictor.task, "images": len(paths),
               "done": len(records), "predicted_now": new, "skipped": skipped, "instances_per_class": dict(counts),
               "seconds": elapsed, "images_per_s": new / elapsed if elapsed else 0.0,
               "files": {k: str(v) for k, v in written.items()}}
    write_json_atomic(out / "summary.json", summary, overwrite=True, indent=1)
    on_event("end", **summary)
    return summary


class BackgroundWriter:
    """Runs ``write(item)`` on a thread so drawing and writing overlap the model (cv2 releases
    the GIL); a bounded queue keeps memory flat, and a failure is raised in the caller."""

    def __init__(self, write: Callable, depth: int = 8):
        self.write, self.error = write, None
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.write(item)
                except BaseException as exc:  # handed to the main thread in submit/close
                    self.error = exc

    def submit(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _class_filter(classes: list[str] | None, names: list[str]) -> set[int] | None:
    if not classes:
        return None
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise SegcliError(f"--classes {', '.join(unknown)}: not in this model (it knows {', '.join(names)})")
    return {names.index(c) + 1 for c in classes}


def _filter_classes(result, keep: set[int] | None) -> None:
    if keep is None:
        return
    if result.rles is not None:
        chosen = [i for i, label in enumerate(result.labels) if int(label) in keep]
        result.rles = [result.rles[i] for i in chosen]
        result.boxes_xyxy, result.labels, result.scores = (result.boxes_xyxy[chosen], result.labels[chosen],
                                                            result.scores[chosen])
    elif result.label_map is not None:
        result.label_map[~np.isin(result.label_map, list(keep))] = 0


def _write_image_outputs(result, out: Path, names: list[str], options: PredictOptions, task: str) -> None:
    stem = Path(result.file_name).with_suffix("")
    if task == "semantic" and ("masks" in options.formats or "all" in options.formats):
        write_label_map(result.label_map, out / "masks" / stem.with_suffix(".png"))
    if not options.overlays:
        return
    rgb = decode_image(result.path)
    if rgb is None or rgb.shape[:2] != (result.height, result.width):
        return
    if task == "instance":
        picture = draw_instances(rgb, result.rles, result.boxes_xyxy, result.labels, result.scores, names, options.alpha)
    else:
        picture = draw_semantic(rgb, result.label_map, names, options.alpha)
    write_overlay(picture, out / "overlays" / stem.with_suffix(".jpg"))


def predict_folder(images: Path, options: PredictOptions, on_event: Callable[..., None] = lambda *a, **k: None) -> dict:
    """Predict every image in a folder (``options.recursive``: and its sub-folders)."""
    return predict_images(list_images(images, options.recursive), Path(images), options, on_event)

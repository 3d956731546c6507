"""One shard's images of ``segcli predict``, predicted and finished: ``ImageFinisher.run`` takes a
Predictor's results and finishes each on a writer thread (class filter, label map, overlay, VIA
outlines, then its journal line, written last: a line in the journal means that image's outputs
are complete), timing each stage (decode, model, write) for the summary."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from segcli.engine.core.inference import Predictor, SkippedImage
from segcli.engine.core.interrupt import stop_requested
from segcli.engine.core.overlay import draw_instances, draw_semantic
from segcli.engine.core.results import prediction_record
from segcli.engine.predict.journal import open_journal, record_to_line
from segcli.engine.predict.options import PredictOptions
from segcli.engine.predict.outputs import mask_outline, write_label_map, write_overlay
from segcli.formats.images import decode_image


STAGES = ("decode", "model", "write")
"""The stages timed per image (see the module docstring)."""


class ImageFinisher:
    """One process's share of the images: ``run`` predicts them, and each is finished on the
    writer thread (``__call__``): class filter, label map, overlay, VIA outlines, then its
    journal line (written last, so a line in the journal means that image's outputs are complete).
    ``stage_seconds`` sums the time of each stage over the ``timed`` images predicted."""

    def __init__(self, out: Path, names: list[str], options: PredictOptions, task: str, formats: set[str],
                 keep: set[int] | None, ids: dict[str, int], lines: dict[str, dict], stems: dict[str, str]):
        self.out, self.names, self.options, self.task, self.formats = out, names, options, task, formats
        self.keep, self.ids, self.lines, self.stems = keep, ids, lines, stems
        self.journal = None
        self.finished = 0  # images of ``run`` written and journalled
        self.stage_seconds = dict.fromkeys(STAGES, 0.0)
        self.timed = 0
        self.on_progress: Callable[[int], None] = lambda finished: None

    def for_shard(self, workers: int) -> ImageFinisher:
        """A fresh finisher of the same outputs for one shard: its own lines, counts and times,
        decoding on ``workers`` worker processes."""
        return ImageFinisher(self.out, self.names, replace(self.options, workers=workers), self.task, self.formats,
                             self.keep, self.ids, {}, self.stems)

    def absorb(self, shard: ImageFinisher) -> None:
        """Take in what a shard's finisher did in this process: its lines and its times."""
        self.lines.update(shard.lines)
        self.finished += shard.finished
        self.add_times(shard.stage_seconds, shard.timed)

    def run(self, predictor: Predictor, paths: list[Path], root: Path, journal_path: Path,
            on_progress: Callable[[int], None], emit: Callable[..., None]) -> None:
        """Predict and finish ``paths``; on a signal, stop after finishing the images predicted.
        ``on_progress(finished)`` is called (on the writer thread) each time an image's outputs
        and journal line are written: progress counts what is kept, not what is queued."""
        self.finished, self.on_progress = 0, on_progress
        with open_journal(journal_path) as self.journal:
            writer = BackgroundWriter(self)
            results = predictor.predict(paths, root, self.options.batch, self.options.workers)
            try:
                for result in results:
                    if isinstance(result, SkippedImage):
                        emit("warning", text=f"skipped {result.file_name}: {result.reason}")
                    writer.submit(result)
                    if stop_requested():
                        break
            finally:
                results.close()  # its DataLoader workers shut down
                writer.close()

    def add_times(self, seconds: dict[str, float], images: int) -> None:
        for stage in STAGES:
            self.stage_seconds[stage] += seconds.get(stage, 0.0)
        self.timed += images

    def __call__(self, result) -> None:
        start = time.perf_counter()
        self._finish(result)
        if not isinstance(result, SkippedImage):  # a skipped image's time is not a predicted image's
            self.add_times({**result.seconds, "write": time.perf_counter() - start}, 1)
        self.finished += 1
        self.on_progress(self.finished)

    def _finish(self, result) -> None:
        if isinstance(result, SkippedImage):
            line = {"file_name": result.file_name, "skipped": result.reason}
        else:
            filter_classes(result, self.keep)
            record = prediction_record(result, self.ids[result.file_name], self.names, self.options.review_below)
            line = record_to_line(record)
            if self.task == "instance" and ("via" in self.formats or self.options.polygons):
                for item, annotation in zip(line["annotations"], record.annotations):
                    item["outline"] = mask_outline(annotation.rle)
            write_image_outputs(result, self.out, self.names, self.options, self.task, self.stems[result.file_name])
        self.journal.write(json.dumps(line) + "\n")
        self.journal.flush()
        self.lines[line["file_name"]] = line


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


def filter_classes(result, keep: set[int] | None) -> None:
    if keep is None:
        return
    if result.rles is not None:
        chosen = [i for i, label in enumerate(result.labels) if int(label) in keep]
        result.rles = [result.rles[i] for i in chosen]
        result.boxes_xyxy, result.labels, result.scores = (result.boxes_xyxy[chosen], result.labels[chosen],
                                                            result.scores[chosen])
    elif result.label_map is not None:
        result.label_map[~np.isin(result.label_map, list(keep))] = 0


def write_image_outputs(result, out: Path, names: list[str], options: PredictOptions, task: str, stem: str) -> None:
    """The label map and overlay of one image, named ``stem`` (unique: see ``output_stems``)."""
    if task == "semantic" and ("masks" in options.formats or "all" in options.formats):
        write_label_map(result.label_map, out / "masks" / f"{stem}.png")
    if not options.overlays:
        return
    rgb = np.ascontiguousarray(result.pixels) if result.pixels is not None else decode_image(result.path)
    if rgb is None or rgb.shape[:2] != (result.height, result.width):
        return
    if task == "instance":
        picture = draw_instances(rgb, result.rles, result.boxes_xyxy, result.labels, result.scores, names, options.alpha)
    else:
        picture = draw_semantic(rgb, result.label_map, names, options.alpha)
    write_overlay(picture, out / "overlays" / f"{stem}.jpg")

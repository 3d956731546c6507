"""``segcli predict folder|image``: label images with a checkpoint and write every output.

Outputs in a new folder (``runs/predict/exp``, ``exp2``, ... unless ``--out``): ``overlays/``,
``predictions.json`` and ``dataset.json`` (COCO), ``via_project.json`` (VIA 2 to correct), and for
semantic models ``masks/`` (label PNGs + classes.txt), plus ``summary.json``. Overlays and masks
are written as images are done; the JSON files together (all or none) at the end. Output names
are unique: the path relative to the images' common folder, with the extension kept where two
images share a stem (photo.jpg, photo.png -> overlays/photo.jpg.jpg, overlays/photo.png.jpg).

Inputs are never written: ``--out`` may not be a folder of input images, hold one, or (with
``--recursive``) lie inside the images folder. A run holds an exclusive lock on its output folder
(``.segcli-predict``, which also marks the folder as segcli's for ``--resume``): a second run
into it is refused.

The summary gives the time per image of each stage, as measured where it runs: decode (in the
DataLoader workers), model (forward pass and the masks' scaling and encoding) and write (class
filter, overlay, label map, outlines and journal line, on the writer thread). The stages overlap
(workers decode ahead, the writer thread runs beside the model), so their sum can exceed the wall
time per image.

Interruptions: SIGINT (Ctrl-C) or SIGTERM stop the run after the images already predicted are
written (and journalled); the forked ``--procs`` processes stop the same way, and die with their
parent. ``Interrupted`` is raised (the CLI exits 130/143) and ``--resume`` completes the run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from segcli.engine.core.overlay import draw_instances, draw_semantic
from segcli.engine.core.distributed import all_max, destroy, init_process_group
from segcli.engine.core.interrupt import Interrupted, interruptible, quiet_child, saving, signal_name, stop_requested
from segcli.engine.core.run_folders import FolderLock, create_next_exp_dir
from segcli.engine.predict.options import PredictOptions
from segcli.engine.predict.outputs import (JOURNAL, is_utf8_name, line_to_record, mask_outline, merge_journals,
                                           open_journal, output_stems, prediction_record, predictions_dataset,
                                           printable_name, read_journal, record_to_line, write_label_map,
                                           write_overlay, write_prediction_files)
from segcli.engine.core.inference import Predictor, SkippedImage, decode_image, list_images, relative_name
from segcli.errors import SegcliError
from segcli.fileio import remove_temporaries, write_bytes_atomic, write_json_atomic
from segcli.formats.masks import check_class_names, classes_text

FORMATS = ("coco", "via", "masks", "all")


MARKER = ".segcli-predict"
"""A file every predict run writes into its output folder first and holds locked while it runs:
a second run into the folder is refused, and --resume cleans up only where it finds this marker
with the journal (a folder segcli predict wrote), never in a folder of the user's."""
_MARKER_TEXT = "segcli predict output folder (locked while a run writes to it)\n"
_BUSY = "another segcli predict run is writing to this folder; wait for it to end, or choose another --out"


def check_output_dir(out: Path | None, resume: bool, paths: list[Path], root: Path, recursive: bool) -> None:
    """Refuse, before any work and writing nothing, an ``--out`` predict must not write to: a
    file, a folder of input images or one holding them (or inside ``root`` read with
    ``recursive``: outputs would be read back as inputs), a non-empty folder (unless resumed),
    or, for ``resume``, a folder no segcli predict run wrote."""
    if out is None:
        if resume:
            raise SegcliError("--resume needs --out pointing at an earlier predict output (with results.jsonl)")
        default = Path("runs") / "predict"  # a new exp folder there is among no inputs, unless read back:
        if recursive and default.resolve().is_relative_to(Path(root).resolve()):
            raise SegcliError(f"the default output folder {default} is inside the images folder read with "
                              "--recursive (its outputs would be read back as images); choose an --out", root)
        return
    out = Path(out)
    existing = next(folder for folder in (out, *out.parents) if os.path.lexists(folder) or folder == Path("."))
    if existing.exists() and not existing.is_dir():
        raise SegcliError("is a file; --out must be a folder" if existing == out else
                          f"is a file, so --out {out} cannot be a folder inside it", existing)
    _refuse_out_among_inputs(out, paths, root, recursive)
    if resume:
        if not out.is_dir() or not any(out.glob("results*.jsonl")) or not (out / MARKER).is_file():
            raise SegcliError(f"--resume needs --out pointing at an earlier segcli predict output (with results.jsonl "
                              f"and {MARKER})", out)
    elif out.is_dir() and any(out.iterdir()):
        raise SegcliError("output folder exists and is not empty; choose another --out, or --resume it", out)


def _refuse_out_among_inputs(out: Path, paths: list[Path], root: Path, recursive: bool) -> None:
    """Predict never writes among its inputs: ``out`` may not be a folder holding input images,
    nor hold one, nor (with ``recursive``) lie inside ``root``."""
    target = out.resolve()
    folders = {folder.resolve() for folder in {Path(path).parent for path in paths} | {Path(root)}}
    for folder in sorted(folders):
        if target == folder:
            raise SegcliError("--out is the folder of the input images: predict never writes among its inputs; "
                              "choose another --out", out)
        if folder.is_relative_to(target):
            raise SegcliError(f"--out holds input images ({folder}): predict never writes among its inputs; "
                              "choose another --out", out)
    if recursive and target.is_relative_to(Path(root).resolve()):
        raise SegcliError("--out is inside the images folder read with --recursive (its outputs would be read back "
                          "as images); choose another --out", out)


def claim_output_dir(out: Path | None, resume: bool) -> tuple[Path, FolderLock]:
    """The output folder, created if needed, and the lock this run holds on it until it ends:
    ``out`` (empty, or for ``resume`` an earlier output), default runs/predict/exp, exp2, ...

    Raises:
        SegcliError: another run holds the folder, or it is not empty (and not resumed).
    """
    if out is None:
        folder = create_next_exp_dir(Path("runs") / "predict")
        return folder, FolderLock(folder, MARKER, _MARKER_TEXT, _BUSY)
    out = Path(out)
    if resume:
        return out, FolderLock(out, MARKER, _MARKER_TEXT, _BUSY, create=False)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegcliError(f"cannot create the output folder: {exc.strerror}", out) from None
    lock = FolderLock(out, MARKER, _MARKER_TEXT, _BUSY)
    if any(path.name != MARKER for path in out.iterdir()):  # filled since it was checked
        lock.release()
        raise SegcliError("output folder exists and is not empty; choose another --out, or --resume it", out)
    return out, lock


def images_under_one_root(paths: list[Path], root: Path) -> tuple[list[Path], Path]:
    """``paths`` (each once) and a folder holding them all that names them in the outputs:
    ``root`` when it holds them all, else their deepest common folder (with the paths made
    absolute), so that cam1/frame.jpg and cam2/frame.jpg stay two names."""
    try:
        for path in paths:
            Path(path).relative_to(root)
        return list(dict.fromkeys(Path(path) for path in paths)), Path(root)
    except ValueError:
        absolute = list(dict.fromkeys(Path(os.path.abspath(path)) for path in paths))
        return absolute, Path(os.path.commonpath([path.parent for path in absolute]))


def predict_images(paths: list[Path], root: Path, options: PredictOptions,
                   on_event: Callable[..., None] = lambda *a, **k: None) -> dict:
    """Predict ``paths`` (relative names from ``root``) and write the outputs; returns the summary.

    Image ids are positions in the sorted list (stable across runs, so ``segcli eval`` can join
    them with ground truth); with ``options.resume`` images already in the output's journal are
    not predicted again. Under ``torchrun`` each process takes every N-th image and keeps its own
    journal; rank 0 merges them and writes the files.

    Raises:
        Interrupted: SIGINT/SIGTERM arrived (see the module docstring).
    """
    where: dict = {}

    def stopped_at_once() -> str:
        out = where.get("out")
        return "stopped at once; the images finished so far are kept" + (
            f": run the same command with --out {out} --resume to finish" if out else "")

    with interruptible("finishing the images in progress, then stopping (once more: stop at once)",
                       int(os.environ.get("RANK", "0")) == 0, int(os.environ.get("WORLD_SIZE", "1")) > 1,
                       stopped_at_once):
        try:
            return _predict_images(paths, root, options, on_event, where)
        finally:
            if "lock" in where:  # the OS drops it anyway if this process dies
                where["lock"].release()


def _predict_images(paths: list[Path], root: Path, options: PredictOptions, on_event: Callable[..., None],
                    where: dict) -> dict:
    if not paths:
        raise SegcliError("no images found (jpg, png, bmp, tif, webp); use --recursive for sub-folders", root)
    paths, root = images_under_one_root(paths, root)
    if int(os.environ.get("RANK", "0")) == 0:  # before loading the model; the folder is claimed below
        check_output_dir(options.out, options.resume, paths, root, options.recursive)
    # JSON is UTF-8: a file name holding other bytes (Linux allows any) cannot be written there
    unnamable = {path for path in paths if not is_utf8_name(relative_name(path, root))}
    predictor = Predictor(options.weights, options.conf, options.max_det, options.device, options.imgsz, options.iou,
                          options.tile)
    group = init_process_group(predictor.device)
    emit = on_event if group.is_main else (lambda *a, **k: None)
    names = [c["name"] for c in predictor.categories]
    if predictor.task == "semantic":
        check_class_names(names, options.weights)  # masks/classes.txt must hold them: refuse before any work
    keep = _class_filter(options.classes, names)
    out = where["out"] = _shared_output_dir(group, options, where)
    if options.resume and group.is_main:
        remove_temporaries(out, recursive=True)  # what a kill -9 left of segcli's atomic writes
    lines = read_journal(out) if options.resume else {}
    done_before = set(lines)
    ids = {relative_name(path, root): number for number, path in enumerate(paths, start=1) if path not in unnamable}
    todo = [path for path in paths if path not in unnamable and relative_name(path, root) not in lines]
    todo = todo[group.rank::group.world_size]
    formats = {"coco", "via", "masks"} if "all" in options.formats else set(options.formats)
    processes = local_processes(options.procs, predictor.device, len(todo), group)
    start = time.perf_counter()
    emit("start", total=len(todo), out=out, task=predictor.task, resumed=len(lines), processes=processes)
    not_utf8 = [{"image": printable_name(relative_name(path, root)),
                 "reason": "file name is not UTF-8, which the JSON outputs cannot hold; rename the file"}
                for path in paths if path in unnamable]
    for item in not_utf8:
        emit("warning", text=f"skipped {item['image']}: {item['reason']}")
    journal_path = out / (JOURNAL if group.is_main else f"results.rank{group.rank}.jsonl")
    finisher = ImageFinisher(out, names, options, predictor.task, formats, keep, ids, lines, output_stems(list(ids)))
    if processes > 1:
        _predict_in_processes(predictor, finisher, todo, root, processes, emit, start)
    else:
        finisher.run(predictor, todo, root, journal_path, lambda done: emit(
            "progress", done=done, total=len(todo), images_per_s=done / (time.perf_counter() - start)), emit)
    elapsed = time.perf_counter() - start
    # under torchrun every rank stops if a signal reached any (a barrier as well: a rank done
    # first waits here for the others' journals, and is not left waiting for one that stopped)
    signum = all_max(group, stop_requested() or 0)
    # the ranks are done with each other (only files from here on); a rank that leaves without
    # this could abort in gloo's teardown ("terminate called without an active exception")
    destroy(group)
    if signum:
        raise Interrupted(signum, _interrupted_message(signum, out, len(paths)) if group.is_main else "")
    if not group.is_main:
        return {}
    lines.update(merge_journals(out))
    ordered = [lines[name] for name in ids if name in lines]
    records = [line_to_record(line, ids[line["file_name"]], root) for line in ordered if "skipped" not in line]
    outlines = {(ids[line["file_name"]], k): a["outline"] for line in ordered if "skipped" not in line
                for k, a in enumerate(line["annotations"]) if "outline" in a}
    skipped = [{"image": line["file_name"], "reason": line["skipped"]} for line in ordered if "skipped" in line]
    skipped += not_utf8
    counts = Counter(a.category for record in records for a in record.annotations)
    dataset = predictions_dataset(records, predictor.categories, root)
    written = write_prediction_files(dataset, out, options.polygons, formats, outlines)
    if predictor.task == "semantic" and "masks" in formats:
        write_bytes_atomic(out / "masks" / "classes.txt", classes_text(names).encode())
    new = sum(1 for name, line in lines.items() if name not in done_before and "skipped" not in line)
    stage_seconds, timed = finisher.stage_seconds, finisher.timed
    # paths as printable text: a folder name need not be UTF-8, summary.json must be
    summary = {"out": printable_name(str(out)), "weights": printable_name(str(options.weights)),
               "task": predictor.task, "images": len(paths), "done": len(records), "predicted_now": new,
               "skipped": skipped, "instances_per_class": dict(counts), "seconds": elapsed,
               "images_per_s": new / elapsed if elapsed else 0.0, "processes": max(group.world_size, processes),
               "ms_per_image": {stage: 1000 * total / timed if timed else 0.0 for stage, total in stage_seconds.items()},
               "files": {k: printable_name(str(v)) for k, v in written.items()}}
    write_json_atomic(out / "summary.json", summary, overwrite=True, indent=1)
    emit("end", **summary)
    return summary


def _interrupted_message(signum: int, out: Path, total: int) -> str:
    done = len(read_journal(out))
    return (f"{signal_name(signum)}: {done} of {total} images done and kept in {out} (results.jsonl); run the same "
            f"command with --out {out} --resume to finish")


def _shared_output_dir(group, options: PredictOptions, where: dict) -> Path:
    """The output folder, claimed by rank 0 (its lock kept in ``where``) and told to the others."""
    folder = [None]
    if group.is_main:
        out, where["lock"] = claim_output_dir(options.out, options.resume)
        folder = [str(out)]
    if group.distributed:
        dist.broadcast_object_list(folder, src=0)
    return Path(folder[0])


MIN_IMAGES_PER_PROCESS = 16
_FORKED: tuple | None = None  # what forked prediction processes inherit (the loaded model among it)


def local_processes(requested: int, device, images: int, group) -> int:
    """How many local prediction processes to run: ``requested``, or with 0 (auto) one per CPU
    core (at most 4) on the CPU, where Mask R-CNN runs faster as N one-thread processes than as
    one N-thread process; 1 on a GPU, under torchrun, or for a handful of images."""
    if group.distributed or device.type != "cpu" or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if requested == 0:
        requested = min(4, os.cpu_count() or 1)
    return max(1, min(requested, images // MIN_IMAGES_PER_PROCESS))


def _predict_in_processes(predictor: Predictor, finisher: ImageFinisher, todo: list[Path], root: Path, processes: int,
                          emit: Callable[..., None], start: float) -> None:
    """Every ``processes``-th image to each of ``processes`` one-thread processes (this one is
    the first); each keeps its own journal, merged afterwards like torchrun's. The others are
    forked, so they start at once with the model already loaded (copy-on-write)."""
    global _FORKED
    context = multiprocessing.get_context("fork")
    # decoding is cheap next to a one-thread model
    finisher.options = replace(finisher.options, workers=min(finisher.options.workers, 1))
    counter = context.Value("i", 0)
    stage_totals = context.Array("d", len(STAGES) + 1)  # the others' stage seconds and images timed
    errors = context.SimpleQueue()  # a failed process's one-line reason, for this one to report
    _FORKED = (predictor, finisher, todo, processes, root, counter, errors, stage_totals)
    children = [context.Process(target=_shard_process, args=(rank, os.getpid())) for rank in range(1, processes)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for child in children:
            child.start()
        own = todo[0::processes]

        def progress(done: int) -> None:
            total_done = done + counter.value
            emit("progress", done=total_done, total=len(todo), images_per_s=total_done / (time.perf_counter() - start))

        finisher.run(predictor, own, root, finisher.out / JOURNAL, progress, emit)
        told = False
        for child in children:
            while child.is_alive():
                if stop_requested() and not told:  # they stop after the image in hand, like this one
                    told = _tell(children, stop_requested())
                child.join(timeout=0.5)
                progress(finisher.finished)
        finisher.add_times(dict(zip(STAGES, stage_totals[:len(STAGES)])), int(stage_totals[len(STAGES)]))
        if stop_requested():
            return
        failed = [rank for rank, child in enumerate(children, start=1) if child.exitcode != 0]
        if failed:
            if not errors.empty():
                raise SegcliError(errors.get())
            raise SegcliError(f"prediction process {failed[0]} failed (exit code {children[failed[0] - 1].exitcode}); "
                              "finished images are kept: run again with --resume", finisher.out)
    finally:
        _FORKED = None
        torch.set_num_threads(threads)
        for child in children:
            if child.is_alive():  # SIGTERM: they finish the image in hand and stop
                child.terminate()
                with saving():
                    child.join()


def _tell(children: list, signum: int) -> bool:
    for child in children:
        if child.is_alive():
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass
    return True


def _die_with_parent(parent: int) -> None:
    """Linux: have this process sent SIGTERM when its parent dies (a kill -9 of the parent then
    leaves no process predicting on)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _shard_process(rank: int, parent: int) -> None:
    """A forked prediction process: the inherited model on one thread, its own journal. It
    inherited the parent's signal handler: a signal makes it stop after the image in hand."""
    quiet_child()
    _die_with_parent(parent)
    predictor, finisher, todo, processes, root, counter, errors, stage_totals = _FORKED
    torch.set_num_threads(1)
    finisher.lines = {}  # this process's lines reach the parent through its journal

    def progress(finished: int) -> None:  # called once per image journalled
        with counter.get_lock():
            counter.value += 1

    try:
        finisher.run(predictor, todo[rank::processes], root, finisher.out / f"results.rank{rank}.jsonl", progress,
                     lambda *a, **k: None)
        with stage_totals.get_lock():
            for k, stage in enumerate(STAGES):
                stage_totals[k] += finisher.stage_seconds[stage]
            stage_totals[len(STAGES)] += finisher.timed
    except SegcliError as exc:  # the parent reports it in one line (not as this process's traceback)
        errors.put(str(exc))
        raise SystemExit(2) from None


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
            _filter_classes(result, self.keep)
            record = prediction_record(result, self.ids[result.file_name], self.names, self.options.review_below)
            line = record_to_line(record)
            if self.task == "instance" and ("via" in self.formats or self.options.polygons):
                for item, annotation in zip(line["annotations"], record.annotations):
                    item["outline"] = mask_outline(annotation.rle)
            _write_image_outputs(result, self.out, self.names, self.options, self.task, self.stems[result.file_name])
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


def _class_filter(classes: list[str] | None, names: list[str]) -> set[int] | None:
    """The category ids (1..C, as in predictions.json) ``--classes`` keeps: each entry a class
    name, or an id (a name wins where a class is named by digits)."""
    if not classes:
        return None
    ids = {name: number for number, name in enumerate(names, start=1)}
    ids.update((str(number), number) for number in range(1, len(names) + 1) if str(number) not in ids)
    unknown = [c for c in classes if c not in ids]
    if unknown:
        known = ", ".join(f"{number} {name}" for number, name in enumerate(names, start=1))
        raise SegcliError(f"--classes {', '.join(unknown)}: not in this model; give class names or category ids "
                          f"(as in predictions.json): {known}")
    return {ids[c] for c in classes}


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


def _write_image_outputs(result, out: Path, names: list[str], options: PredictOptions, task: str, stem: str) -> None:
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


def predict_folder(images: Path, options: PredictOptions, on_event: Callable[..., None] = lambda *a, **k: None) -> dict:
    """Predict every image in a folder (``options.recursive``: and its sub-folders)."""
    return predict_images(list_images(images, options.recursive), Path(images), options, on_event)

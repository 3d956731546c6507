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

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from segcli.engine.core.distributed import all_max, destroy, init_process_group
from segcli.engine.core.inference import Predictor, list_images, relative_name, unused_options_warning
from segcli.engine.core.interrupt import Interrupted, interruptible, signal_name, stop_requested
from segcli.engine.core.run_folders import FolderLock, create_next_exp_dir
from segcli.engine.predict.finisher import ImageFinisher
from segcli.engine.predict.journal import line_to_record, merge_journals, read_journal
from segcli.engine.predict.options import PredictOptions
from segcli.engine.predict.outputs import (is_utf8_name, output_stems, predictions_dataset, printable_name,
                                           write_prediction_files)
from segcli.engine.predict.shards import Shard, local_processes, predict_in_processes
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
    predictor = Predictor.load(options.weights, options.conf, options.max_det, options.device, options.imgsz,
                               options.iou, options.tile)
    group = init_process_group(predictor.device)
    emit = on_event if group.is_main else (lambda *a, **k: None)
    if predictor.unused_options:
        emit("warning", text=unused_options_warning(predictor))
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
    shard = Shard(group.rank, group.world_size)  # under torchrun: this rank's share
    todo = shard.take(todo)
    formats = {"coco", "via", "masks"} if "all" in options.formats else set(options.formats)
    processes = local_processes(options.procs, predictor.device, len(todo), group)
    start = time.perf_counter()
    emit("start", total=len(todo), out=out, task=predictor.task, resumed=len(lines), processes=processes)
    not_utf8 = [{"image": printable_name(relative_name(path, root)),
                 "reason": "file name is not UTF-8, which the JSON outputs cannot hold; rename the file"}
                for path in paths if path in unnamable]
    for item in not_utf8:
        emit("warning", text=f"skipped {item['image']}: {item['reason']}")
    finisher = ImageFinisher(out, names, options, predictor.task, formats, keep, ids, lines, output_stems(list(ids)))
    if processes > 1:
        predict_in_processes(predictor, finisher, todo, root, processes, emit, start)
    else:
        finisher.run(predictor, todo, root, shard.journal(out), lambda done: emit(
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


def predict_folder(images: Path, options: PredictOptions, on_event: Callable[..., None] = lambda *a, **k: None) -> dict:
    """Predict every image in a folder (``options.recursive``: and its sub-folders)."""
    return predict_images(list_images(images, options.recursive), Path(images), options, on_event)

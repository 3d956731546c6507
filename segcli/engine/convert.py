"""``segcli convert``: read any supported annotations, write COCO, VIA or label masks, and
account for every change in a ledger saved as ``OUTPUT.report.json``.

Nothing is written when the input has errors, or when ``strict`` is set and the ledger holds a
lossy entry; outputs are written atomically (temporary file, then rename). The output and its
report are both checked before the first is written: neither may be or hold an input (the
annotation file, the mask folder and its classes file, the images folder or an image read), an
existing one is replaced only with ``overwrite``, and a mask folder only when segcli wrote it.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from segcli.errors import SegcliError
from segcli.fileio import refuse_writing_inputs, write_files_atomic, write_json_atomic
from segcli.formats import masks
from segcli.formats.images import ImageFolder
from segcli.formats.io import (NAMES_CHECKED, OUTPUT_FORMATS, build_output, default_images_dir, detect_format,
                               images_reference, locate_images, read_annotations)
from segcli.ledger import Ledger
from segcli.structures import Dataset


@dataclass
class ConvertResult:
    """What a conversion did: the dataset read, the ledger, and the files written."""

    dataset: Dataset
    ledger: Ledger
    output: Path
    report: Path
    to: str
    images_written: int
    objects_written: int
    label_maps: dict | None = None
    """For --to masks: objects painted, objects a read-back finds, and those merged, hidden,
    partly hidden or split (see ``formats.mask_losses``)."""
    instances: bool = False


def infer_output_format(input_format: str, output: Path) -> str:
    """Default --to: masks for a folder-like output, VIA for COCO input, else COCO."""
    if output.suffix.lower() != ".json":
        return "masks"
    return "via" if input_format == "coco" else "coco"


def report_path(output: Path) -> Path:
    """``OUTPUT.report.json`` beside the output (``out.json`` -> ``out.report.json``)."""
    stem = output.name[:-5] if output.name.lower().endswith(".json") else output.name
    return output.with_name(f"{stem}.report.json")


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector.

    Reading and writing a big annotation file creates millions of small dicts and lists and no
    reference cycles; the collector rescans the growing heap again and again for nothing (30% of
    a 100,000-polygon conversion, measured with benchmarks/bench_convert.py). Refcounting still
    frees everything.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def convert(input_path: Path, output: Path, to: str | None = None, images_dir: Path | None = None,
            label_attr: str | None = None, category: str = "object", strict: bool = False,
            overwrite: bool = False, instances: bool = False) -> ConvertResult:
    """Convert annotations; see the module docstring. Raises SegcliError on bad input.
    ``instances``: with ``to="masks"``, instance-id maps and instances.json, not class maps."""
    with paused_gc():
        return _convert(Path(input_path), Path(output), to, images_dir, label_attr, category,
                        strict, overwrite, instances)


def _convert(input_path: Path, output: Path, to: str | None, images_dir: Path | None,
             label_attr: str | None, category: str, strict: bool, overwrite: bool,
             instances: bool) -> ConvertResult:
    detected = detect_format(input_path)
    input_format = detected[0]
    to = to or infer_output_format(input_format, output)
    if to not in OUTPUT_FORMATS:
        raise SegcliError(f"unknown output format {to!r} (choose from {', '.join(OUTPUT_FORMATS)})")
    if instances and to != "masks":
        raise SegcliError(f"--instances writes instance-id label masks, not {to}: use it with --to masks "
                          "and an OUTPUT folder", output)
    inputs = [input_path] + ([images_dir] if images_dir is not None else [])
    input_folders = []
    if input_format == "masks":
        inputs += [classes for classes in [masks.find_classes_file(input_path)] if classes is not None]
        inputs += [own for own in [input_path / masks.INSTANCES_FILE] if own.is_file()]
        input_folders.append(input_path)  # outputs inside it would be read back as part of it
    check_output_paths(output, to, inputs, input_folders, overwrite)  # fail fast, before reading
    ledger = Ledger(str(input_path))
    dataset = read_annotations(input_path, ledger, label_attr, category, images_dir, detected)
    ledger.raise_errors()
    if to == "masks" and not instances:
        masks.check_mask_categories(dataset)
    images_folder = images_dir
    if to in ("coco", "masks") and input_format != "masks":
        images_folder = locate_images(dataset, images_dir, ledger)
        inputs.append(images_folder)
    elif images_folder is None and to == "via":
        images_folder = default_images_dir(dataset)  # where a reader of the input looks
    inputs += [image.path for image in dataset.images if image.path is not None]
    check_output_paths(output, to, inputs, input_folders, overwrite)  # now with the images read
    if to == "masks" and output.is_dir():
        _refuse_foreign_folder(output)
    built = build_output(dataset, to, ledger, instances, _recorded_images(images_folder, output, dataset))
    _refuse_errors(ledger, strict, input_path)
    label_maps = {}
    if callable(built):
        def write_checked(folder: Path) -> None:
            label_maps.update(built(folder).to_json())
            # label maps are rasterised (and their losses found) while they are written: check again
            _refuse_errors(ledger, strict, input_path)

        write_files_atomic(output, write_checked, overwrite)
    else:
        write_json_atomic(output, built, overwrite)
    report = report_path(output)  # checked above: replacing it is what --overwrite asked for
    write_json_atomic(report, {"input": str(input_path), "input_format": dataset.source_format,
                               "output": str(output), "to": to,
                               **({"instances": instances, "label_maps": label_maps} if to == "masks" else {}),
                               **ledger.to_json()}, overwrite=True, indent=1)
    images_written, objects_written = _count_written(built, to, dataset, ledger, label_maps)
    return ConvertResult(dataset, ledger, output, report, to, images_written, objects_written,
                         label_maps if to == "masks" else None, instances)


def _recorded_images(folder: Path | None, output: Path, dataset: Dataset) -> dict | None:
    """Where the output records its images (see ``images_reference``), so that stats, train and
    eval find them from the output's folder; None when no images folder is known."""
    if folder is None or not Path(folder).is_dir():
        return None
    return images_reference(_folder_holding_images(dataset, Path(folder)) or folder, output)


def _folder_holding_images(dataset: Dataset, folder: Path) -> Path | None:
    """The folder most images lie in under their names as written (``folder / file_name``),
    which readers look in directly: a search below ``folder`` may have found them deeper. Images
    not resolved (VIA output reads no image) are looked up in ``folder``, the first
    ``NAMES_CHECKED`` of them, without reading them."""
    found = [(image.file_name, image.path) for image in dataset.images if image.path is not None]
    if not found:
        lookup = ImageFolder(folder)
        found = [(image.file_name, lookup.find(image.file_name, None)[0]) for image in dataset.images[:NAMES_CHECKED]]
    roots: Counter = Counter()
    for file_name, path in found:
        parts = PurePosixPath(file_name.replace("\\", "/")).parts
        if path is not None and parts and Path(path).parts[-len(parts):] == parts:
            roots[Path(path).parents[len(parts) - 1]] += 1
    return roots.most_common(1)[0][0] if roots else None


def check_output_paths(output: Path, to: str, inputs: list[Path], input_folders: list[Path],
                       overwrite: bool) -> None:
    """Refuse, before anything is written, an output or report that is or holds an input, that
    exists without ``overwrite``, or that is a folder where a file goes (or the reverse)."""
    for path, what in ((output, "output"), (report_path(output), "report")):
        refuse_writing_inputs(path, inputs, input_folders, what)
        if not path.exists():
            continue
        if not overwrite:
            raise SegcliError(f"{what} exists; pass --overwrite to replace it", path)
        wants_folder = to == "masks" and what == "output"
        if path.is_dir() and not wants_folder:
            raise SegcliError("is a folder, expected a file path", path)
        if wants_folder and not path.is_dir():
            raise SegcliError("is a file, but --to masks writes a folder", path)


def _refuse_foreign_folder(output: Path) -> None:
    """--overwrite replaces a mask folder as a whole: only one segcli wrote, never user files."""
    foreign = masks.foreign_content(output)
    if foreign is not None:
        raise SegcliError(f"--overwrite only replaces a label-mask folder segcli wrote, and this one holds "
                          f"{foreign}: choose a new or empty folder", output)


def _refuse_errors(ledger: Ledger, strict: bool, input_path: Path) -> None:
    """Raise for invalid input, or (``strict``) for anything lost or changed."""
    ledger.raise_errors()
    if strict and ledger.lossy:
        raise SegcliError(f"--strict: {len(ledger.lossy)} object(s) would be lost or changed, "
                          f"first: {ledger.lossy[0].line()}", input_path, exit_code=1)


def _count_written(built, to: str, dataset: Dataset, ledger: Ledger, label_maps: dict) -> tuple[int, int]:
    if to == "coco":
        return len(built["images"]), len(built["annotations"])
    if to == "via":
        return len(built["_via_img_metadata"]), sum(len(v["regions"]) for v in built["_via_img_metadata"].values())
    skipped = {e.image for e in ledger.entries if e.action == "skipped"}
    kept = [img for img in dataset.images if img.file_name not in skipped]
    return len(kept), label_maps["objects_read_back"]  # the objects the folder gives back

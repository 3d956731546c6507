"""``segcli convert``: read any supported annotations, write COCO, VIA or label masks, and
account for every change in a ledger saved as ``OUTPUT.report.json``.

Nothing is written when the input has errors, or when ``strict`` is set and the ledger holds a
lossy entry; outputs are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from segcli.errors import SegcliError
from segcli.fileio import write_files_atomic, write_json_atomic
from segcli.formats.io import OUTPUT_FORMATS, build_output, detect_format, locate_images, read_annotations
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
            overwrite: bool = False) -> ConvertResult:
    """Convert annotations; see the module docstring. Raises SegcliError on bad input."""
    with paused_gc():
        return _convert(Path(input_path), Path(output), to, images_dir, label_attr, category,
                        strict, overwrite)


def _convert(input_path: Path, output: Path, to: str | None, images_dir: Path | None,
             label_attr: str | None, category: str, strict: bool, overwrite: bool) -> ConvertResult:
    detected = detect_format(input_path)
    input_format = detected[0]
    to = to or infer_output_format(input_format, output)
    if to not in OUTPUT_FORMATS:
        raise SegcliError(f"unknown output format {to!r} (choose from {', '.join(OUTPUT_FORMATS)})")
    if output.exists() and not overwrite:
        raise SegcliError("output exists; pass --overwrite to replace it", output)
    if output.resolve() == input_path.resolve():
        raise SegcliError("output would overwrite the input", output)
    ledger = Ledger(str(input_path))
    dataset = read_annotations(input_path, ledger, label_attr, category, images_dir, detected)
    ledger.raise_errors()
    if to in ("coco", "masks") and input_format != "masks":
        locate_images(dataset, images_dir, ledger)
    built = build_output(dataset, to, ledger)
    _refuse_errors(ledger, strict, input_path)
    if callable(built):
        def write_checked(folder: Path) -> None:
            built(folder)  # label maps are rasterised while they are written: check again after
            _refuse_errors(ledger, strict, input_path)

        write_files_atomic(output, write_checked, overwrite)
    else:
        write_json_atomic(output, built, overwrite)
    report = report_path(output)
    write_json_atomic(report, {"input": str(input_path), "input_format": dataset.source_format,
                               "output": str(output), "to": to, **ledger.to_json()}, overwrite=True, indent=1)
    images_written, objects_written = _count_written(built, to, dataset, ledger)
    return ConvertResult(dataset, ledger, output, report, to, images_written, objects_written)


def _refuse_errors(ledger: Ledger, strict: bool, input_path: Path) -> None:
    """Raise for invalid input, or (``strict``) for anything lost or changed."""
    ledger.raise_errors()
    if strict and ledger.lossy:
        raise SegcliError(f"--strict: {len(ledger.lossy)} object(s) would be lost or changed, "
                          f"first: {ledger.lossy[0].line()}", input_path, exit_code=1)


def _count_written(built, to: str, dataset: Dataset, ledger: Ledger) -> tuple[int, int]:
    if to == "coco":
        return len(built["images"]), len(built["annotations"])
    if to == "via":
        return len(built["_via_img_metadata"]), sum(len(v["regions"]) for v in built["_via_img_metadata"].values())
    skipped = {e.image for e in ledger.entries if e.action == "skipped"}
    kept = [img for img in dataset.images if img.file_name not in skipped]
    return len(kept), sum(len(img.annotations) for img in kept)

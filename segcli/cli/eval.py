"""``segcli eval``: options, tables and plots paths; the work is in ``segcli.engine.eval.run``."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from segcli.cli.common import EventPrinter, LabelAttrOption, Task, check_option, console, err_console, user_errors
from segcli.engine.core.events import EVAL_EVENTS
from segcli.engine.eval.options import EvalOptions
from segcli.models.defaults import EVAL_CONF, IMAGE_SIZE_RANGE

# option ranges, checked before any work: a value outside them is a typo or would exhaust the
# machine (--imgsz 100000 asks for a 160 GB tensor); label maps are 8- or 16-bit PNGs
BATCH_RANGE = (1, 256)
WORKERS_RANGE = (0, 64)
IGNORE_INDEX_RANGE = (0, 65535)


class Backend(str, Enum):
    pycocotools = "pycocotools"
    faster = "faster"


class SegmArea(str, Enum):
    pycocotools = "pycocotools"
    mask = "mask"


def evaluate(
    data: Annotated[Path | None, typer.Argument(help="Ground truth: a split folder (images + one VIA/COCO file) or an annotation file.")] = None,
    gt: Annotated[Path | None, typer.Option("--gt", help="Ground truth (instead of DATA): annotation file, split folder or label-mask folder.")] = None,
    pred: Annotated[Path | None, typer.Option("--pred", help="Predictions: COCO results JSON (instance) or a folder of label PNGs (semantic).")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Predict with this checkpoint, then score (default: the shipped instance model).")] = None,
    task: Annotated[Task, typer.Option("--task", help="Without --weights or --pred: the shipped instance or semantic model.")] = Task.instance,
    images: Annotated[Path | None, typer.Option("--images", "-i", help="Image folder (default: beside the annotation file; with a label-mask ground truth and a model: required).", file_okay=False)] = None,
    conf: Annotated[float | None, typer.Option("--conf", help=f"Instance models: score threshold when predicting, 0-1 (COCO AP wants a low one) [default: {EVAL_CONF}].")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for metrics.json and plots (default runs/eval/exp, exp2, ...).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the metrics JSON here.")] = None,
    backend: Annotated[Backend, typer.Option("--backend", help="pycocotools, or faster (faster-coco-eval, same figures).")] = Backend.pycocotools,
    segm_area: Annotated[SegmArea, typer.Option("--segm-area", help="Instance: area that puts a prediction in mask AP's small/medium/large buckets: pycocotools (as loadRes: its box's when predictions have boxes) or mask.")] = SegmArea.pycocotools,
    ignore_index: Annotated[int, typer.Option("--ignore-index", help="Semantic: ground-truth label value not scored (0-65535).")] = EvalOptions.ignore_index,
    worst: Annotated[int, typer.Option("--worst", help="Instance: list this many images with the most errors.")] = EvalOptions.worst,
    label_attr: LabelAttrOption = None,
    classes: Annotated[str | None, typer.Option("--classes", help="Label-mask folders without classes.txt: names of label values 1, 2, ... (e.g. circle,square; 0 is the background). Default with a model: the model's classes.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = EvalOptions.device,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Short side the model sees, 32-8192 (default: the checkpoint's).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per forward pass (1-256).")] = EvalOptions.batch,
    workers: Annotated[int, typer.Option("--workers", help="Decoding worker processes (0-64).")] = EvalOptions.workers,
) -> None:
    """Score a model or prediction files: COCO box/mask AP per class, or mIoU and pixel accuracy.

    Examples:
      segcli eval examples/shapes/val                      # the shipped one-stage model on the example val split
      segcli eval examples/shapes/val --task semantic      # the shipped FCN+PSPNet
      segcli eval data/val --weights runs/instance/exp/weights/best.pt
      segcli eval --pred runs/predict/exp/predictions.json --gt data/val/via_project.json
      segcli eval --pred runs/predict/exp2/masks --gt data/val/via_project.json     # semantic
      segcli eval --gt data/val/masks --images data/val/images --task semantic     # label PNGs as ground truth
      segcli eval --gt data/val --pred runs/eval/exp/predictions.json             # re-check an eval run
    """
    from segcli.engine.eval.inputs import parse_classes
    from segcli.engine.eval.run import run_eval

    with user_errors():
        check_options(conf, ignore_index, worst, imgsz, batch, workers)
        class_names = parse_classes(classes)
    if data is not None and gt is not None:
        err_console.print("[red]error:[/] give DATA or --gt, not both")
        raise typer.Exit(2)
    options = EvalOptions(gt=gt or data, pred=pred, weights=weights, task=task.value, images=images, out=out, json_path=json_path,
                          conf=conf, backend=backend.value, segm_area=segm_area.value, ignore_index=ignore_index, worst=worst,
                          label_attr=label_attr, classes=class_names, device=device, imgsz=imgsz, batch=batch, workers=workers)
    printer = EvalPrinter()
    with user_errors():
        try:
            report = run_eval(options, printer)
        finally:
            printer.on_end()
    print_report(report)


class EvalPrinter(EventPrinter):
    """``segcli eval``'s events with a model: a bar over the images predicted."""

    kinds = EVAL_EVENTS

    def __init__(self):
        self.progress = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console)
        self.bar = None

    def on_start(self, total, **_):
        self.progress.start()
        self.bar = self.progress.add_task("predict", total=total)

    def on_progress(self, done, **_):
        self.progress.update(self.bar, completed=done)

    def on_end(self):
        self.progress.stop()


def check_options(conf: float, ignore_index: int, worst: int, imgsz: int | None, batch: int, workers: int) -> None:
    """Every numeric option in its range (NaN and inf refused), as a one-line error."""
    check_option("--conf", conf, 0, 1)
    check_option("--ignore-index", ignore_index, *IGNORE_INDEX_RANGE)
    check_option("--worst", worst, 0)
    check_option("--imgsz", imgsz, *IMAGE_SIZE_RANGE)
    check_option("--batch", batch, *BATCH_RANGE)
    check_option("--workers", workers, *WORKERS_RANGE)


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and value < 0:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_report(report: dict) -> None:
    for text in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)
    if report["task"] == "instance":
        _print_instance(report)
    else:
        _print_semantic(report)
    for text in report.get("notes", []):
        console.print(f"note: {escape(text)}", highlight=False)
    for name, path in report.get("files", {}).items():
        console.print(f"{name}: {escape(path)}", highlight=False)


def _print_instance(report: dict) -> None:
    kinds = [(name, report[name]) for name in ("segm", "bbox") if report.get(name)]
    console.print(f"COCO AP: {report['images']} images, {report['ground_truth_objects']} objects, "
                  f"{report['predictions']} predictions", highlight=False)
    table = Table()
    table.add_column("metric")
    for name, _ in kinds:
        table.add_column("mask" if name == "segm" else "box", justify="right")
    for metric in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"):
        table.add_row(metric, *[_number(scores[metric]) for _, scores in kinds])
    if report.get("dense"):
        dense = report["dense"]
        table.add_row(f"AP (maxDets {dense['max_dets']})", *[_number(dense.get(name, {}).get("AP")) for name, _ in kinds])
    console.print(table)
    per_class = Table(title="AP per class (IoU 0.50:0.95)", title_justify="left")
    per_class.add_column("class")
    for name, _ in kinds:
        per_class.add_column("mask" if name == "segm" else "box", justify="right")
    for name in kinds[0][1]["per_class"]:
        per_class.add_row(escape(name), *[_number(scores["per_class"].get(name)) for _, scores in kinds])
    console.print(per_class)
    if report.get("worst_images"):
        worst = Table(title="images with the most errors (IoU 0.5, score >= 0.5)", title_justify="left")
        for column in ("image", "found", "false", "missed", "F1"):
            worst.add_column(column, justify="left" if column == "image" else "right")
        for row in report["worst_images"]:
            worst.add_row(escape(row["image"]), str(row["tp"]), str(row["fp"]), str(row["fn"]), f"{row['f1']:.3f}")
        console.print(worst)


def _print_semantic(report: dict) -> None:
    table = Table(title=f"semantic: {report['images']} images", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for key, label in (("mIoU", "mIoU"), ("mean_accuracy", "mean class accuracy"), ("pixel_accuracy", "pixel accuracy"),
                       ("fwIoU", "frequency-weighted IoU"), ("per_image_mIoU", "per-image mIoU (seed's definition)"),
                       ("per_image_pixel_accuracy", "per-image pixel accuracy")):
        table.add_row(label, _number(report[key]))
    console.print(table)
    per_class = Table(title="per class", title_justify="left")
    for column in ("class", "IoU", "accuracy"):
        per_class.add_column(column, justify="left" if column == "class" else "right")
    for name in report["classes"]:
        per_class.add_row(escape(name), _number(report["per_class_iou"][name]), _number(report["per_class_accuracy"][name]))
    console.print(per_class)

"""``segcli predict folder|image|PATH``: options, progress and summary; the work is in
``segcli.engine.predict.run``. A path where the subcommand goes (``segcli predict photos/``) runs
``predict folder`` for a folder and ``predict image`` for image files or a quoted glob."""

from __future__ import annotations

import difflib
import glob
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

from segcli.cli.common import EventPrinter, Task, check_option, console, user_errors
from segcli.engine.core.events import PREDICT_EVENTS
from segcli.engine.predict.options import PredictOptions
from segcli.models.defaults import IMAGE_SIZE_RANGE, PREDICT_CONF

GLOB_CHARACTERS = "*?["
IMAGE_SUFFIXES_TEXT = "jpg, png, bmp, tif, webp"


class PredictGroup(TyperGroup):
    """``segcli predict``'s subcommands, and a path in their place: a folder is ``predict
    folder``, an existing file ``predict image``, a glob (quoted, so the shell left it) the
    images it matches; anything else is one error line."""

    def resolve_command(self, ctx, args: list[str]):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return self._path_command(args)
        return super().resolve_command(ctx, args)

    def _path_command(self, args: list[str]):
        from segcli.engine.core.inference import PREDICT_SUFFIXES
        from segcli.errors import SegcliError

        name = args[0]
        if os.path.isdir(name):
            return "folder", self.commands["folder"], args
        if os.path.lexists(name):
            return "image", self.commands["image"], args
        if any(character in name for character in GLOB_CHARACTERS):
            matches = sorted(path for path in glob.glob(name) if os.path.isfile(path)
                             and Path(path).suffix.lower() in PREDICT_SUFFIXES)
            if matches:
                return "image", self.commands["image"], [*matches, *args[1:]]
            problem = f"no image ({IMAGE_SUFFIXES_TEXT}) matches this pattern"
        else:
            close = difflib.get_close_matches(name, list(self.commands), n=1)
            problem = "no such predict command, folder or file" + (f" (did you mean `predict {close[0]}`?)"
                                                                    if close else "")
        with user_errors():
            raise SegcliError(f"{problem}; use `segcli predict folder DIR` or `segcli predict image FILE...`", name)


app = typer.Typer(cls=PredictGroup, no_args_is_help=True, subcommand_metavar="PATH | COMMAND [ARGS]...",
                  help="Label images with a trained model: overlays, COCO JSON and a VIA project.\n\n"
                       "`segcli predict PATH [OPTIONS]`: PATH a folder (as `predict folder`), image files or a "
                       "quoted glob such as 'photos/*.jpg' (as `predict image`), with the same options.")


class Format(str, Enum):
    coco = "coco"
    via = "via"
    masks = "masks"
    all = "all"


WeightsOption = Annotated[Path | None, typer.Option("--weights", "-w", help="Checkpoint (best.pt of a run; default: the shipped model for --task).")]
TaskOption = Annotated[Task, typer.Option("--task", help="Without --weights: use the shipped instance (one-stage yolact_resnet18_fpn) or semantic (PSPNet) model.")]
OutOption = Annotated[Path | None, typer.Option("--out", help="Output folder (default runs/predict/exp, exp2, ...).")]
ConfOption = Annotated[float | None, typer.Option("--conf", help=f"Instance models: score threshold, applied inside the model [default: {PREDICT_CONF}]. A semantic model has none (a warning says so).")]
IouOption = Annotated[float | None, typer.Option("--iou", help="NMS IoU threshold (instance).")]
MaxDetOption = Annotated[int, typer.Option("--max-det", help="Detections per image at most.")]
BatchOption = Annotated[int, typer.Option("--batch", help="Images per forward pass (the results do not depend on it).")]
WorkersOption = Annotated[int, typer.Option("--workers", help="Decoding worker processes.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ImgszOption = Annotated[int | None, typer.Option("--imgsz", help="Short side the model sees (default: the checkpoint's).")]
ClassesOption = Annotated[str | None, typer.Option("--classes", help="Keep only these classes, comma-separated: names, or category ids as in predictions.json (1..C in the model's order), e.g. --classes 1,3 or --classes cat,dog.")]
OverlaysOption = Annotated[bool, typer.Option("--overlays/--no-overlays", help="Write overlay pictures.")]
AlphaOption = Annotated[float, typer.Option("--alpha", help="Mask opacity in overlays.")]
FormatOption = Annotated[list[Format] | None, typer.Option("--format", help="coco, via, masks or all (repeatable; default all).")]
PolygonsOption = Annotated[bool, typer.Option("--polygons", help="Segmentations as polygons instead of RLE.")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Complete an interrupted run in --out (finished images are kept).")]
ProcsOption = Annotated[int, typer.Option("--procs", help="CPU: prediction processes of one thread each (0: one per core, at most 4; faster than threads; the results do not depend on it).")]
TileOption = Annotated[int | None, typer.Option("--tile", help="Instance: cut big images into overlapping tiles of this many pixels, seen at full resolution, merged by NMS.")]


FOLDER_PROCS = 0  # a folder is usually many images: one process per core (PredictOptions: 1)
IMAGE_WORKERS = 0  # a few files: decoding workers would cost more to start than they save


def _options(given: dict) -> PredictOptions:
    """A command's parameters as PredictOptions: they are named as its fields, except --task (which
    shipped model without --weights), and --classes and --format as typed."""
    from dataclasses import fields

    from segcli.models.defaults import default_weights

    names = {option.name for option in fields(PredictOptions)} - {"weights", "classes", "formats"}
    classes, formats = given["classes"], given["formats"]
    return PredictOptions(weights=given["weights"] or default_weights(Task(given["task"]).value),
                          classes=[c.strip() for c in classes.split(",")] if classes else None,
                          formats={f.value for f in formats} if formats else {"coco", "via", "masks"},
                          **{name: value for name, value in given.items() if name in names})


TILE_RANGE = (64, IMAGE_SIZE_RANGE[1])


def _check_options(given: dict) -> None:
    """Every numeric option in its range, before the model is loaded or any folder made."""
    check_option("--conf", given["conf"], 0, 1)
    check_option("--iou", given["iou"], 0, 1)
    check_option("--max-det", given["max_det"], 1)
    check_option("--batch", given["batch"], 1)
    check_option("--workers", given["workers"], 0)
    check_option("--imgsz", given["imgsz"], *IMAGE_SIZE_RANGE)
    check_option("--alpha", given["alpha"], 0, 1)
    check_option("--tile", given["tile"], *TILE_RANGE)
    check_option("--procs", given["procs"], 0)


class Printer(EventPrinter):
    """``segcli predict``'s events: a bar with images/s, warnings above it, the summary table."""

    kinds = PREDICT_EVENTS

    def __init__(self):
        self.progress = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console)
        self.task = None

    def on_start(self, total, resumed=0, **_):
        if resumed:
            console.print(f"resuming: {resumed} image(s) already done")
        self.progress.start()
        self.task = self.progress.add_task("predict", total=total, rate="")

    def on_progress(self, done, images_per_s, **_):
        self.progress.update(self.task, completed=done, rate=f"{images_per_s:.1f} img/s")

    def on_warning(self, text):
        self.progress.console.print(f"[yellow]warning:[/] {escape(text)}")

    def on_end(self, **summary):
        self.progress.stop()
        _print_summary(summary)

    def stop(self):
        self.progress.stop()


def _print_summary(summary: dict) -> None:
    table = Table(title=f"segcli predict -> {escape(summary['out'])}", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("images done", str(summary["done"]))
    table.add_row("skipped", str(len(summary["skipped"])))
    for name, count in sorted(summary["instances_per_class"].items()):
        table.add_row(f"  {escape(name)}", str(count))
    table.add_row("images/s", f"{summary['images_per_s']:.2f}")
    console.print(table)
    if summary["predicted_now"]:
        ms = summary["ms_per_image"]
        # the stages overlap (workers decode ahead, outputs are written beside the model)
        console.print(f"speed: {ms['decode']:.1f} ms decode, {ms['model']:.1f} ms model (forward+postprocess), "
                      f"{ms['write']:.1f} ms write per image", highlight=False)
    for item in summary["skipped"]:
        console.print(f"skipped {escape(item['image'])}: {escape(item['reason'])}", highlight=False)
    for key, path in summary["files"].items():
        console.print(f"{key}: {escape(path)}", highlight=False)


@app.command("folder", no_args_is_help=True)
def folder(
    images: Annotated[Path, typer.Argument(help="Folder of images (jpg, png, bmp, tif, webp).")],
    weights: WeightsOption = None,
    task: TaskOption = Task.instance,
    out: OutOption = PredictOptions.out,
    conf: ConfOption = PredictOptions.conf,
    iou: IouOption = PredictOptions.iou,
    max_det: MaxDetOption = PredictOptions.max_det,
    batch: BatchOption = PredictOptions.batch,
    workers: WorkersOption = PredictOptions.workers,
    device: DeviceOption = PredictOptions.device,
    imgsz: ImgszOption = PredictOptions.imgsz,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Include sub-folders.")] = PredictOptions.recursive,
    classes: ClassesOption = None,
    overlays: OverlaysOption = PredictOptions.overlays,
    alpha: AlphaOption = PredictOptions.alpha,
    formats: FormatOption = None,
    polygons: PolygonsOption = PredictOptions.polygons,
    resume: ResumeOption = PredictOptions.resume,
    procs: ProcsOption = FOLDER_PROCS,
    tile: TileOption = PredictOptions.tile,
) -> None:
    """Label every image in a folder: overlays/, predictions.json, dataset.json, via_project.json.

    Examples:
      segcli predict folder examples/shapes/val/images                  # the shipped Mask R-CNN
      segcli predict folder examples/shapes/val/images --task semantic  # the shipped PSPNet
      segcli predict folder images/ --weights runs/instance/exp/weights/best.pt
      segcli predict folder aerial/ -w best.pt --tile 640     # small objects in huge images
      segcli predict folder photos/ -w best.pt --conf 0.3 --recursive --out labelled/
      segcli predict folder photos/ -w best.pt --out labelled/ --resume    # after an interruption
      segcli predict photos/ -w best.pt --classes 1,3          # the same without `folder`; classes by id
    """
    given = dict(locals())  # the parameters, named as PredictOptions' fields (see _options)
    from segcli.engine.predict.run import predict_folder

    printer = Printer()
    with user_errors():
        _check_options(given)
        try:
            predict_folder(images, _options(given), printer)
        finally:
            printer.stop()


@app.command("image", no_args_is_help=True)
def image(
    files: Annotated[list[Path], typer.Argument(help="Image file(s).")],
    weights: WeightsOption = None,
    task: TaskOption = Task.instance,
    out: OutOption = PredictOptions.out,
    conf: ConfOption = PredictOptions.conf,
    iou: IouOption = PredictOptions.iou,
    max_det: MaxDetOption = PredictOptions.max_det,
    batch: BatchOption = PredictOptions.batch,
    workers: WorkersOption = IMAGE_WORKERS,
    device: DeviceOption = PredictOptions.device,
    imgsz: ImgszOption = PredictOptions.imgsz,
    classes: ClassesOption = None,
    overlays: OverlaysOption = PredictOptions.overlays,
    alpha: AlphaOption = PredictOptions.alpha,
    formats: FormatOption = None,
    polygons: PolygonsOption = PredictOptions.polygons,
    resume: ResumeOption = PredictOptions.resume,
    procs: ProcsOption = PredictOptions.procs,
    tile: TileOption = PredictOptions.tile,
) -> None:
    """Label one or a few image files (same outputs and options as `predict folder`).

    Examples:
      segcli predict image photo.jpg
      segcli predict image photo.jpg --weights best.pt
      segcli predict photo.jpg other.png                   # the same without `image`
      segcli predict 'photos/*.jpg' --classes square       # a quoted glob: the images it matches
    """
    given = dict(locals())  # the parameters, named as PredictOptions' fields (see _options)
    from segcli.engine.predict.run import predict_images
    from segcli.errors import SegcliError

    printer = Printer()
    with user_errors():
        _check_options(given)
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise SegcliError("image file not found", missing[0])
        special = [str(f) for f in files if not f.is_file()]  # a FIFO would block the decoder forever
        if special:
            raise SegcliError("not a regular file (a folder, FIFO or device); give image files", special[0])
        root = Path(files[0]).parent
        try:
            predict_images([Path(f) for f in files], root, _options(given), printer)
        finally:
            printer.stop()

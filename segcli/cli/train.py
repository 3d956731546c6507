"""``segcli train``: options, progress bars and the final summary; the loop is in
``segcli.engine.trainer``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from segcli.cli.common import CategoryOption, LabelAttrOption, Task, check_option, console, user_errors
from segcli.errors import SegcliError
from segcli.models.defaults import IMAGE_SIZE_RANGE

# ranges of the numeric options (README "Limits"): checked before any data is read or folder made;
# an image side of 100000 would ask for 160 GB, a batch of 0 or an epoch count of -1 has no meaning
OPTION_RANGES = {"--epochs": (1, 100_000), "--batch": (1, 1024), "--imgsz": IMAGE_SIZE_RANGE, "--workers": (0, 64),
                 "--patience": (0, 100_000), "--val-every": (1, 100_000), "--lr": (1e-12, 10.0),
                 "--seed": (0, 2**32 - 1)}
MAX_NAME_LENGTH = 200


def check_run_name(name: str | None) -> None:
    """A run name is one path component: a name with '/', '\\' or '..' would put the run folder
    outside --out (``--name ../../x``); control characters and very long names are refused too."""
    if name is None:
        return
    problem = ("is empty" if not name.strip() else
               "is '.' or '..'" if name in (".", "..") else
               "holds a path separator" if "/" in name or "\\" in name else
               "holds a control character" if any(ord(c) < 32 or ord(c) == 127 for c in name) else
               f"is longer than {MAX_NAME_LENGTH} characters" if len(name) > MAX_NAME_LENGTH else None)
    if problem:
        raise SegcliError(f"--name {name[:40]!r}: {problem}; a run name is a single folder name under --out")


def check_options(values: dict[str, float | None]) -> None:
    """One-line errors for numeric options out of ``OPTION_RANGES``."""
    for option, value in values.items():
        check_option(option, value, *OPTION_RANGES[option])


class Optimizer(str, Enum):
    sgd = "sgd"
    adamw = "adamw"


SHORT = {"loss_classifier": "cls", "loss_box_reg": "box", "loss_mask": "mask", "loss_objectness": "obj",
         "loss_rpn_box_reg": "rpn"}


class ProgressPrinter:
    """Draws the trainer's events: a bar per epoch with loss terms and images/s, then a table."""

    def __init__(self):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.task_id = None

    def __call__(self, kind: str, **data) -> None:
        getattr(self, f"on_{kind}", lambda **_: None)(**data)

    def on_start(self, run_dir, train_images, val_images, categories, device, world_size, start_epoch, epochs,
                 start_step=0):
        console.print(f"[bold]segcli train[/] -> {escape(str(run_dir))}  ({train_images} train / {val_images} val "
                      f"images; classes: {escape(', '.join(categories))}; device {device}"
                      + (f" x {world_size} processes" if world_size > 1 else "") + ")", highlight=False)
        if start_epoch or start_step:
            console.print(f"resuming at epoch {start_epoch + 1} of {epochs}"
                          + (f", after step {start_step}" if start_step else ""))
        self.progress.start()

    def on_epoch_start(self, epoch, epochs, steps):
        self.task_id = self.progress.add_task(f"{epoch + 1}/{epochs}", total=steps, info="")

    def on_step(self, step, steps, lr, losses, images_per_s):
        terms = " ".join(f"{SHORT.get(k, k.removeprefix('loss_'))} {v:.2f}" for k, v in losses.items()
                         if k != "loss" and len(losses) > 2)
        self.progress.update(self.task_id, completed=step,
                             info=f"loss {losses['loss']:.3f} {terms} | {images_per_s:.1f} img/s")

    def on_epoch_end(self, epoch, row, improved, best, metric):
        # one plain line per epoch as well: logs (no terminal) get no live bars
        line = f"  epoch {row['epoch']}: loss {row.get('loss', float('nan')):.4f}, {row['images_per_s']:.1f} img/s"
        if metric in row:
            line += f", {metric} {row[metric]:.4f}" + (" (best)" if improved else "")
        self.progress.console.print(line, highlight=False)

    def on_warning(self, text):
        self.progress.console.print(f"[yellow]warning:[/] {escape(text)}")

    def on_message(self, text):
        self.progress.console.print(escape(text))

    def on_end(self, run_dir, epochs_done, best_epoch, best, metric, stopped_early, last_row):
        self.progress.stop()
        table = Table(title=f"Training finished: {escape(str(run_dir))}", title_justify="left", show_header=False)
        table.add_column("")
        table.add_column("", justify="right")
        table.add_row("epochs", str(epochs_done) + (" (stopped early)" if stopped_early else ""))
        table.add_row(f"best {metric}", f"{best:.4f} (epoch {best_epoch})" if best_epoch >= 1 else
                      "never scored (best.pt = last epoch)")
        for key, value in last_row.items():
            if key != "epoch" and isinstance(value, float):
                table.add_row(f"last {key}", f"{value:.4g}")
        table.add_row("weights", f"{escape(str(Path(run_dir) / 'weights' / 'best.pt'))}")
        console.print(table)

    def stop(self):
        self.progress.stop()


def train(
    context: typer.Context,
    data: Annotated[Path | None, typer.Argument(help="Folder with train/ and val/ (images + one VIA or COCO file each).")] = None,
    task: Annotated[Task | None, typer.Option("--task", help="instance (Mask R-CNN) or semantic (FCN+PSPNet).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Architecture (see `segcli models`).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs (with --resume: extend the run to this many).")] = 30,
    batch: Annotated[int, typer.Option("--batch", help="Images per step (per process when distributed).")] = 4,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Short side the model sees (default: the model's).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default 0.02 SGD, 0.001 AdamW).")] = None,
    optimizer: Annotated[Optimizer | None, typer.Option("--optimizer", help="sgd (instance default) or adamw (semantic default).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    init: Annotated[str, typer.Option("--init", help="scratch, imagenet (backbone), coco (whole model), or a segcli checkpoint: copy every weight that fits (e.g. a Mask R-CNN's backbone into a PSPNet).")] = "scratch",
    out: Annotated[Path | None, typer.Option("--out", help="Parent folder of runs (default runs/TASK).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run folder name (default exp, exp2, ...).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run folder (with --epochs: extend it).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    patience: Annotated[int, typer.Option("--patience", help="Stop after this many validations without improvement (0: never).")] = 0,
    val_every: Annotated[int, typer.Option("--val-every", help="Validate every N epochs (and after the last).")] = 1,
    train_ann: Annotated[Path | None, typer.Option("--train", help="Training annotation file (instead of DATA).")] = None,
    train_images: Annotated[Path | None, typer.Option("--train-images", help="Training image folder.")] = None,
    val_ann: Annotated[Path | None, typer.Option("--val", help="Validation annotation file (instead of DATA).")] = None,
    val_images: Annotated[Path | None, typer.Option("--val-images", help="Validation image folder.")] = None,
    label_attr: LabelAttrOption = None,
    category: CategoryOption = "object",
    aux: Annotated[bool, typer.Option("--aux", help="Semantic: add the auxiliary head loss.")] = False,
    fp16_weights: Annotated[bool, typer.Option("--fp16-weights", help="Store best.pt in fp16 (half the size).")] = False,
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", help="Architecture argument KEY=VALUE (repeatable; `segcli models --args` lists them), e.g. backbone_layers=3.")] = None,
) -> None:
    """Train a segmentation model on a VIA or COCO dataset.

    Writes a run folder: weights/best.pt and weights/last.pt (self-describing checkpoints),
    args.json, metrics.csv, results.png and summary.json.

    Examples:
      segcli train examples/shapes --epochs 20
      segcli train data/ --task semantic --model pspnet_resnet18 --imgsz 320
      segcli train --resume runs/instance/exp --epochs 40
      torchrun --nproc_per_node 2 -m segcli train data/ --device cpu
    """
    from segcli.engine.trainer import TrainConfig, Trainer

    with user_errors():
        check_options({"--epochs": epochs, "--batch": batch, "--imgsz": imgsz, "--workers": workers,
                       "--patience": patience, "--val-every": val_every, "--lr": lr, "--seed": seed})
        check_run_name(name)
    printer = ProgressPrinter()
    with user_errors():
        try:
            if resume is not None:
                trainer = Trainer.resume(resume, printer, epochs=epochs if _given(context, "--epochs") else None,
                                         task=task.value if task else None, device=device if _given(context, "--device") else None,
                                         workers=workers if _given(context, "--workers") else None)
            else:
                config = TrainConfig(
                    data=_s(data), train=_s(train_ann), train_images=_s(train_images), val=_s(val_ann),
                    val_images=_s(val_images), task=(task or Task.instance).value, model=model, epochs=epochs,
                    batch=batch, imgsz=imgsz, lr=lr, optimizer=optimizer.value if optimizer else None,
                    workers=workers, device=device, init=init, out=_s(out), name=name, seed=seed,
                    patience=patience, val_every=val_every, label_attr=label_attr, category=category, aux=aux,
                    fp16_weights=fp16_weights, model_args=_model_args(model_arg))
                trainer = Trainer.new(config, printer)
            trainer.run()
        finally:
            printer.stop()


def _model_args(items: list[str] | None) -> dict:
    """--model-arg KEY=VALUE pairs; values read as JSON (numbers, lists, true) or else as text."""
    import json

    from segcli.errors import SegcliError

    parsed = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SegcliError(f"--model-arg {item!r}: expected KEY=VALUE")
        try:
            parsed[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key.strip()] = value
    return parsed


def _s(value: Path | None) -> str | None:
    return str(value) if value is not None else None


def _given(context: typer.Context, option: str) -> bool:
    """True when ``option`` was typed on the command line (so --resume keeps the saved value otherwise)."""
    source = context.get_parameter_source(option.lstrip("-").replace("-", "_"))
    return source is not None and source.name == "COMMANDLINE"

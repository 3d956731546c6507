"""``segcli train``: options, progress (live bars in a terminal, plain lines in a log) and the
final summary; the loop is in ``segcli.engine.train.trainer``."""

from __future__ import annotations

import math
import os
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from segcli.cli.common import CategoryOption, EventPrinter, LabelAttrOption, Task, check_option, console, user_errors
from segcli.engine.core.events import TRAIN_EVENTS
from segcli.errors import SegcliError
from segcli.models.defaults import IMAGE_SIZE_RANGE

# ranges of the numeric options (README "Limits"): checked before any data is read or folder made;
# an image side of 100000 would ask for 160 GB, a batch of 0 or an epoch count of -1 has no meaning
OPTION_RANGES = {"--epochs": (1, 100_000), "--batch": (1, 1024), "--imgsz": IMAGE_SIZE_RANGE, "--workers": (0, 64),
                 "--patience": (0, 100_000), "--val-every": (1, 100_000), "--lr": (1e-12, 10.0),
                 "--seed": (0, 2**32 - 1), "--log-every": (0, 1_000_000)}
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
    auto = "auto"


SHORT = {"loss_classifier": "cls", "loss_box_reg": "box", "loss_mask": "mask", "loss_objectness": "obj",
         "loss_rpn_box_reg": "rpn"}
LOG_SECONDS_ENV = "SEGCLI_LOG_SECONDS"
DEFAULT_LOG_SECONDS = 30.0
LOG_LINES_PER_EPOCH = 10  # --log-every 0 (auto): a line every tenth of an epoch


def log_seconds() -> float:
    """Seconds between plain progress lines at most (env SEGCLI_LOG_SECONDS, default 30); 0 gives a
    line after every step. An environment variable, not an option: tests and impatient users set it."""
    text = os.environ.get(LOG_SECONDS_ENV)
    if text is None:
        return DEFAULT_LOG_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise SegcliError(f"{LOG_SECONDS_ENV} {text!r}: expected a number of seconds >= 0")
    return value


def loss_text(losses: dict[str, float]) -> str:
    """"loss 1.234 (cls 0.30 box 0.20 ...)": the total, and the terms when there are several."""
    terms = [f"{SHORT.get(k, k.removeprefix('loss_'))} {v:.2f}" for k, v in losses.items() if k != "loss"]
    return f"loss {losses['loss']:.4f}" + (f" ({' '.join(terms)})" if len(terms) > 1 else "")


def clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainPrinter(EventPrinter):
    """The trainer's events as text; what a terminal and a log share: the start line, warnings and
    messages, one line per validation and per epoch, and the summary. Subclasses draw the steps."""

    kinds = TRAIN_EVENTS

    def __init__(self, console: Console):
        self.console = console

    def line(self, text: str) -> None:
        """One line, never cut or wrapped by rich (a log's console is 80 columns wide)."""
        self.console.print(text, highlight=False, soft_wrap=True)

    def on_start(self, run_dir, train_images, val_images, categories, device, world_size, start_epoch, epochs,
                 start_step=0, val_every=1):
        self.line(f"[bold]segcli train[/] -> {escape(str(run_dir))}  ({train_images} train / {val_images} val "
                  f"images; classes: {escape(', '.join(categories))}; device {device}"
                  + (f" x {world_size} processes" if world_size > 1 else "") + ")")
        if start_epoch or start_step:
            self.line(f"resuming at epoch {start_epoch + 1} of {epochs}"
                      + (f", after step {start_step}" if start_step else ""))

    def on_val_end(self, epoch, epochs, images, metrics, seconds):
        figures = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items())
        self.line(f"val epoch {epoch + 1}/{epochs}: {figures} ({images} images, {seconds:.1f} s)")

    def on_epoch_end(self, epoch, row, improved, best, metric):
        line = f"  epoch {row['epoch']}: loss {row.get('loss', float('nan')):.4f}, {row['images_per_s']:.1f} img/s"
        if metric in row:
            line += f", {metric} {row[metric]:.4f}" + (" (best)" if improved else "")
        self.line(line)

    def on_warning(self, text):
        self.line(f"[yellow]warning:[/] {escape(text)}")

    def on_message(self, text):
        self.line(escape(text))

    def on_end(self, run_dir, epochs_done, best_epoch, best, metric, stopped_early, last_row):
        self.stop()
        rows = [("epochs", str(epochs_done) + (" (stopped early)" if stopped_early else "")),
                (f"best {metric}", f"{best:.4f} (epoch {best_epoch})" if best_epoch >= 1 else
                 "never scored (best.pt = last epoch)")]
        rows += [(f"last {key}", f"{value:.4g}") for key, value in last_row.items()
                 if key != "epoch" and isinstance(value, float)]
        rows.append(("weights", str(Path(run_dir) / "weights" / "best.pt")))
        self.summary(f"Training finished: {run_dir}", rows)

    def summary(self, title: str, rows: list[tuple[str, str]]) -> None:
        table = Table(title=escape(title), title_justify="left", show_header=False)
        table.add_column("")
        table.add_column("", justify="right", overflow="fold")
        for key, value in rows:
            table.add_row(escape(key), escape(value))
        self.console.print(table)

    def stop(self):
        pass


class BarPrinter(TrainPrinter):
    """A terminal: a live bar per epoch (loss terms, images/s, time left) and a labelled one per
    validation, so a long validation is not taken for a stalled epoch."""

    def __init__(self, console: Console):
        super().__init__(console)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.task_id = self.val_id = None

    def on_start(self, **data):
        super().on_start(**data)
        self.progress.start()

    def on_epoch_start(self, epoch, epochs, steps):
        self.task_id = self.progress.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, info="")

    def on_step(self, step, steps, lr, losses, images_per_s, **_):
        self.progress.update(self.task_id, completed=step, info=f"{loss_text(losses)} | {images_per_s:.1f} img/s")

    def on_val_start(self, epoch, epochs, images, steps):
        self.val_id = self.progress.add_task(f"  val {epoch + 1}/{epochs}", total=steps, info="")

    def on_val_step(self, step, steps):
        self.progress.update(self.val_id, completed=step)

    def summary(self, title, rows):
        self.stop()
        super().summary(title, rows)

    def stop(self):
        self.progress.stop()


class LogPrinter(TrainPrinter):
    """stdout is not a terminal (nohup, CI, a cluster job): no live bars, but a plain line after
    each epoch's first step, then every ``every`` steps or ``seconds`` seconds, whichever comes
    first, with epoch, step, losses, images/s, learning rate and the time left of the run; during
    a long validation a line every ``seconds`` too. ``every`` 0: a tenth of an epoch."""

    def __init__(self, console: Console, every: int = 0, seconds: float = DEFAULT_LOG_SECONDS):
        super().__init__(console)
        self.every, self.seconds = every, seconds
        self.last_line = time.monotonic()
        self.val_every, self.val_seconds = 1, 0.0
        self.epoch_began, self.first_step = 0.0, 0

    def line(self, text: str) -> None:
        super().line(text)
        self.last_line = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last_line >= self.seconds

    def on_start(self, val_every=1, **data):
        super().on_start(val_every=val_every, **data)
        self.val_every = val_every

    def on_epoch_start(self, epoch, epochs, steps):
        self.epoch_began, self.first_step = time.monotonic(), None

    def on_step(self, epoch, epochs, step, steps, lr, losses, images_per_s):
        if self.first_step is None:  # a resumed epoch starts after the steps done before
            self.first_step = step
        every = self.every or max(1, steps // LOG_LINES_PER_EPOCH)
        if step == self.first_step or step % every == 0 or self.due():
            eta = self.time_left(epoch, epochs, step, steps)
            self.line(f"epoch {epoch + 1}/{epochs} step {step}/{steps}: {escape(loss_text(losses))}, "
                      f"{images_per_s:.1f} img/s, lr {lr:.3g}, ETA {clock(eta)}")

    def time_left(self, epoch: int, epochs: int, step: int, steps: int) -> float:
        """Seconds to the end of the run at this epoch's pace, with the validations still to come
        at the length of the last one."""
        per_step = (time.monotonic() - self.epoch_began) / (step - self.first_step + 1)
        remaining_steps = steps - step + steps * (epochs - epoch - 1)
        validations = sum(1 for e in range(epoch, epochs) if (e + 1) % self.val_every == 0 or e + 1 == epochs)
        return per_step * remaining_steps + self.val_seconds * validations

    def on_val_start(self, epoch, epochs, images, steps):
        self.val_epoch = f"val epoch {epoch + 1}/{epochs}"

    def on_val_step(self, step, steps):
        if self.due():
            self.line(f"{self.val_epoch}: {step}/{steps} images")

    def on_val_end(self, seconds, **data):
        self.val_seconds = seconds
        super().on_val_end(seconds=seconds, **data)

    def summary(self, title, rows):
        """Plain "key: value" lines: a table would cut long paths to a log's 80 columns."""
        self.line(escape(title))
        for key, value in rows:
            self.line(f"  {escape(key)}: {escape(value)}")


def make_printer(log_every: int, seconds: float, console: Console = console) -> TrainPrinter:
    """Live bars in a terminal, plain lines in a log."""
    return BarPrinter(console) if console.is_terminal else LogPrinter(console, log_every, seconds)


def train(
    context: typer.Context,
    data: Annotated[Path | None, typer.Argument(help="Folder with train/ and val/ (images + one VIA or COCO file each).")] = None,
    task: Annotated[Task | None, typer.Option("--task", help="instance (default model: yolact_resnet18_fpn) or semantic (pspnet_resnet18).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Architecture (see `segcli models`).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs (with --resume: extend the run to this many).")] = 30,
    batch: Annotated[int, typer.Option("--batch", help="Images per step (per process when distributed).")] = 4,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Short side the model sees (default: the model's).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default: auto's, 0.02 with sgd, 0.001 with adamw).")] = None,
    optimizer: Annotated[Optimizer | None, typer.Option("--optimizer", help="auto (instance default): AdamW at 0.002 x 5 / (4 + classes), as Ultralytics picks for short runs; adamw (semantic default, lr 0.001); or sgd (lr 0.02).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    init: Annotated[str, typer.Option("--init", help="scratch, imagenet (backbone), coco (whole model), or a segcli checkpoint: copy every weight that fits (e.g. a Mask R-CNN's backbone into a PSPNet).")] = "scratch",
    out: Annotated[Path | None, typer.Option("--out", help="Parent folder of runs (default runs/TASK).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run folder name (default exp, exp2, ...).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run folder (with --epochs: extend it).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    patience: Annotated[int, typer.Option("--patience", help="Stop after this many validations without improvement (0: never).")] = 0,
    val_every: Annotated[int, typer.Option("--val-every", help="Validate every N epochs (and after the last).")] = 1,
    log_every: Annotated[int, typer.Option("--log-every", help="stdout not a terminal (nohup, CI): a progress line every N steps (0: a tenth of an epoch), and at least every 30 s (env SEGCLI_LOG_SECONDS).")] = 0,
    train_ann: Annotated[Path | None, typer.Option("--train", help="Training annotation file (instead of DATA).")] = None,
    train_images: Annotated[Path | None, typer.Option("--train-images", help="Training image folder.")] = None,
    val_ann: Annotated[Path | None, typer.Option("--val", help="Validation annotation file (instead of DATA).")] = None,
    val_images: Annotated[Path | None, typer.Option("--val-images", help="Validation image folder.")] = None,
    label_attr: LabelAttrOption = None,
    category: CategoryOption = "object",
    aux: Annotated[bool, typer.Option("--aux", help="Semantic: add the auxiliary head loss.")] = False,
    fp16_weights: Annotated[bool, typer.Option("--fp16-weights", help="Store best.pt in fp16 (half the size).")] = False,
    time_budget: Annotated[float | None, typer.Option("--time", help="Hours: plan the epochs from measured speed to finish in this time (--epochs is then only the first guess).")] = None,
    mosaic: Annotated[bool | None, typer.Option("--mosaic/--no-mosaic", help="Instance: four training images in one (off for the last tenth of the epochs) (default: on).", show_default=False)] = None,
    copy_paste: Annotated[bool | None, typer.Option("--copy-paste/--no-copy-paste", help="Instance: paste objects of another training image onto each image (off for the last tenth of the epochs) (default: on).", show_default=False)] = None,
    ema: Annotated[bool | None, typer.Option("--ema/--no-ema", help="Validate and save (best.pt) an exponential moving average of the weights (default: on).", show_default=False)] = None,
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
    from segcli.engine.train.checkpointing import RunFinished
    from segcli.engine.train.trainer import TrainConfig, Trainer

    with user_errors():
        check_options({"--epochs": epochs, "--batch": batch, "--imgsz": imgsz, "--workers": workers,
                       "--patience": patience, "--val-every": val_every, "--lr": lr, "--seed": seed,
                       "--log-every": log_every})
        check_run_name(name)
        printer = make_printer(log_every, log_seconds())
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
                    fp16_weights=fp16_weights, model_args=_model_args(model_arg), time=time_budget,
                    **{k: v for k, v in {"ema": ema, "mosaic": mosaic, "copy_paste": copy_paste}.items() if v is not None})
                trainer = Trainer.new(config, printer)
            trainer.run()
        except RunFinished as finished:  # nothing to do is not an error: exit 0, nothing written
            printer.on_message(finished.message)
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

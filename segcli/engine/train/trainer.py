"""``segcli train``: the training loop behind the command, for both tasks.

Steps per epoch: (set the sampler's epoch) -> batches -> forward -> loss -> backward (scaled on
CUDA) -> clip -> step -> learning rate of the next iteration; then validation every
``val_every`` epochs, the metrics row, ``last.pt`` (with the full training state) and ``best.pt``
when the metric improved. Validation runs a copy of the model through the inference path of
``segcli eval --weights`` and ``segcli predict`` (``core.inference.Predictor``, the converter of
``core.results``, the scores of ``core.metrics``): the figures a run reports for its best epoch
are those ``segcli eval --weights best.pt`` gives on the validation split. Progress goes to a
callback ``on_event(kind, **data)`` (kinds: ``core.events.TRAIN_EVENTS``) so the CLI can draw it;
nothing here prints.

Learning rate: linear warm-up over ``warmup_iters`` iterations, then cosine decay to 1% of ``lr``
at the last iteration of the last epoch: a pure function of the iteration count, so a resumed
run continues on the same curve and an extended run (``--epochs M``) rebuilds the curve over the
new length from where it stands.

Interruptions: SIGINT (Ctrl-C) or SIGTERM stop the run before the next step (or during
validation); ``last.pt`` then holds that position (see ``checkpointing``: epoch, steps done, the
epoch's running loss sums, RNG states) and ``summary.json`` says where it stopped, and
``Interrupted`` is raised (the CLI exits 130/143). ``--resume`` leaves out the batches already
done (the order of an epoch's batches and each image's augmentation are fixed by seed and epoch)
and continues exactly.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from segcli import __version__
from segcli.data.datasets import (GroupedBatchSampler, InstanceDataset, SemanticDataset, collate_instance,
                                  collate_semantic)
from segcli.data.targets import class_index
from segcli.engine.core import distributed
from segcli.engine.core.inference import Predictor, SkippedImage
from segcli.engine.core.interrupt import Interrupted, ignore_signals, interruptible, saving, signal_name, stop_requested
from segcli.engine.core.metrics import COCO_MAX_DETS, ConfusionMatrix, coco_scores
from segcli.engine.core.plots import plot_curves
from segcli.engine.core.results import TruthKeyedPredictions, coco_results
from segcli.engine.core.run_folders import new_run_dir
from segcli.engine.train.checkpointing import (TrainState, check_resume_epochs, check_training, restore_ema,
                                               restore_training, rng_state, save_best, save_run_weights,
                                               seed_everything)
from segcli.engine.train.budget import PLAN_AFTER_STEPS, first_plan, planned_epochs
from segcli.engine.train.data import resolve_splits
from segcli.engine.train.ema import ModelEMA
from segcli.engine.train.metrics_csv import write_metrics_csv
from segcli.errors import SegcliError, with_article
from segcli.fileio import read_json, remove_temporaries, write_json_atomic
from segcli.formats.coco import write_coco
from segcli.ledger import Ledger
from segcli.models.checkpoint import make_record, read_checkpoint, transfer_weights
from segcli.models.defaults import EVAL_CONF
from segcli.models.device import select_device
from segcli.models.pretrained import INITS
from segcli.models.registry import DEFAULT_MODELS, build_model, model_args, task_of
from segcli.models.semantic import semantic_loss

Event = Callable[..., None]
MAX_WARNINGS = 20  # data problems named one by one per split; the rest are counted
BEST_METRIC = {"instance": "segm_AP", "semantic": "mIoU"}


@dataclass
class TrainConfig:
    """Every option of ``segcli train`` (saved as the run's args.json)."""

    data: str | None = None
    train: str | None = None
    train_images: str | None = None
    val: str | None = None
    val_images: str | None = None
    task: str = "instance"
    model: str | None = None
    epochs: int = 30
    batch: int = 4
    imgsz: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    workers: int = 2
    device: str = "auto"
    init: str = "scratch"
    out: str | None = None
    name: str | None = None
    seed: int = 0
    patience: int = 0
    val_every: int = 1
    label_attr: str | None = None
    category: str = "object"
    aux: bool = False
    clip_grad: float = 10.0
    fp16_weights: bool = False
    # the recipe (None: the default, resolved in __post_init__; issue 16's ablation chose them)
    ema: bool | None = None  # validate and save an exponential moving average of the weights (train/ema.py); default on
    time: float | None = None  # hours: plan the epochs to finish in this time (train/budget.py)
    mosaic: bool | None = None  # instance: four images in one (data/mosaic.py), off for the last tenth; default on
    copy_paste: bool | None = None  # instance: objects of another image pasted on (data/copy_paste.py), off as mosaic; default on
    model_args: dict = field(default_factory=dict)  # further architecture arguments, e.g. backbone_layers

    def __post_init__(self) -> None:
        self.model = self.model or DEFAULT_MODELS.get(self.task)
        if self.task not in BEST_METRIC:
            raise SegcliError(f"unknown --task {self.task!r} (instance or semantic)")
        if task_of(self.model) != self.task:
            raise SegcliError(f"--model {self.model} is {with_article(task_of(self.model))} model but --task is {self.task}")
        self.optimizer = self.optimizer or ("auto" if self.task == "instance" else "adamw")
        self.ema = True if self.ema is None else self.ema
        for name in ("mosaic", "copy_paste"):
            if getattr(self, name) is None:
                setattr(self, name, self.task == "instance")
        if self.optimizer not in ("sgd", "adamw", "auto"):
            raise SegcliError(f"unknown --optimizer {self.optimizer!r} (sgd, adamw or auto)")
        if self.optimizer != "auto":  # auto: AdamW at a rate fitted to the classes (Trainer)
            self.lr = self.lr or (0.02 if self.optimizer == "sgd" else 1e-3)
        for name in ("epochs", "batch", "val_every"):
            if getattr(self, name) < 1:
                raise SegcliError(f"--{name.replace('_', '-')} must be at least 1")
        if self.init not in INITS and not Path(self.init).is_file():
            raise SegcliError(f"--init {self.init!r}: neither {', '.join(INITS)} nor a checkpoint file")
        if self.workers < 0 or self.patience < 0:
            raise SegcliError("--workers and --patience must be >= 0")
        if self.time is not None and not (math.isfinite(self.time) and self.time > 0):
            raise SegcliError(f"--time {self.time}: expected a number of hours > 0")

    def mixes_images(self, epoch: int) -> bool:
        """Whether --mosaic and --copy-paste may act in ``epoch`` (from 0): in all but the last
        tenth of the epochs (at least the last one), so the model ends on whole images."""
        return epoch < self.epochs - max(1, self.epochs // 10)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class _Stop(Exception):
    """A signal arrived: stop at this point (carried out of the loops to ``Trainer.run``)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def learning_rate(config: TrainConfig, iteration: int, total: int) -> float:
    """Warm-up then cosine to 1% (see the module docstring). The warm-up is at most a fifth of
    the run, so short runs are not all warm-up."""
    warmup = min(config.warmup_iters, total // 5)
    if iteration < warmup:
        return config.lr * (0.001 + 0.999 * iteration / max(1, warmup))
    progress = min(1.0, (iteration - warmup) / max(1, total - warmup))
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    """One training run. Build with ``Trainer.new(config)`` or ``Trainer.resume(folder, ...)``."""

    def __init__(self, config: TrainConfig, run_dir: Path | None, on_event: Event, resume: dict | None = None):
        self.session_start = time.monotonic()  # --time counts everything from here
        self.config, self.on_event = config, on_event
        self.device = select_device(config.device)
        self.group = distributed.init_process_group(self.device)
        if not self.group.is_main:  # only rank 0 reports
            self.on_event = lambda *args, **kwargs: None
        if self.group.distributed and self.device.type == "cuda":
            self.device = torch.device(f"cuda:{self.group.local_rank}")
        seed_everything(config.seed + self.group.rank)
        # a checkpoint to start from is checked whole before the data is read or anything is built
        init_payload = read_checkpoint(Path(config.init)) if config.init not in INITS and resume is None else None
        self.train_split, self.val_split = resolve_splits(
            _path(config.data), _path(config.train), _path(config.train_images), _path(config.val),
            _path(config.val_images), config.label_attr, config.category)
        self.categories = [{"id": c.id, "name": c.name} for c in self.train_split.dataset.categories]
        self.classes = class_index(self.train_split.dataset)
        overrides = {"aux": config.aux, "input_size": config.imgsz} if config.task == "semantic" \
            else {"min_size": config.imgsz}
        self.model_args = model_args(config.model, len(self.categories) + 1, **{**config.model_args, **overrides})
        self.train_data, self.val_data = self._datasets()
        self._report_data_problems()
        self._report_default_category()
        self.model = build_model(config.model, self.model_args,
                                 config.init if config.init in INITS else "scratch").to(self.device)
        if init_payload is not None:
            copied, total = transfer_weights(self.model, Path(config.init), init_payload)
            self.on_event("message", text=f"--init {config.init}: {copied} of {total} tensors copied, "
                                          f"the rest start from scratch")
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.state = TrainState()
        self.rank_rngs: list[dict] | None = None  # under torchrun: every rank's RNG states (_gather_rng)
        self.resume_file = Path(run_dir) / "weights" / "last.pt" if resume is not None else None
        if resume is not None:
            self._restore(resume)
        self.seconds_before = self.state.seconds  # spent by earlier sessions of this run
        self.last_train_seconds = 0.0  # --time: the last epoch's training time (its validation's is the rest)
        self.train_loader = self._loader(self.train_data)
        self.val_truth: dict | None = None  # the validation COCO ground truth, made at the first validation
        if resume is not None:
            self._check_position(self.resume_file)
        # rank 0 validates and saves: only it keeps the average
        self.ema = ModelEMA(self.bare_model, config.epochs * len(self.train_loader)) \
            if config.ema and self.group.is_main else None
        if resume is not None and self.ema is not None:
            restore_ema(resume, self.ema, self.resume_file)
        # made last, once every input has been read and checked: a refusal leaves no folder behind
        self.run_dir = run_dir if run_dir is not None else (
            new_run_dir(_path(config.out), config.name, config.task) if self.group.is_main else None)
        if self.group.distributed:
            self.model = DistributedDataParallel(self.model)

    # construction -------------------------------------------------------------------------
    @classmethod
    def new(cls, config: TrainConfig, on_event: Event = lambda *a, **k: None) -> Trainer:
        return cls(config, None, on_event)

    @classmethod
    def resume(cls, folder: Path, on_event: Event = lambda *a, **k: None, epochs: int | None = None,
               task: str | None = None, device: str | None = None, workers: int | None = None) -> Trainer:
        """Continue the run in ``folder`` from its last.pt (``epochs`` extends it).

        Raises:
            RunFinished: the run has done its epochs and ``epochs`` asks for no more.
        """
        folder = Path(folder)
        args_path, last = folder / "args.json", folder / "weights" / "last.pt"
        if not args_path.is_file() or not last.is_file():
            raise SegcliError("not a segcli run folder (needs args.json and weights/last.pt)", folder)
        saved = read_json(args_path)
        if not isinstance(saved, dict) or "task" not in saved:
            raise SegcliError("args.json is not a segcli training record", args_path)
        if task is not None and task != saved["task"]:
            raise SegcliError(f"this run trained {with_article(saved['task'])} model; --task {task} cannot resume it", folder)
        payload = read_checkpoint(last)
        check_training(payload.get("training"), last)
        # before anything is built or touched
        check_resume_epochs(folder, payload["training"]["state"].get("epoch", 0), saved["epochs"], epochs)
        if int(os.environ.get("RANK", "0")) == 0:  # what a kill -9 left of atomic writes
            for place in (folder, folder / "weights"):
                remove_temporaries(place)
        previous_epochs = saved["epochs"]
        saved.update({k: v for k, v in {"epochs": epochs, "device": device, "workers": workers}.items()
                      if v is not None})
        # the architecture is the checkpoint's, whatever the defaults of this segcli version
        stored = payload["record"]["model"]["args"]
        defaults = model_args(saved["model"], stored["num_classes"])
        saved["model_args"] = {k: v for k, v in stored.items() if k in defaults and k not in ("num_classes",)}
        trainer = cls(TrainConfig.from_json(saved), folder, on_event, resume=payload)
        if epochs is not None and epochs != previous_epochs:
            trainer._note_extension(previous_epochs)
        return trainer

    def _datasets(self) -> tuple:
        if self.config.task == "instance":
            return (InstanceDataset(self.train_split.dataset, self.train_split.ledger, True, self.classes),
                    InstanceDataset(self.val_split.dataset, self.val_split.ledger, False, self.classes))
        size = self.model_args["input_size"]
        return (SemanticDataset(self.train_split.dataset, self.train_split.ledger, True, size, self.classes),
                SemanticDataset(self.val_split.dataset, self.val_split.ledger, False, size, self.classes))

    def _report_data_problems(self) -> None:
        """Name every image left out or damaged (the splits' ledgers: missing, unreadable, e.g. an
        HTML page called .jpg; the datasets' checks), with a count per split."""
        for split, data in ((self.train_split, self.train_data), (self.val_split, self.val_data)):
            named = [(e.image or e.file, e.action, e.reason) for e in split.ledger.entries if e.action != "matched"]
            named += data.problems
            for image, action, reason in named[:MAX_WARNINGS]:
                self.on_event("warning", text=f"{split.name}: {image}: {action}: {reason}")
            if len(named) > MAX_WARNINGS:
                self.on_event("warning", text=f"{split.name}: ... and {len(named) - MAX_WARNINGS} more "
                                              f"(see `segcli stats {split.annotation}`)")
            left_out = len(split.dataset.images) - len(data)
            damaged = sum(1 for p in data.problems if p[1] == "damaged")
            if left_out or damaged:
                self.on_event("warning", text=f"{split.name}: {left_out} of {len(split.dataset.images)} images "
                                              f"left out, {damaged} damaged")
        if not len(self.train_data):
            raise SegcliError("no usable training image (see the warnings above)", self.train_split.annotation)

    def _report_default_category(self) -> None:
        """Say which class VIA regions without a class attribute get (a VIA file with no region
        attributes trains as one class, --category's name, default 'object') and how to name it.
        (COCO files have category ids; a segcli COCO file marks what was defaulted in its VIA.)"""
        counts = []
        for split in (self.train_split, self.val_split):
            if not split.dataset.source_format.startswith("via"):
                continue
            annotations = [a for image in split.dataset.images for a in image.annotations]
            defaulted = sum(1 for a in annotations if a.category_from_default)
            if defaulted:
                counts.append(f"{defaulted} of {len(annotations)} {split.name}")
        if counts:
            self.on_event("message", text=f"no class attribute on {' and '.join(counts)} regions: they train as "
                                          f"class '{self.config.category}' (name it with --category NAME, or "
                                          "choose the attribute with --label-attr)")

    def _optimizer(self) -> torch.optim.Optimizer:
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if self.config.optimizer == "auto":
            # Ultralytics' choice for runs under 10,000 steps: AdamW at 0.002 * 5 / (4 + classes)
            self.config.optimizer = "adamw"
            self.config.lr = self.config.lr or round(0.002 * 5 / (4 + len(self.categories)), 6)
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=self.config.lr, momentum=0.9, weight_decay=self.config.weight_decay)
        return torch.optim.AdamW(parameters, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _loader(self, dataset) -> DataLoader:
        """The training batches: grouped by aspect ratio, this process's share under torchrun."""
        ratios = [dataset.aspect_ratio(i) for i in range(len(dataset))]
        min_batch = 2 if self.config.task == "semantic" else 1
        if min_batch > 1 and (self.config.batch < 2 or len(dataset) < 2 * self.group.world_size):
            raise SegcliError("semantic training needs --batch 2 or more and at least 2 training images per "
                              "process (BatchNorm cannot learn from one image)")
        sampler = GroupedBatchSampler(ratios, self.config.batch, shuffle=True, seed=self.config.seed,
                                      rank=self.group.rank, world_size=self.group.world_size, min_batch=min_batch)
        collate = collate_instance if self.config.task == "instance" else collate_semantic
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.config.workers, collate_fn=collate,
                          generator=torch.Generator(), persistent_workers=False,
                          worker_init_fn=ignore_signals if self.config.workers else None)

    def _restore(self, payload: dict) -> None:
        self.state = restore_training(payload, self.model, self.optimizer, self.scaler, self.group, self.config.model,
                                      self.resume_file)

    def _check_position(self, last: Path) -> None:
        """The saved position must lie inside this run: epoch 0..epochs done, step 0..steps."""
        state, steps = self.state, len(self.train_loader)
        if state.step > steps:
            raise SegcliError(f"training: state step {state.step} but an epoch has {steps} steps", last)

    def _note_extension(self, previous: int) -> None:
        total = self.config.epochs * len(self.train_loader)
        now = learning_rate(self.config, self.state.iteration, total)
        self.on_event("message", text=(
            f"{'extending' if self.config.epochs > previous else 'shortening'} the run from {previous} to {self.config.epochs} epochs: the warm-up/cosine schedule "
            f"is rebuilt over {self.config.epochs} epochs from iteration {self.state.iteration}; the learning "
            f"rate continues at {now:.3g} and decays to {0.01 * self.config.lr:.3g} at the new end"))

    # the loop -----------------------------------------------------------------------------
    @property
    def bare_model(self) -> torch.nn.Module:
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def run(self) -> dict:
        """Train to the last epoch (or early stop); return the summary.

        Raises:
            Interrupted: SIGINT/SIGTERM arrived; last.pt holds the position reached (see the
                module docstring). Under torchrun every rank stops at the same step.
        """
        note = "stopping before the next step and saving weights/last.pt" + (
            "" if self.group.distributed else " (once more: stop at once, without saving this epoch's progress)")
        with interruptible(note, self.group.is_main, self.group.distributed, lambda: (
                "stopped at once: weights/last.pt holds the last finished epoch; continue with: segcli train "
                f"--resume {self.run_dir}")):
            return self._run()

    def _run(self) -> dict:
        config = self.config
        if self.group.is_main:
            write_json_atomic(self.run_dir / "args.json", asdict(config), overwrite=True, indent=1)
            self.on_event("start", run_dir=self.run_dir, train_images=len(self.train_data),
                          val_images=len(self.val_data), categories=[c["name"] for c in self.categories],
                          device=str(self.device), world_size=self.group.world_size,
                          start_epoch=self.state.epoch, start_step=self.state.step, epochs=config.epochs,
                          val_every=config.val_every)
        stop, interrupted = False, 0
        try:
            epoch = self.state.epoch
            while epoch < config.epochs:
                epoch_began = time.monotonic()
                row = self._train_epoch(epoch)
                if config.time is not None:
                    self._plan(epoch, row["train_seconds"])
                if (epoch + 1) % config.val_every == 0 or epoch + 1 >= config.epochs:
                    signum = 0
                    if self.group.is_main:
                        try:
                            row.update(self._validate_epoch(epoch))
                        except _Stop as exc:
                            signum = exc.signum
                    signum = distributed.all_max(self.group, signum)  # (a barrier as well)
                    if signum:
                        raise _Stop(signum)
                self._gather_rng()
                self.state.epoch_seconds.append(time.monotonic() - epoch_began)
                if self.group.is_main:
                    stop = self._end_epoch(epoch, row)
                # the epoch's time includes its saves and plots, which --time must plan for too
                # (last.pt, written in _end_epoch, holds the time without them)
                self.state.epoch_seconds[-1] = time.monotonic() - epoch_began
                stop = distributed.broadcast_flag(self.group, stop)
                if stop:
                    break
                epoch += 1
        except _Stop as exc:
            interrupted = exc.signum
            try:
                self._gather_rng()
            except RuntimeError:  # another rank is gone: resuming gives every rank rank 0's states
                self.rank_rngs = None
        finally:
            distributed.destroy(self.group)
        if interrupted:  # out of the except block: the loaders' iterators are gone, their workers shut down
            self._interrupted(interrupted)
        if self.group.is_main and self.state.best_epoch < 1 and self.state.rows:
            self._save_last_as_best()
        return self._summary(stopped_early=stop)

    def _save_last_as_best(self) -> None:
        """No validation ever scored (e.g. a validation split without objects): best.pt is the
        last epoch's weights, so the summary never points at a file that does not exist."""
        metric = BEST_METRIC[self.config.task]
        with saving():
            save_best(self.run_dir / "weights", self.ema.module if self.ema is not None else self.bare_model,
                      self._record(), self.config.fp16_weights)
        self.on_event("message", text=f"no validation {metric} was ever scored (does the validation split hold "
                                      f"objects?): weights/best.pt holds the last epoch's weights")

    def _gather_rng(self) -> None:
        """Under torchrun, every rank's RNG states for rank 0 to save (dropout differs by rank, so
        an exact resume restores each rank's own)."""
        if self.group.distributed:
            self.rank_rngs = distributed.all_gather(self.group, rng_state())

    def _agreed_stop(self) -> int:
        """The signal that stops the run now (0: go on); under torchrun every rank agrees."""
        try:
            return distributed.all_max(self.group, stop_requested() or 0)
        except RuntimeError:  # another rank is gone (torchrun stops all of them on a signal)
            if stop_requested():
                return stop_requested()
            raise

    def _interrupted(self, signum: int) -> None:
        """Save the position reached (rank 0) and raise Interrupted."""
        state, steps = self.state, len(self.train_loader)
        if not self.group.is_main:
            raise Interrupted(signum)
        with saving():
            self._save(improved=False)
            where = (f"at the start of epoch {state.epoch + 1}" if state.step == 0 else
                     f"at epoch {state.epoch + 1} step {state.step} of {steps}" if state.step < steps else
                     f"in the validation after epoch {state.epoch + 1}")
            summary = {**self._summary_data(stopped_early=False),
                       "interrupted": {"signal": signal_name(signum), "epoch": state.epoch + 1, "step": state.step,
                                       "steps": steps}}
            write_json_atomic(self.run_dir / "summary.json", summary, overwrite=True, indent=1)
        raise Interrupted(signum, f"{where} ({signal_name(signum)}): saved {self.run_dir / 'weights' / 'last.pt'}; "
                                  f"continue with: segcli train --resume {self.run_dir}")

    def _train_epoch(self, epoch: int) -> dict:
        config, model = self.config, self.model
        model.train()
        scales = _train_scales(self.model_args["min_size"]) if config.task == "instance" else None
        self.train_loader.batch_sampler.set_epoch(epoch)
        self.train_loader.generator.manual_seed(config.seed * 1000 + epoch)
        self.train_data.seed, self.train_data.epoch = config.seed, epoch
        if config.task == "instance":  # the last epochs see whole images, as validation and predict do
            self.train_data.mosaic = config.mosaic and config.mixes_images(epoch)
            self.train_data.copy_paste = config.copy_paste and config.mixes_images(epoch)
        # resuming in the middle of this epoch: leave out the batches done, carry on its sums
        first = self.state.step if epoch == self.state.epoch else 0
        partial = self.state.partial if first else {}
        sums: dict[str, float] = dict(partial.get("sums", {}))
        images_seen, before, lr = partial.get("images_seen", 0), partial.get("seconds", 0.0), partial.get("lr", 0.0)
        start = time.perf_counter()
        self.train_loader.batch_sampler.start = first
        self.on_event("epoch_start", epoch=epoch, epochs=config.epochs, steps=len(self.train_loader))
        for step, (inputs, targets, _, bad) in enumerate(self.train_loader, start=first):
            signum = self._agreed_stop()
            if signum:
                self._keep_position(step, sums, images_seen, before + time.perf_counter() - start, lr)
                raise _Stop(signum)
            for name in bad:
                self.on_event("warning", text=f"skipped an image that could not be decoded: {name}")
            if inputs is None or len(inputs) == 0:
                continue
            if scales:
                # one scale per batch: torchvision draws one per image and pads the batch to the
                # largest, which cost 25% more compute for the same jitter (benchmarks/README.md)
                self.bare_model.transform.min_size = (scales[int(torch.randint(len(scales), ()))],)
            if config.time is not None and epoch == 0 and step == min(PLAN_AFTER_STEPS, len(self.train_loader)) - 1 \
                    and step > first:
                self._first_plan((before + time.perf_counter() - start) / (step - first))
            lr = learning_rate(config, self.state.iteration, config.epochs * len(self.train_loader))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            try:
                losses = self._losses(inputs, targets)
            except RuntimeError:  # DDP: another rank is gone (torchrun stops all of them on a signal)
                if not (self.group.distributed and stop_requested()):
                    raise
                self._keep_position(step, sums, images_seen, before + time.perf_counter() - start, lr)
                raise _Stop(stop_requested()) from None
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                names = [self.train_data.records[i].file_name for i in _batch_indices(self.train_loader, step)]
                raise SegcliError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                                  f"(images: {', '.join(names)}); lower --lr, or check these annotations")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.state.iteration += 1
            if self.ema is not None:
                self.ema.update(self.bare_model)
            count = len(inputs)
            images_seen += count * self.group.world_size
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            sums["loss"] = sums.get("loss", 0.0) + loss.item()
            # images and seconds of the whole epoch, also of the part done before a --resume
            self.on_event("step", epoch=epoch, epochs=config.epochs, step=step + 1, steps=len(self.train_loader),
                          lr=lr, losses={k: v / (step + 1) for k, v in sums.items()},
                          images_per_s=images_seen / (before + time.perf_counter() - start))
        self.train_loader.batch_sampler.start = 0
        steps = max(1, len(self.train_loader))
        elapsed = before + time.perf_counter() - start
        # kept until the epoch is recorded, so a stop during validation resumes at the validation
        self._keep_position(len(self.train_loader), sums, images_seen, elapsed, lr)
        return {"epoch": epoch + 1, "lr": lr, **{k: v / steps for k, v in sums.items()},
                "images_per_s": images_seen / elapsed if elapsed else 0.0, "train_seconds": elapsed}

    def spent_seconds(self) -> float:
        """Wall time the run has spent, earlier sessions included."""
        return self.seconds_before + time.monotonic() - self.session_start

    def _first_plan(self, step_seconds: float) -> None:
        """--time: the epochs from the speed of the first steps (every rank agrees on rank 0's)."""
        planned = first_plan(self.config.time * 3600, self.spent_seconds(), step_seconds, len(self.train_loader))
        self._set_epochs(distributed.all_max(self.group, planned if self.group.is_main else 0))

    def _plan(self, epoch: int, train_seconds: float) -> None:
        """--time, after an epoch's training: the epochs that fit, from the recent epochs' times
        (this one's validation estimated by the last one's, or by a tenth of its training), so
        that an epoch that ends the run is known before its validation, which it always gets."""
        times = self.state.epoch_seconds
        validation = times[-1] - self.last_train_seconds if times and self.last_train_seconds else 0.1 * train_seconds
        self.last_train_seconds = train_seconds
        planned = planned_epochs(self.config.time * 3600, self.spent_seconds() + validation, epoch + 1,
                                 [*times, train_seconds + validation], current=self.config.epochs)
        self._set_epochs(distributed.all_max(self.group, planned if self.group.is_main else 0))

    def _set_epochs(self, epochs: int) -> None:
        if epochs == self.config.epochs:
            return
        self.config.epochs = epochs
        if self.ema is not None:
            self.ema.set_length(epochs * len(self.train_loader))
        if self.group.is_main:  # args.json holds the plan: --resume continues it
            write_json_atomic(self.run_dir / "args.json", asdict(self.config), overwrite=True, indent=1)
            self.on_event("message", text=f"--time {self.config.time:g} h: {epochs} epochs planned "
                                          f"({self.spent_seconds() / 60:.1f} min spent)")

    def _keep_position(self, step: int, sums: dict, images_seen: int, seconds: float, lr: float) -> None:
        self.state.step = step
        self.state.partial = {"sums": dict(sums), "images_seen": images_seen, "seconds": seconds, "lr": lr}

    def _losses(self, inputs, targets) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            if self.config.task == "instance":
                images = [image.to(self.device, non_blocking=True) for image in inputs]
                targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
                return self.model(images, targets)
            outputs = self.model(inputs.to(self.device, non_blocking=True))
            return {"loss_ce": semantic_loss(outputs, targets.to(self.device, non_blocking=True))}

    def _validate_epoch(self, epoch: int) -> dict:
        """``validate`` between its val_start and val_end events (the CLI's bar or log line)."""
        start = time.perf_counter()
        images = len(self.val_data)
        self.on_event("val_start", epoch=epoch, epochs=self.config.epochs, images=images, steps=images)
        metrics = self.validate()
        self.on_event("val_end", epoch=epoch, epochs=self.config.epochs, images=images,
                      metrics=metrics, seconds=time.perf_counter() - start)
        return metrics

    def validate(self) -> dict:
        """Validation metrics with the model as it is now (rank 0 only): the figures ``segcli eval
        --weights`` gives for the best.pt this model would be saved as, through the same
        Predictor, converter and scores. Each image's result is taken in as it comes (an image's
        pixels are not kept)."""
        predictor = Predictor(self._inference_copy(), make_record(self.config.model, self.model_args, self.categories),
                              self.device, max_det=COCO_MAX_DETS, default_conf=EVAL_CONF)
        records = self.val_data.records
        position = {record.path: k for k, record in enumerate(records)}
        add, scores = self._instance_scoring() if self.config.task == "instance" else self._semantic_scoring()
        for step, item in enumerate(predictor.predict([r.path for r in records], Path("/"), self.config.batch,
                                                      self.config.workers), start=1):
            if stop_requested():
                raise _Stop(stop_requested())
            if not isinstance(item, SkippedImage):  # an image that no longer decodes scores as missed
                add(position[item.path], item)
            self.on_event("val_step", step=step, steps=len(records))
        return scores()

    def _inference_copy(self) -> torch.nn.Module:
        """A copy for inference of what best.pt would hold (the model, or its average under --ema;
        inference settings and CPU kernel pinning stay off the model being trained), with
        best.pt's precision: fp16-rounded under --fp16-weights."""
        model = copy.deepcopy(self.ema.module if self.ema is not None else self.bare_model).eval()
        if self.config.fp16_weights:
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(tensor.half().float())
        return model

    def _instance_scoring(self) -> tuple[Callable, Callable[[], dict]]:
        """(take in one image's prediction, the mask and box AP of those taken in)."""
        truth = self._val_truth()
        keyed = TruthKeyedPredictions(truth, self.categories, [])

        def scores() -> dict:
            results = coco_results(keyed.coco())
            segm, bbox = coco_scores(truth, results, "segm"), coco_scores(truth, results, "bbox")
            return {"segm_AP": segm["AP"], "segm_AP50": segm["AP50"], "segm_AP75": segm["AP75"],
                    "bbox_AP": bbox["AP"], "bbox_AP50": bbox["AP50"]}

        return lambda index, item: keyed.add(item, self.val_data.records[index].file_name), scores

    def _val_truth(self) -> dict:
        """The validation images' COCO ground truth, written by the COCO writer as ``segcli eval``
        writes any ground truth it reads (computed once)."""
        if self.val_truth is None:
            dataset = replace(self.val_split.dataset, images=self.val_data.records)
            self.val_truth = write_coco(dataset, Ledger(str(self.val_split.annotation)))
        return self.val_truth

    def _semantic_scoring(self) -> tuple[Callable, Callable[[], dict]]:
        """(take in one image's label map, the mIoU and accuracies of those taken in)."""
        matrix = ConfusionMatrix(len(self.categories) + 1)

        def scores() -> dict:
            figures = matrix.scores()
            return {"mIoU": figures["mIoU"], "pixel_accuracy": figures["pixel_accuracy"],
                    "mean_accuracy": figures["mean_accuracy"]}

        return lambda index, item: matrix.update(self.val_data.full_label(index), item.label_map), scores

    def _end_epoch(self, epoch: int, row: dict) -> bool:
        """Record the epoch, save weights, decide on early stopping (rank 0)."""
        config, state = self.config, self.state
        metric = BEST_METRIC[config.task]
        state.epoch, state.step, state.partial = epoch + 1, 0, {}
        improved = metric in row and row[metric] > state.best
        if improved:
            state.best, state.best_epoch, state.stale_epochs = row[metric], epoch + 1, 0
        elif metric in row:
            state.stale_epochs += 1
        state.rows.append(row)
        with saving():
            self._save(improved)
            write_metrics_csv(self.run_dir / "metrics.csv", state.rows)
            plot_curves(state.rows, metric, self.run_dir / "results.png")
        self.on_event("epoch_end", epoch=epoch, row=row, improved=improved, best=state.best, metric=metric)
        if config.patience and state.stale_epochs >= config.patience:
            self.on_event("message", text=f"no {metric} improvement for {config.patience} validations: "
                                          f"stopping early (best {state.best:.4f} at epoch {state.best_epoch})")
            return True
        return False

    def _record(self) -> dict:
        rows = self.state.rows
        metrics = dict(rows[self.state.best_epoch - 1] if self.state.best_epoch > 0 else rows[-1] if rows else {})
        return make_record(self.config.model, self.model_args, self.categories,
                           train={**asdict(self.config), "segcli_version": __version__,
                                  "train_images": len(self.train_data), "val_images": len(self.val_data)},
                           metrics=metrics)

    def _save(self, improved: bool) -> None:
        self.state.seconds = self.spent_seconds()
        save_run_weights(self.run_dir / "weights", self.bare_model, self._record(), self.optimizer, self.scaler,
                         self.state, self.rank_rngs, best=improved, fp16_best=self.config.fp16_weights, ema=self.ema)

    def _summary_data(self, stopped_early: bool) -> dict:
        return {"run_dir": str(self.run_dir), "epochs_done": self.state.epoch, "best_epoch": self.state.best_epoch,
                "best": self.state.best, "metric": BEST_METRIC[self.config.task], "stopped_early": stopped_early,
                "last_row": self.state.rows[-1] if self.state.rows else {}}

    def _summary(self, stopped_early: bool) -> dict:
        summary = self._summary_data(stopped_early)
        if self.group.is_main:
            write_json_atomic(self.run_dir / "summary.json", summary, overwrite=True, indent=1)
            self.on_event("end", **summary)
        return summary


def _train_scales(size: int) -> list[int]:
    """Short sides for scale jitter: multiples of 32 from 0.8x to 1.2x the model's size, never
    below 32 (at --imgsz 32 the range began at 0 and the model's resize failed)."""
    return list(range(max(32, int(size * 0.8) // 32 * 32), int(size * 1.2) + 1, 32)) or [size]


def _path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None


def _batch_indices(loader: DataLoader, step: int) -> list[int]:
    return loader.batch_sampler._batches()[step]


def train(config: TrainConfig, on_event: Event = lambda *a, **k: None) -> dict:
    """Run a new training (see TrainConfig)."""
    return Trainer.new(config, on_event).run()

"""``segcli train``: the training loop behind the command, for both tasks.

Steps per epoch: (set the sampler's epoch) -> batches -> forward -> loss -> backward (scaled on
CUDA) -> clip -> step -> learning rate of the next iteration; then validation every
``val_every`` epochs with the evaluator ``segcli eval`` uses, the metrics row, ``last.pt`` (with
the full training state) and ``best.pt`` when the metric improved. Progress goes to a callback
``on_event(kind, **data)`` so the CLI can draw it; nothing here prints. Events: ``start``,
``epoch_start``, ``step`` (after every training step), ``val_start``, ``val_step`` (after every
validation batch), ``val_end`` (the figures and seconds), ``epoch_end``, ``message``, ``warning``
and ``end``.

Learning rate: linear warm-up over ``warmup_iters`` iterations, then cosine decay to 1% of ``lr``
at the last iteration of the last epoch: a pure function of the iteration count, so a resumed
run continues on the same curve and an extended run (``--epochs M``) rebuilds the curve over the
new length from where it stands.

Interruptions: SIGINT (Ctrl-C) or SIGTERM stop the run before the next step (or during
validation); ``last.pt`` then holds that position (epoch, steps done, the epoch's running loss
sums, RNG states) and ``summary.json`` says where it stopped, and ``Interrupted`` is raised (the CLI
exits 130/143). ``--resume`` leaves out the batches already done (the order of an epoch's batches
and each image's augmentation are fixed by seed and epoch) and continues exactly.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from segcli import __version__
from segcli.data.datasets import (GroupedBatchSampler, InstanceDataset, SemanticDataset, collate_instance,
                                  collate_semantic)
from segcli.data.targets import class_index
from segcli.engine.core import distributed
from segcli.engine.core.metrics import ConfusionMatrix, coco_scores
from segcli.engine.core.interrupt import Interrupted, interruptible, ignore_signals, saving, signal_name, stop_requested
from segcli.engine.core.results import detections_to_results, ground_truth_dict, semantic_prediction
from segcli.engine.core.plots import plot_curves
from segcli.engine.core.run_folders import new_run_dir
from segcli.engine.train.metrics_csv import write_metrics_csv
from segcli.engine.train.data import resolve_splits
from segcli.errors import SegcliError, with_article
from segcli.fileio import read_json, remove_temporaries, write_json_atomic
from segcli.models.checkpoint import make_record, read_checkpoint, save_checkpoint, transfer_weights
from segcli.models.device import select_device
from segcli.models.pretrained import INITS
from segcli.models.instance import configure_inference
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
    model_args: dict = field(default_factory=dict)  # further architecture arguments, e.g. backbone_layers

    def __post_init__(self) -> None:
        self.model = self.model or DEFAULT_MODELS.get(self.task)
        if self.task not in BEST_METRIC:
            raise SegcliError(f"unknown --task {self.task!r} (instance or semantic)")
        if task_of(self.model) != self.task:
            raise SegcliError(f"--model {self.model} is {with_article(task_of(self.model))} model but --task is {self.task}")
        self.optimizer = self.optimizer or ("sgd" if self.task == "instance" else "adamw")
        if self.optimizer not in ("sgd", "adamw"):
            raise SegcliError(f"unknown --optimizer {self.optimizer!r} (sgd or adamw)")
        self.lr = self.lr or (0.02 if self.optimizer == "sgd" else 1e-3)
        for name in ("epochs", "batch", "val_every"):
            if getattr(self, name) < 1:
                raise SegcliError(f"--{name.replace('_', '-')} must be at least 1")
        if self.init not in INITS and not Path(self.init).is_file():
            raise SegcliError(f"--init {self.init!r}: neither {', '.join(INITS)} nor a checkpoint file")
        if self.workers < 0 or self.patience < 0:
            raise SegcliError("--workers and --patience must be >= 0")

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainState:
    """What ``--resume`` restores besides weights and optimizer."""

    epoch: int = 0
    iteration: int = 0
    best: float = -1.0
    best_epoch: int = -1
    stale_epochs: int = 0
    rows: list[dict] = field(default_factory=list)
    step: int = 0  # batches done of epoch ``epoch`` (0-based) when stopped in its middle
    partial: dict = field(default_factory=dict)  # that epoch's running sums, images, seconds, lr


class RunFinished(Exception):
    """``--resume`` of a run that has done every epoch asked: nothing to train, nothing is
    written. ``message`` says so and how to extend the run (``--epochs N`` with N larger)."""

    def __init__(self, folder: Path, epochs_done: int, epochs: int, asked: int | None):
        self.folder, self.epochs_done, self.epochs = folder, epochs_done, epochs
        fewer = f" (--epochs {asked} is not more)" if asked is not None and asked != epochs else ""
        self.message = (f"{folder} is already finished: {epochs_done} of {epochs} epochs done{fewer}; to train it "
                        f"longer give the new total: segcli train --resume {folder} --epochs N with N > {epochs_done}")
        super().__init__(self.message)


def check_resume_epochs(folder: Path, done: int, epochs: int, asked: int | None) -> None:
    """RunFinished when the run has done its epochs (and --epochs asks for no more); SegcliError
    when --epochs asks for fewer than a stopped run has already done."""
    if done >= epochs and (asked is None or asked <= done):
        raise RunFinished(folder, done, epochs, asked)
    if asked is not None and asked <= done:
        raise SegcliError(f"--epochs {asked}: this run has already done {done} epochs; give more than {done}, "
                          f"or leave --epochs out to finish its {epochs}", folder)


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
        self.config, self.on_event = config, on_event
        self.device = select_device(config.device)
        self.group = distributed.init_process_group(self.device)
        if not self.group.is_main:  # only rank 0 reports
            self.on_event = lambda *args, **kwargs: None
        if self.group.distributed and self.device.type == "cuda":
            self.device = torch.device(f"cuda:{self.group.local_rank}")
        _seed_everything(config.seed + self.group.rank)
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
        self.train_loader = self._loader(self.train_data, train=True)
        self.val_loader = self._loader(self.val_data, train=False)
        if resume is not None:
            self._check_position(self.resume_file)
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
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=self.config.lr, momentum=0.9, weight_decay=self.config.weight_decay)
        return torch.optim.AdamW(parameters, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _loader(self, dataset, train: bool) -> DataLoader:
        ratios = [dataset.aspect_ratio(i) for i in range(len(dataset))]
        group = self.group if train else distributed.ProcessGroup()
        min_batch = 2 if train and self.config.task == "semantic" else 1
        if train and min_batch > 1 and (self.config.batch < 2 or len(dataset) < 2 * group.world_size):
            raise SegcliError("semantic training needs --batch 2 or more and at least 2 training images per "
                              "process (BatchNorm cannot learn from one image)")
        sampler = GroupedBatchSampler(ratios, self.config.batch if train else 1, shuffle=train,
                                      seed=self.config.seed, rank=group.rank, world_size=group.world_size,
                                      min_batch=min_batch)
        collate = collate_instance if self.config.task == "instance" else collate_semantic
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.config.workers, collate_fn=collate,
                          generator=torch.Generator(), persistent_workers=False,
                          worker_init_fn=ignore_signals if self.config.workers else None)

    def _restore(self, payload: dict) -> None:
        record = payload["record"]
        if record["model"]["name"] != self.config.model:
            raise SegcliError(f"last.pt is {with_article(record['model']['name'])}, args.json says {self.config.model}")
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        self.model.load_state_dict(state)
        training = payload["training"]
        self._restore_optimizer(training["optimizer"])
        self.scaler.load_state_dict(training["scaler"])
        self.state = TrainState(**training["state"])
        rng, ranks = training["rng"], training["rng"].get("ranks")
        if ranks and len(ranks) == self.group.world_size:  # torchrun with as many processes as before
            rng = ranks[self.group.rank]
        torch.set_rng_state(rng["torch"])
        random.setstate((rng["python"][0], tuple(rng["python"][1]), None))

    def _restore_optimizer(self, saved: dict) -> None:
        """Load the optimizer state of last.pt; SegcliError when it is not this model's (other
        parameter groups, buffers of other shapes, NaN momentum), before a step goes wrong."""
        last = self.resume_file
        try:
            self.optimizer.load_state_dict(saved)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
            raise SegcliError(f"training: optimizer state does not fit the model ({exc})", last) from None
        for group in self.optimizer.param_groups:
            for parameter in group["params"]:
                for key, value in self.optimizer.state.get(parameter, {}).items():
                    if not isinstance(value, torch.Tensor) or value.ndim == 0:
                        continue
                    if value.shape != parameter.shape:
                        raise SegcliError(f"training: optimizer {key} of shape {list(value.shape)} for a "
                                          f"parameter of shape {list(parameter.shape)}", last)
                    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                        raise SegcliError(f"training: optimizer {key} holds NaN or infinite values", last)

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
            for epoch in range(self.state.epoch, config.epochs):
                row = self._train_epoch(epoch)
                if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
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
                if self.group.is_main:
                    stop = self._end_epoch(epoch, row)
                stop = distributed.broadcast_flag(self.group, stop)
                if stop:
                    break
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
            save_checkpoint(self.run_dir / "weights" / "best.pt", self.bare_model, self._record(),
                            fp16=self.config.fp16_weights)
        self.on_event("message", text=f"no validation {metric} was ever scored (does the validation split hold "
                                      f"objects?): weights/best.pt holds the last epoch's weights")

    def _gather_rng(self) -> None:
        """Under torchrun, every rank's RNG states for rank 0 to save (dropout differs by rank, so
        an exact resume restores each rank's own)."""
        if self.group.distributed:
            self.rank_rngs = distributed.all_gather(self.group, _rng_state())

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
        total_iters = config.epochs * len(self.train_loader)
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
            lr = learning_rate(config, self.state.iteration, total_iters)
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
        self.on_event("val_start", epoch=epoch, epochs=self.config.epochs, images=len(self.val_data),
                      steps=len(self.val_loader))
        metrics = self.validate()
        self.on_event("val_end", epoch=epoch, epochs=self.config.epochs, images=len(self.val_data),
                      metrics=metrics, seconds=time.perf_counter() - start)
        return metrics

    @torch.inference_mode()
    def validate(self) -> dict:
        """Validation metrics with the model as it is now (rank 0 only)."""
        model = self.bare_model
        model.eval()
        if self.config.task == "instance":
            configure_inference(model, score_thresh=0.05, detections_per_img=100, min_size=self.model_args["min_size"])
            return self._validate_instance(model)
        return self._validate_semantic(model)

    def _validate_instance(self, model) -> dict:
        ids = [c["id"] for c in self.categories]
        results = []
        for step, (images, _, indices, _) in enumerate(self.val_loader, start=1):
            if stop_requested():
                raise _Stop(stop_requested())
            if images:
                with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
                    outputs = model([image.to(self.device) for image in images])
                for output, index in zip(outputs, indices):
                    results += detections_to_results(output, index, ids)
            self.on_event("val_step", step=step, steps=len(self.val_loader))
        ground_truth = ground_truth_dict(self.val_data.records, self.val_data.objects, self.classes, ids,
                                         [c["name"] for c in self.categories])
        segm, bbox = coco_scores(ground_truth, results, "segm"), coco_scores(ground_truth, results, "bbox")
        return {"segm_AP": segm["AP"], "segm_AP50": segm["AP50"], "segm_AP75": segm["AP75"],
                "bbox_AP": bbox["AP"], "bbox_AP50": bbox["AP50"]}

    def _validate_semantic(self, model) -> dict:
        matrix = ConfusionMatrix(len(self.categories) + 1)
        for step, (images, _, indices, _) in enumerate(self.val_loader, start=1):
            if stop_requested():
                raise _Stop(stop_requested())
            if images is not None:
                with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
                    logits = model(images.to(self.device))["out"]
                truth = self.val_data.full_label(indices[0])
                matrix.update(truth, semantic_prediction(logits, *truth.shape))
            self.on_event("val_step", step=step, steps=len(self.val_loader))
        scores = matrix.scores()
        return {"mIoU": scores["mIoU"], "pixel_accuracy": scores["pixel_accuracy"],
                "mean_accuracy": scores["mean_accuracy"]}

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
        weights = self.run_dir / "weights"
        training = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                    "state": asdict(self.state),
                    "rng": {**_rng_state(), **({"ranks": self.rank_rngs} if self.rank_rngs else {})}}
        record = self._record()
        save_checkpoint(weights / "last.pt", self.bare_model, record, training=training)
        if improved:
            save_checkpoint(weights / "best.pt", self.bare_model, record, fp16=self.config.fp16_weights)

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


def check_training(training, last: Path) -> None:
    """SegcliError naming the first thing wrong in last.pt's training state (what ``--resume``
    restores besides the weights), before anything is built: its keys and types, the position
    (epoch, step, iteration, best epoch, one metrics row per epoch done) and the RNG states (tried
    on throw-away generators, so nothing global changes)."""
    if not isinstance(training, dict):
        raise SegcliError("last.pt holds no training state" if training is None else
                          f"training: expected a dict, got {type(training).__name__}", last)
    for key in ("optimizer", "scaler", "state", "rng"):
        if not isinstance(training.get(key), dict):
            raise SegcliError(f"training: {key!r} is {'missing' if key not in training else 'not a dict'}", last)
    optimizer = training["optimizer"]
    if not isinstance(optimizer.get("state"), dict) or not isinstance(optimizer.get("param_groups"), list) \
            or not optimizer["param_groups"]:
        raise SegcliError("training: the optimizer state is empty or not a torch optimizer's", last)
    _check_train_state(training["state"], last)
    rng = training["rng"]
    for index, states in enumerate([rng, *(rng.get("ranks") or [])]):
        problem = _rng_problem(states)
        if problem:
            raise SegcliError(f"training: rng{'' if index == 0 else f' of rank {index - 1}'}: {problem}", last)


def _check_train_state(state: dict, last: Path) -> None:
    known = {f.name for f in fields(TrainState)}
    unknown = sorted(set(state) - known, key=str)
    if unknown:
        raise SegcliError(f"training: state key {unknown[0]!r} is not one segcli saves", last)
    values = {**asdict(TrainState()), **state}
    for key in ("epoch", "iteration", "stale_epochs", "step"):
        value = values[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SegcliError(f"training: state {key} is {value!r}: expected an integer >= 0", last)
    if not isinstance(values["rows"], list) or not all(isinstance(row, dict) for row in values["rows"]):
        raise SegcliError("training: state rows is not a list of metric rows", last)
    if len(values["rows"]) != values["epoch"]:
        raise SegcliError(f"training: state epoch {values['epoch']} but {len(values['rows'])} epochs of "
                          "metrics were recorded", last)
    best_epoch = values["best_epoch"]
    if not isinstance(best_epoch, int) or isinstance(best_epoch, bool) or not -1 <= best_epoch <= values["epoch"]:
        raise SegcliError(f"training: state best_epoch is {best_epoch!r}: expected -1..{values['epoch']}", last)
    best = values["best"]
    if not isinstance(best, (int, float)) or isinstance(best, bool) or not math.isfinite(best):
        raise SegcliError(f"training: state best is {best!r}: expected a finite number", last)
    if not isinstance(values["partial"], dict):
        raise SegcliError("training: state partial is not a dict", last)


def _rng_problem(states: dict) -> str | None:
    """Why ``states`` (as ``_rng_state`` makes them) cannot be restored, or None."""
    if not isinstance(states, dict) or not isinstance(states.get("torch"), torch.Tensor) \
            or not isinstance(states.get("python"), list) or len(states["python"]) != 2:
        return "expected torch and python states"
    try:
        torch.Generator().set_state(states["torch"])
        version, internal = states["python"]
        random.Random().setstate((version, tuple(internal), None))
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        return f"not a random generator state ({str(exc).splitlines()[0][:100]})"
    return None


def _train_scales(size: int) -> list[int]:
    """Short sides for scale jitter: multiples of 32 from 0.8x to 1.2x the model's size, never
    below 32 (at --imgsz 32 the range began at 0 and the model's resize failed)."""
    return list(range(max(32, int(size * 0.8) // 32 * 32), int(size * 1.2) + 1, 32)) or [size]


def _path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": _python_rng_state()}


def _python_rng_state() -> list:
    version, internal, _ = random.getstate()
    return [version, list(internal)]


def _batch_indices(loader: DataLoader, step: int) -> list[int]:
    return loader.batch_sampler._batches()[step]


def train(config: TrainConfig, on_event: Event = lambda *a, **k: None) -> dict:
    """Run a new training (see TrainConfig)."""
    return Trainer.new(config, on_event).run()

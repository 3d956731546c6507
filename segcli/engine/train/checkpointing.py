"""The resumable state of a training run and its checkpoints, apart from the loop (as detectron2
keeps its trainer loop apart from checkpointing).

``weights/last.pt`` holds the weights and the training state: optimizer, AMP scaler, the position
(``TrainState``: epoch, iteration, best so far, one metrics row per epoch, the steps done of a
stopped epoch and its running sums) and the RNG states (every rank's under torchrun, since dropout
differs by rank); ``weights/best.pt`` the weights alone (fp16 if asked). ``check_training`` refuses
a damaged state before anything is built, ``restore_training`` puts it back, ``save_run_weights``
writes both files. ``RunFinished`` is a ``--resume`` with nothing left to train.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from segcli.engine.core import distributed
from segcli.engine.train.ema import ModelEMA
from segcli.errors import SegcliError, with_article
from segcli.models.checkpoint import save_checkpoint


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
    seconds: float = 0.0  # wall time the run has spent, all sessions (--time counts it)
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch's wall time, validation included


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


def restore_training(payload: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, group: distributed.ProcessGroup, model_name: str,
                     last: Path) -> TrainState:
    """Put last.pt's weights, optimizer, scaler and RNG states back (this rank's own when the
    process count is unchanged); returns its position."""
    record = payload["record"]
    if record["model"]["name"] != model_name:
        raise SegcliError(f"last.pt is {with_article(record['model']['name'])}, args.json says {model_name}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    model.load_state_dict(state)
    training = payload["training"]
    _restore_optimizer(optimizer, training["optimizer"], last)
    scaler.load_state_dict(training["scaler"])
    rng, ranks = training["rng"], training["rng"].get("ranks")
    if ranks and len(ranks) == group.world_size:  # torchrun with as many processes as before
        rng = ranks[group.rank]
    torch.set_rng_state(rng["torch"])
    random.setstate((rng["python"][0], tuple(rng["python"][1]), None))
    return TrainState(**training["state"])


def _restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict, last: Path) -> None:
    """Load the optimizer state of last.pt; SegcliError when it is not this model's (other
    parameter groups, buffers of other shapes, NaN momentum), before a step goes wrong."""
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise SegcliError(f"training: optimizer state does not fit the model ({exc})", last) from None
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for key, value in optimizer.state.get(parameter, {}).items():
                if not isinstance(value, torch.Tensor) or value.ndim == 0:
                    continue
                if value.shape != parameter.shape:
                    raise SegcliError(f"training: optimizer {key} of shape {list(value.shape)} for a "
                                      f"parameter of shape {list(parameter.shape)}", last)
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise SegcliError(f"training: optimizer {key} holds NaN or infinite values", last)


def save_run_weights(weights: Path, model: torch.nn.Module, record: dict, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, state: TrainState, rank_rngs: list[dict] | None,
                     best: bool, fp16_best: bool, ema: ModelEMA | None = None) -> None:
    """weights/last.pt with the whole training state (the raw weights, and the average under
    --ema), and weights/best.pt when ``best`` (the average under --ema: what was validated)."""
    training = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "state": asdict(state),
                "rng": {**rng_state(), **({"ranks": rank_rngs} if rank_rngs else {})}}
    if ema is not None:
        training["ema"] = ema.state_dict()
    save_checkpoint(weights / "last.pt", model, record, training=training)
    if best:
        save_best(weights, ema.module if ema is not None else model, record, fp16_best)


def restore_ema(payload: dict, ema: ModelEMA, last: Path) -> None:
    """The average of a resumed --ema run (a run saved without one starts it from its weights)."""
    saved = payload["training"].get("ema")
    if saved is None:
        return
    try:
        ema.load_state_dict(saved)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise SegcliError(f"training: the weights' average does not fit the model ({str(exc).splitlines()[0]})",
                          last) from None


def save_best(weights: Path, model: torch.nn.Module, record: dict, fp16: bool) -> None:
    save_checkpoint(weights / "best.pt", model, record, fp16=fp16)


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
    ema = training.get("ema")
    if ema is not None:
        updates = ema.get("updates") if isinstance(ema, dict) else None
        if not isinstance(updates, int) or isinstance(updates, bool) or updates < 0 \
                or not isinstance(ema.get("state_dict"), dict) \
                or not all(isinstance(v, torch.Tensor) for v in ema["state_dict"].values()):
            raise SegcliError("training: ema is not the weights' average segcli saves (updates and tensors)", last)


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
    times = [values["seconds"], *values["epoch_seconds"]] if isinstance(values["epoch_seconds"], list) else None
    if times is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                and v >= 0 for v in times):
        raise SegcliError("training: state seconds and epoch_seconds must be numbers of seconds >= 0", last)


def _rng_problem(states: dict) -> str | None:
    """Why ``states`` (as ``rng_state`` makes them) cannot be restored, or None."""
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": python_rng_state()}


def python_rng_state() -> list:
    version, internal, _ = random.getstate()
    return [version, list(internal)]

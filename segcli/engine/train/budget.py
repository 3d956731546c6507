"""``segcli train --time HOURS``: a schedule planned to finish on time, as Ultralytics' ``time=``.

The number of epochs is planned from measured speed: first from the first steps (a step's time
times the steps of an epoch), then after every epoch from the recent epochs' wall time, training
and validation included, so the plan follows a machine that speeds up or slows down. The
learning-rate schedule (warm-up, cosine) is a function of the planned total, so the run ends at
the end of its schedule. The budget counts everything the trainer does, from reading the data
to the last save; a resumed run carries on with what its earlier sessions spent.
"""

from __future__ import annotations

RECENT_EPOCHS = 3  # the plan follows the speed of the last few epochs
PLAN_AFTER_STEPS = 10  # the first plan, from the first steps of the first epoch


def planned_epochs(budget_seconds: float, spent_seconds: float, epochs_done: int, epoch_seconds: list[float]) -> int:
    """The run's total epochs: those done, plus as many more epochs of the recent mean time as
    the budget left holds (rounded to the nearest, so the end is within half an epoch of the
    budget), and at least one epoch in all."""
    recent = epoch_seconds[-RECENT_EPOCHS:]
    mean = sum(recent) / len(recent)
    left = max(0.0, budget_seconds - spent_seconds)
    return max(1, epochs_done + round(left / mean)) if mean > 0 else max(1, epochs_done)


def first_plan(budget_seconds: float, spent_seconds: float, step_seconds: float, steps_per_epoch: int,
               val_share: float = 0.1) -> int:
    """Total epochs from the first steps alone: an epoch taken as its steps at the measured speed
    plus ``val_share`` of that for validation (corrected after the first epoch)."""
    epoch = step_seconds * steps_per_epoch * (1 + val_share)
    return planned_epochs(budget_seconds, spent_seconds, 0, [epoch])

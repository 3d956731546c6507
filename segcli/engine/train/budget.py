"""``segcli train --time HOURS``: a schedule planned to finish on time, as Ultralytics' ``time=``.

The number of epochs is planned from measured speed: first from the first steps (a step's time
times the steps of an epoch), then after every epoch from the recent epochs' wall time, training
and validation included, so the plan follows a machine that speeds up or slows down. The
learning-rate schedule (warm-up, cosine) is a function of the planned total, so the run ends at
the end of its schedule. The budget counts everything the trainer does, from reading the data
to the last save; a resumed run carries on with what its earlier sessions spent.
"""

from __future__ import annotations

import math

RECENT_EPOCHS = 10  # the plan follows the recent speed; not fewer: a save's fsync takes 0.1-1 s
PLAN_AFTER_STEPS = 10  # the first plan, from the first steps of the first epoch
OVERRUN = 0.05  # a plan is cut only when keeping it would end more than this share over the budget


def planned_epochs(budget_seconds: float, spent_seconds: float, epochs_done: int, epoch_seconds: list[float],
                   current: int | None = None) -> int:
    """The run's total epochs: those done, plus as many whole epochs of the recent mean time as
    the budget left holds (so a run ends up to an epoch early rather than late), and at least one
    epoch in all.

    The ``current`` plan is kept when it is longer but would end at most ``OVERRUN`` over the
    budget: cutting a plan after its last epoch leaves the learning rate mid-schedule, which
    costs more than a few seconds over."""
    # the first epoch pays start-up costs (workers, kernels, caches) the others do not
    recent = (epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds)[-RECENT_EPOCHS:]
    mean = sum(recent) / len(recent)
    left = max(0.0, budget_seconds - spent_seconds)
    fit = max(1, epochs_done + math.floor(left / mean)) if mean > 0 else max(1, epochs_done)
    if current is not None and fit < current and mean > 0 \
            and spent_seconds + (current - epochs_done) * mean <= (1 + OVERRUN) * budget_seconds:
        return current
    return fit


def first_plan(budget_seconds: float, spent_seconds: float, step_seconds: float, steps_per_epoch: int,
               val_share: float = 0.1) -> int:
    """Total epochs from the first steps alone: an epoch taken as its steps at the measured speed
    plus ``val_share`` of that for validation (corrected after the first epoch)."""
    epoch = step_seconds * steps_per_epoch * (1 + val_share)
    return planned_epochs(budget_seconds, spent_seconds, 0, [epoch])

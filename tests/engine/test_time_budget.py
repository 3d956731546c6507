"""segcli train --time HOURS (issue 16, the training recipe): the epochs are planned from measured
speed, so a run ends on time at the end of its learning-rate schedule, with a best.pt."""

from __future__ import annotations

import json
import time

import pytest
import torch

from segcli.engine.train.budget import first_plan, planned_epochs
from segcli.engine.train.metrics_csv import read_metrics_csv
from segcli.engine.train.trainer import TrainConfig, Trainer
from segcli.errors import SegcliError
from tests.helpers import small_train_val

BUDGET_SECONDS = 20.0


def test_the_plan_fills_the_budget_left_at_the_recent_speed():
    assert planned_epochs(100, 30, 3, [10, 10, 10]) == 10  # 70 s left: 7 more epochs of 10 s
    assert planned_epochs(100, 30, 3, [50, 10, 14]) == 8  # the first epoch's start-up does not count: 12 s, 5 more
    assert planned_epochs(100, 30, 3, [10, 18, 19]) == 6  # 18.5 s an epoch: 3 whole ones fit
    assert planned_epochs(100, 30, 3, [10, 18, 19], current=7) == 7  # keeping 7 ends at 104 s: kept
    assert planned_epochs(100, 30, 3, [10, 18, 19], current=8) == 6  # 122.5 s: cut
    assert planned_epochs(100, 30, 3, [10, 10, 10], current=5) == 10  # longer when time is left
    assert planned_epochs(300, 100, 14, [1, 4, 4, 4] + [14] * 10) == 28  # slower for 10 epochs: older ones drop
    assert planned_epochs(100, 120, 3, [10]) == 3  # over budget: stop with the epochs done
    assert planned_epochs(5, 0, 0, [60]) == 1  # at least one epoch
    assert first_plan(100, 5, step_seconds=0.5, steps_per_epoch=20) == 8  # 11 s an epoch, validation guessed: 8.6


def test_a_budget_that_is_not_a_positive_number_is_refused():
    for hours in (0, -1, float("nan"), float("inf")):
        with pytest.raises(SegcliError, match="--time"):
            TrainConfig(data=".", task="semantic", time=hours)


def test_a_run_with_a_time_budget_ends_on_time_at_the_end_of_its_schedule(tmp_path):
    small_train_val(tmp_path)
    config = TrainConfig(train=str(tmp_path / "train" / "coco.json"), val=str(tmp_path / "val" / "coco.json"),
                         task="semantic", model="pspnet_mobilenet_v3_large", epochs=2, batch=2, imgsz=96,
                         workers=0, out=str(tmp_path / "runs"), name="run", time=BUDGET_SECONDS / 3600)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.monotonic()
        summary = Trainer.new(config).run()
        elapsed = time.monotonic() - start
    finally:
        torch.set_num_threads(threads)
    run = tmp_path / "runs" / "run"
    planned = json.loads((run / "args.json").read_text())["epochs"]
    assert abs(elapsed - BUDGET_SECONDS) <= 0.1 * BUDGET_SECONDS, (elapsed, planned)
    assert planned > 2 and summary["epochs_done"] == planned  # re-planned from --epochs 2, and all done
    rows = read_metrics_csv(run / "metrics.csv")
    assert rows[-1]["lr"] < 0.05 * config.lr  # the last step's rate: the cosine's end (1% of lr)
    assert (run / "weights" / "best.pt").is_file() and "mIoU" in rows[-1]

"""The one-stage yolact_* models through every command (issue 16): trained from scratch, the AP
training reports is the AP of ``eval --weights`` and of ``eval --pred`` on ``predict``'s files;
predict writes every output; a stopped run resumes to the weights of one never stopped; torchrun
trains it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.core.interrupt import Interrupted
from segcli.engine.eval.run import EvalOptions, run_eval
from segcli.engine.predict.run import PredictOptions, predict_folder
from segcli.engine.train.metrics_csv import read_metrics_csv
from segcli.engine.train.trainer import TrainConfig, Trainer, train
from segcli.models.checkpoint import read_checkpoint

MODEL = "yolact_resnet18_fpn"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("onestage_data")
    generate_shapes_dataset(root / "train", 4, seed=31, coco=True, sizes=((160, 120),))
    generate_shapes_dataset(root / "val", 2, seed=32, coco=True, sizes=((160, 120),))
    return root


def _config(data: Path, out: Path, name: str, epochs: int = 25, **options) -> TrainConfig:
    """From scratch, 4 images learnt by heart (a few shapes' worth of steps: 25 epochs of 2), scored
    on them: what is tested is that the commands agree, and that the model learns at all. Mosaic
    and copy-paste (on by default) are off: they are there to stop a model learning its images by
    heart; EMA stays on."""
    options = {"mosaic": False, "copy_paste": False, **options}
    return TrainConfig(train=str(data / "train" / "coco.json"), val=str(data / "train" / "coco.json"), model=MODEL,
                       epochs=epochs, batch=2, imgsz=128, workers=0, optimizer="adamw", lr=2e-3, warmup_iters=4,
                       out=str(out), name=name, seed=2, **options)


def _one_thread(function, *args):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function(*args)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("onestage_runs")
    summary = _one_thread(train, _config(data, out, "run"))
    return Path(summary["run_dir"])


def _figures(report: dict) -> dict:
    return {"segm_AP": report["segm"]["AP"], "segm_AP50": report["segm"]["AP50"], "bbox_AP": report["bbox"]["AP"]}


def test_it_learns_and_validation_eval_and_predict_agree(data, trained, tmp_path):
    rows = read_metrics_csv(trained / "metrics.csv")
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"]
    best = trained / "weights" / "best.pt"
    reported = read_checkpoint(best)["record"]["metrics"]
    with_model = _one_thread(run_eval, EvalOptions(gt=data / "train" / "coco.json", weights=best, out=tmp_path / "eval",
                                                   workers=0))
    assert with_model["segm"]["AP"] > 0.1  # it learned to find the shapes
    assert {k: float(reported[k]) for k in _figures(with_model)} == _figures(with_model)
    _one_thread(predict_folder, data / "train" / "images", PredictOptions(
        weights=best, out=tmp_path / "predict", conf=0.05, workers=0, formats={"coco", "via"}, overlays=True))
    from_files = run_eval(EvalOptions(gt=data / "train" / "coco.json", pred=tmp_path / "predict" / "predictions.json",
                                      out=tmp_path / "eval_files"))
    assert _figures(from_files) == _figures(with_model)
    written = {p.name for p in (tmp_path / "predict").rglob("*") if p.is_file()}
    assert {"predictions.json", "via_project.json"} <= written and any(n.endswith((".jpg", ".png")) for n in written)


def test_a_stopped_run_resumes_to_the_weights_of_one_never_stopped(data, tmp_path):
    def send(kind, **info):
        if kind == "epoch_start":
            send.epoch = info["epoch"]
        if kind == "step" and send.epoch == 2 and info["step"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    _one_thread(lambda: Trainer.new(_config(data, tmp_path, "never", epochs=4)).run())
    with pytest.raises(Interrupted):
        _one_thread(lambda: Trainer.new(_config(data, tmp_path, "cut", epochs=4), send).run())
    assert _one_thread(lambda: Trainer.resume(tmp_path / "cut").run())["epochs_done"] == 4
    never = read_checkpoint(tmp_path / "never" / "weights" / "last.pt")["state_dict"]
    resumed = read_checkpoint(tmp_path / "cut" / "weights" / "last.pt")["state_dict"]
    assert never.keys() == resumed.keys() and all(torch.equal(never[k], resumed[k]) for k in never)


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's gloo on POSIX")
def test_torchrun_trains_it(data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "segcli", "train", "--train", str(data / "train" / "coco.json"), "--val",
               str(data / "val" / "coco.json"), "--model", MODEL, "--epochs", "2", "--batch", "2", "--imgsz",
               "96", "--workers", "0", "--device", "cpu", "--out", str(tmp_path), "--name", "ddp"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = read_checkpoint(tmp_path / "ddp" / "weights" / "last.pt")
    assert saved["training"]["state"]["epoch"] == 2 and saved["record"]["model"]["name"] == MODEL

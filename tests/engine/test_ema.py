"""--ema (issue 16, the training recipe): an exponential moving average of the weights, its decay
fitted to the run's length, validated and saved as best.pt, and resumed exactly."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from segcli.engine.core.interrupt import Interrupted
from segcli.engine.eval.run import EvalOptions, run_eval
from segcli.engine.train.ema import ModelEMA, averaging_window
from segcli.engine.train.trainer import TrainConfig, Trainer
from segcli.models.checkpoint import read_checkpoint
from tests.helpers import small_train_val


def test_the_average_follows_the_formula_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, total_iterations=400)  # a window of 20 steps
    assert ema.window == 20
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 31):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        model.train()
        model(torch.randn(4, 3))  # moves the BatchNorm statistics and its batch count
        ema.update(model)
        d = (1 - 1 / 20) * (1 - torch.exp(torch.tensor(-step / 20.0)).item())
        for name, value in model.state_dict().items():
            expected[name] = d * expected[name] + (1 - d) * value if value.is_floating_point() else value.clone()
    averaged = ema.module.state_dict()
    for name, value in expected.items():
        assert torch.allclose(averaged[name], value, atol=1e-6), name
    assert int(averaged["1.num_batches_tracked"]) == 30
    assert not torch.allclose(averaged["0.weight"], model.state_dict()["0.weight"])  # it does average
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_the_window_is_a_share_of_the_run_within_bounds():
    assert averaging_window(100) == 10 and averaging_window(1000) == 50 and averaging_window(10**6) == 2000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_train_val(tmp_path_factory.mktemp("ema_data"))


def _config(data, out, name) -> TrainConfig:
    return TrainConfig(train=str(data / "train" / "coco.json"), val=str(data / "val" / "coco.json"), task="semantic",
                       model="pspnet_mobilenet_v3_large", epochs=3, batch=2, imgsz=96, workers=0, out=str(out),
                       name=name, seed=3, ema=True)


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_best_pt_holds_the_average_and_scores_as_validation_did(data, tmp_path, one_thread):
    summary = Trainer.new(_config(data, tmp_path, "run")).run()
    weights = tmp_path / "run" / "weights"
    last, best = read_checkpoint(weights / "last.pt"), read_checkpoint(weights / "best.pt")
    average = last["training"]["ema"]["state_dict"]
    assert last["training"]["ema"]["updates"] == 3 * 4
    differs = [k for k in average if average[k].is_floating_point() and not torch.equal(average[k], last["state_dict"][k])]
    assert differs  # the average is not the raw weights
    if summary["best_epoch"] == 3:
        assert all(torch.equal(best["state_dict"][k], average[k]) for k in average)
    scored = run_eval(EvalOptions(gt=data / "val" / "coco.json", weights=weights / "best.pt", out=tmp_path / "eval",
                                  workers=0))
    assert scored["mIoU"] == pytest.approx(best["record"]["metrics"]["mIoU"], abs=0)


def test_an_interrupted_run_resumes_its_average_exactly(data, tmp_path, one_thread):
    Trainer.new(_config(data, tmp_path, "ref")).run()

    def send(kind, **info):
        if kind == "step" and info["epoch"] == 1 and info["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        Trainer.new(_config(data, tmp_path, "cut"), send).run()
    assert Trainer.resume(tmp_path / "cut").run()["epochs_done"] == 3
    ref = read_checkpoint(tmp_path / "ref" / "weights" / "last.pt")["training"]["ema"]
    cut = read_checkpoint(tmp_path / "cut" / "weights" / "last.pt")["training"]["ema"]
    assert ref["updates"] == cut["updates"] == 12
    assert all(torch.equal(ref["state_dict"][k], cut["state_dict"][k]) for k in ref["state_dict"])

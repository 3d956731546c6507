"""Checkpoints that pass the format check but are malformed (issue 13): every one is refused with
one ``error: FILE: ...`` line and exit 2 by ``predict``, ``train --init`` and ``train --resume``,
before any model or run folder is built.

Each bad file is a real checkpoint (the shipped instance weights, or the last.pt of a 1-epoch
tiny run) loaded, edited as a dict and saved again with ``torch.save``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.train.trainer import TrainConfig, train
from tests.helpers import assert_refused, run
from tests.helpers import MASK_RCNN_RECIPE

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "weights" / "maskrcnn_resnet18_shapes.pt"
LAST_TENSOR = "roi_heads.mask_predictor.mask_fcn_logits.bias"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, run folder) of a finished 1-epoch instance run on 4 generated 64x48 images."""
    root = tmp_path_factory.mktemp("tiny_ckpt")
    for split in ("train", "val"):
        generate_shapes_dataset(root / "data" / split, 4, seed=5, sizes=((64, 48),))
    train(TrainConfig(data=str(root / "data"), epochs=1, batch=2, imgsz=64, workers=0, out=str(root / "runs"),
                      name="run", warmup_iters=1, **MASK_RCNN_RECIPE))
    return root / "data", root / "runs" / "run"


# --------------------------------------------------------------------------- edits of a record


def _drop(key):
    def edit(payload):
        del payload["record"][key]
    return edit


def _set_record(key, value):
    def edit(payload):
        payload["record"][key] = value
    return edit


def _set_arg(key, value):
    def edit(payload):
        payload["record"]["model"]["args"][key] = value
    return edit


def _set_tensor(value):
    def edit(payload):
        state = payload["state_dict"]
        state[LAST_TENSOR] = torch.full_like(state[LAST_TENSOR], value)
    return edit


def _wrong_shape(payload):
    state = payload["state_dict"]
    state[LAST_TENSOR] = torch.zeros(state[LAST_TENSOR].shape[0] + 2)


def _not_a_tensor(payload):
    payload["state_dict"][LAST_TENSOR] = [0.0, 1.0]


def _five_names(payload):
    payload["record"]["categories"] = [{"id": k, "name": f"class{k}"} for k in range(1, 6)]


def _nan_threshold(payload):
    payload["record"]["thresholds"]["score"] = math.nan


def _state_dict_list(payload):
    payload["state_dict"] = list(payload["state_dict"].values())


# (id, edit, words the one-line error holds besides the file name)
RECORD_VARIANTS = [
    ("no-task", _drop("task"), "task"),
    ("no-categories", _drop("categories"), "categories"),
    ("no-thresholds", _drop("thresholds"), "thresholds"),
    ("record-a-list", lambda p: p.__setitem__("record", [1, 2]), "record"),
    ("state-dict-a-list", _state_dict_list, "state_dict"),
    ("tensor-not-a-tensor", _not_a_tensor, LAST_TENSOR),
    ("size-mismatch", _wrong_shape, LAST_TENSOR),
    ("min-size-100000", _set_arg("min_size", 100000), "min_size"),
    ("num-classes-1e9", _set_arg("num_classes", 10**9), "num_classes"),
    ("num-classes-float", _set_arg("num_classes", 1e9), "num_classes"),
    ("empty-categories", _set_record("categories", []), "categories"),
    ("five-names-three-classes", _five_names, "categories"),
    ("nan-weights", _set_tensor(math.nan), LAST_TENSOR),
    ("inf-weights", _set_tensor(math.inf), LAST_TENSOR),
    ("nan-threshold", _nan_threshold, "score"),
    ("task-wrong", _set_record("task", "semantic"), "task"),
    ("unknown-model-arg", _set_arg("turbo", True), "turbo"),
]


def _bad_copy(source: Path, edit, target: Path) -> Path:
    payload = torch.load(source, map_location="cpu", weights_only=True)
    edit(payload)
    torch.save(payload, target)
    return target


@pytest.mark.parametrize("name,edit,words", RECORD_VARIANTS, ids=[v[0] for v in RECORD_VARIANTS])
def test_predict_refuses_a_malformed_checkpoint(tmp_path, name, edit, words):
    bad = _bad_copy(SHIPPED, edit, tmp_path / f"{name}.pt")
    image = tmp_path / "a.png"
    generate_shapes_dataset(tmp_path / "img", 1, seed=1, sizes=((64, 48),))
    shutil.copy(next((tmp_path / "img" / "images").iterdir()), image)
    result = run("predict", "image", image, "--weights", bad, "--out", tmp_path / "out", "--device", "cpu")
    assert_refused(result, bad.name, words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name,edit,words", RECORD_VARIANTS, ids=[v[0] for v in RECORD_VARIANTS])
def test_train_init_refuses_a_malformed_checkpoint_before_the_run_folder(tmp_path, tiny_run, name, edit, words):
    data, _ = tiny_run
    bad = _bad_copy(SHIPPED, edit, tmp_path / f"{name}.pt")
    result = run("train", data, "--init", bad, "--epochs", 1, "--batch", 2, "--imgsz", 64, "--workers", 0,
                 "--out", tmp_path / "runs", "--device", "cpu")
    assert_refused(result, bad.name, words)
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- edits of last.pt


def _training(key, value):
    def edit(payload):
        payload["training"][key] = value
    return edit


def _state(key, value):
    def edit(payload):
        payload["training"]["state"][key] = value
    return edit


def _torch_rng(payload):
    payload["training"]["rng"]["torch"] = torch.zeros(7, dtype=torch.uint8)


def _python_rng(payload):
    payload["training"]["rng"]["python"] = [3, [1, 2, 3]]


RESUME_VARIANTS = [
    *[(f"record-{n}", e, w) for n, e, w in RECORD_VARIANTS
      if n in ("no-task", "no-categories", "state-dict-a-list", "size-mismatch", "min-size-100000",
               "num-classes-1e9", "nan-weights", "five-names-three-classes")],
    ("extra-state-key", _state("turbo", 1), "turbo"),
    ("epoch-minus-5", _state("epoch", -5), "epoch"),
    ("step-minus-1", _state("step", -1), "step"),
    ("iteration-a-string", _state("iteration", "7"), "iteration"),
    ("bad-torch-rng", _torch_rng, "rng"),
    ("bad-python-rng", _python_rng, "rng"),
    ("empty-optimizer", _training("optimizer", {}), "optimizer"),
    ("optimizer-other-groups", lambda p: p["training"]["optimizer"]["param_groups"].append(
        dict(p["training"]["optimizer"]["param_groups"][0])), "optimizer"),
    ("training-a-list", lambda p: p.__setitem__("training", [1]), "training"),
]


@pytest.mark.parametrize("name,edit,words", RESUME_VARIANTS, ids=[v[0] for v in RESUME_VARIANTS])
def test_train_resume_refuses_a_malformed_last_checkpoint(tmp_path, tiny_run, name, edit, words):
    _, finished = tiny_run
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    last = folder / "weights" / "last.pt"
    _bad_copy(last, edit, last)
    before = {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    result = run("train", "--resume", folder, "--epochs", 2, "--workers", 0, "--device", "cpu")
    assert_refused(result, "last.pt", words)
    assert {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before


def test_the_unedited_checkpoints_still_work(tmp_path, tiny_run):
    """The control: the same commands on the files as written succeed."""
    data, finished = tiny_run
    generate_shapes_dataset(tmp_path / "img", 1, seed=1, sizes=((64, 48),))
    image = next((tmp_path / "img" / "images").iterdir())
    result = run("predict", "image", image, "--weights", SHIPPED, "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    result = run("train", "--resume", folder, "--epochs", 2, "--workers", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output


def test_a_fifo_given_as_weights_is_refused_not_read(tmp_path):
    """A FIFO would block torch.load forever; it is named as what it is, not 'not found'."""
    generate_shapes_dataset(tmp_path / "img", 1, seed=3, sizes=((64, 48),))
    image = next((tmp_path / "img" / "images").iterdir())
    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "segcli", "predict", "image", str(image), "-w", str(fifo),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a regular file" in lines[0] and "weights.pt" in lines[0], done.stderr
    assert not (tmp_path / "out").exists()

"""What `segcli train` tells its user (issue 14, items 4, 6, 7, 8): plain progress lines when
stdout is a log (every --log-every steps or SEGCLI_LOG_SECONDS seconds, and one line per
validation), a labelled validation bar in a terminal, a clear answer to `--resume` of a finished
run, articles that fit the word ("an instance model"), and a notice naming the class given to
VIA regions without a class attribute. Tiny real runs: 3 training and 2 validation images of
64 px, --imgsz 64."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from rich.console import Console

from segcli.data.synthetic import generate_shapes_dataset
from tests.helpers import run, snapshot

# the loss terms of the default one-stage model (a Mask R-CNN adds "obj" and "rpn")
STEP_LINE = re.compile(r"^epoch (\d+)/(\d+) step (\d+)/(\d+): loss \d+\.\d+ \(cls \d+\.\d+ box \d+\.\d+ "
                       r"mask \d+\.\d+( obj \d+\.\d+ rpn \d+\.\d+)?\), \d+\.\d+ img/s, lr \S+, ETA \d+:\d\d:\d\d$")
VAL_LINE = re.compile(r"^val epoch (\d+)/(\d+): segm_AP \d\.\d{4}, segm_AP50 \d\.\d{4}, segm_AP75 \d\.\d{4}, "
                      r"bbox_AP \d\.\d{4}, bbox_AP50 \d\.\d{4} \(2 images, \d+\.\d s\)$")
TINY = ("--batch", "1", "--imgsz", "64", "--workers", "0", "--device", "cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on 2 shared cores a tiny run is 4x faster without threads spinning."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback")
    generate_shapes_dataset(root / "data" / "train", 3, seed=7, sizes=((64, 64),))
    generate_shapes_dataset(root / "data" / "val", 2, seed=8, sizes=((64, 64),))
    return root


def _train_logged(root, name: str, *options: str, seconds: str) -> subprocess.CompletedProcess:
    """`segcli train` with stdout a pipe (as under nohup or CI)."""
    env = {**os.environ, "SEGCLI_LOG_SECONDS": seconds, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "segcli", "train", str(root / "data"), *TINY, "--out",
                           str(root / "runs"), "--name", name, *options], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def logged(data):
    """2 epochs of 3 steps, a line every 2 steps (the time rule out of reach)."""
    done = _train_logged(data, "logged", "--epochs", "2", "--log-every", "2", seconds="100000")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _step_lines(stdout: str) -> list[tuple[int, ...]]:
    lines = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    for line in lines:
        assert STEP_LINE.match(line), line
    return [tuple(int(n) for n in STEP_LINE.match(line).groups()[:4]) for line in lines]


def test_a_log_gets_a_line_after_the_first_step_then_every_n_steps(logged):
    assert _step_lines(logged.stdout) == [(1, 2, 1, 3), (1, 2, 2, 3), (2, 2, 1, 3), (2, 2, 2, 3)]
    lines = logged.stdout.splitlines()
    assert lines[0].startswith("segcli train -> ") and "classes: circle, square, triangle" in lines[0]
    assert lines[1].startswith("epoch 1/2 step 1/3: ")  # the first step is reported at once
    assert not any(mark in logged.stdout for mark in "━…"), logged.stdout  # no progress bars in a log


def test_a_log_gets_one_line_per_validation(logged):
    validations = [line for line in logged.stdout.splitlines() if line.startswith("val ")]
    assert [VAL_LINE.match(line).groups() if VAL_LINE.match(line) else line for line in validations] == \
        [("1", "2"), ("2", "2")]


def test_the_time_rule_prints_lines_between_the_step_counts(data, tmp_path, monkeypatch):
    """SEGCLI_LOG_SECONDS=0: the interval has always passed, so every step gets its line although
    --log-every asks for one every 1000 steps, and the validation reports its images as it goes.
    (In-process: typer's runner gives stdout no terminal either.)"""
    monkeypatch.setenv("SEGCLI_LOG_SECONDS", "0")
    result = run("train", data / "data", *TINY, "--batch", "2", "--epochs", "1", "--log-every", "1000",
                 "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert _step_lines(result.stdout) == [(1, 1, 1, 2), (1, 1, 2, 2)]
    assert [line for line in result.stdout.splitlines() if line.startswith("val epoch 1/1: ") and
            line.endswith(" images")] == ["val epoch 1/1: 1/2 images", "val epoch 1/1: 2/2 images"]


def test_log_options_out_of_range_are_refused(data, tmp_path, monkeypatch):
    result = run("train", data / "data", "--log-every", "-1", "--out", tmp_path)
    assert result.exit_code == 2 and "--log-every -1: expected between 0 and" in result.stderr, result.output
    for text in ("soon", "-1", "nan"):
        monkeypatch.setenv("SEGCLI_LOG_SECONDS", text)
        result = run("train", data / "data", "--out", tmp_path)
        assert result.exit_code == 2, result.output
        assert f"SEGCLI_LOG_SECONDS {text!r}: expected a number of seconds >= 0" in result.stderr, result.output
    assert not any(tmp_path.iterdir())


def test_a_terminal_gets_a_labelled_validation_bar(data, tmp_path):
    from segcli.cli.train import BarPrinter
    from segcli.engine.train.trainer import TrainConfig, Trainer

    screen = io.StringIO()
    printer = BarPrinter(Console(file=screen, force_terminal=True, width=140))
    config = TrainConfig(data=str(data / "data"), epochs=1, batch=3, imgsz=64, workers=0, device="cpu",
                         out=str(tmp_path), name="bars")
    try:
        Trainer.new(config, printer).run()
    finally:
        printer.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert re.search(r"epoch 1/1 .*1/1", text), text
    assert re.search(r"val 1/1 .*2/2", text), text


def test_resume_of_a_finished_run_says_so_and_rewrites_nothing(logged, data):
    run_dir = data / "runs" / "logged"
    before = snapshot(run_dir)
    times = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    result = run("train", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"{run_dir} is already finished: 2 of 2 epochs done" in text, text
    assert f"segcli train --resume {run_dir} --epochs N with N > 2" in text, text
    assert "resuming at epoch" not in text and "Training finished" not in text
    shorter = run("train", "--resume", run_dir, "--epochs", "1")
    assert shorter.exit_code == 0 and "already finished: 2 of 2 epochs done" in " ".join(shorter.output.split())
    assert snapshot(run_dir) == before
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == times


def test_resume_epochs_fewer_than_done_is_refused_and_more_extends(tmp_path):
    from segcli.engine.train.checkpointing import RunFinished, check_resume_epochs
    from segcli.errors import SegcliError

    with pytest.raises(SegcliError, match="--epochs 4: this run has already done 5 epochs; give more than 5, "
                                          "or leave --epochs out to finish its 10"):
        check_resume_epochs(tmp_path, 5, 10, 4)
    with pytest.raises(RunFinished, match=r"3 of 3 epochs done \(--epochs 2 is not more\)"):
        check_resume_epochs(tmp_path, 3, 3, 2)
    for done, epochs, asked in ((5, 10, None), (5, 10, 6), (3, 3, 4), (0, 1, None)):
        check_resume_epochs(tmp_path, done, epochs, asked)  # something left to train


def test_articles_fit_the_next_word(logged, data):
    from segcli.engine.train.trainer import TrainConfig, Trainer
    from segcli.errors import SegcliError
    from segcli.models.checkpoint import load_checkpoint
    from segcli.models.defaults import default_weights

    result = run("train", data / "data", "--task", "semantic", "--model", "maskrcnn_resnet18_fpn")
    assert result.exit_code == 2 and "is an instance model but --task is semantic" in result.stderr
    with pytest.raises(SegcliError, match="this run trained an instance model; --task semantic"):
        Trainer.resume(data / "runs" / "logged", task="semantic")
    with pytest.raises(SegcliError, match="this is an instance model .*; a semantic model is needed"):
        load_checkpoint(default_weights("instance"), expect_task="semantic")
    with pytest.raises(SegcliError, match="is a semantic model"):
        TrainConfig(task="instance", model="pspnet_resnet18")
    from segcli.errors import with_article
    assert [with_article(w) for w in ("instance", "semantic", "int", "'images'", "'categories'")] == \
        ["an instance", "a semantic", "an int", "an 'images'", "a 'categories'"]


def test_regions_without_a_class_attribute_are_named_in_a_notice(data, tmp_path):
    bare = tmp_path / "bare"
    for split in ("train", "val"):
        folder = bare / split
        shutil.copytree(data / "data" / split / "images", folder / "images")
        project = json.loads((data / "data" / split / "via_project.json").read_text())
        for entry in project["_via_img_metadata"].values():
            for region in entry["regions"]:
                region["region_attributes"] = {}
        project["_via_attributes"]["region"] = {}
        (folder / "via_project.json").write_text(json.dumps(project))
    result = run("train", bare, "--epochs", "1", *TINY, "--batch", "3", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert re.search(r"no class attribute on (\d+) of \1 train and (\d+) of \2 val regions: they train as class "
                     r"'object' \(name it with --category NAME, or choose the attribute with --label-attr\)",
                     text), text

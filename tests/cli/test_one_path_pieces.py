"""Issue 15's smaller pieces: event kinds declared once and every printer held to them, one
class-name matcher, --conf explained on a semantic model (predict and eval) rather than ignored."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import segcli.cli.eval as eval_cli
import segcli.cli.predict as predict_cli
import segcli.cli.train as train_cli
from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.core import events
from segcli.formats.labels import match_class_names
from tests.helpers import run

ENGINE = Path(__file__).resolve().parents[2] / "segcli" / "engine"
JOBS = {"train": events.TRAIN_EVENTS, "predict": events.PREDICT_EVENTS, "eval": events.EVAL_EVENTS}
PRINTERS = {"train": [train_cli.TrainPrinter, train_cli.BarPrinter, train_cli.LogPrinter],
            "predict": [predict_cli.Printer], "eval": [eval_cli.EvalPrinter]}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_job_emits_only_its_declared_event_kinds(job):
    emitted = set()
    for path in (ENGINE / job).glob("*.py"):
        emitted |= set(re.findall(r"\b(?:on_event|emit)\(\"([a-z_]+)\"", path.read_text()))
    assert emitted, job  # the scan finds the calls: the test can fail
    assert emitted <= set(JOBS[job]), emitted - set(JOBS[job])


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_printer_handles_declared_kinds_only_and_refuses_others(job):
    for printer in PRINTERS[job]:
        assert printer.kinds == JOBS[job]
        handled = {name.removeprefix("on_") for name, _ in inspect.getmembers(printer, inspect.isfunction)
                   if name.startswith("on_")}
        assert handled and handled <= set(JOBS[job]), (printer, handled - set(JOBS[job]))
    instance = PRINTERS[job][0].__new__(PRINTERS[job][0])  # no console or bar needed to refuse
    with pytest.raises(ValueError, match="unknown event 'stpe'"):
        instance("stpe")


def test_class_names_match_exactly_first_then_ignoring_case():
    known = ["Car", "car", "Truck"]
    assert match_class_names(["car", "Car", "TRUCK", "bus"], known) == [1, 0, 2, None]
    assert match_class_names(["CAR"], known) == [0]  # the first of those equal ignoring case


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("semantic_conf")
    generate_shapes_dataset(root, 2, seed=5, coco=True, sizes=((96, 64),))
    return root


def test_conf_on_a_semantic_model_is_explained_by_predict(shapes, tmp_path):
    args = ("predict", "folder", shapes / "images", "--task", "semantic", "--workers", 0, "--procs", 1)
    given = run(*args, "--out", tmp_path / "a", "--conf", 0.3)
    assert given.exit_code == 0, given.output
    assert "--conf ignored: a semantic model has no scores to threshold" in " ".join(given.output.split())
    plain = run(*args, "--out", tmp_path / "b")
    assert plain.exit_code == 0 and "--conf ignored" not in plain.output, plain.output


def test_conf_on_a_semantic_model_is_explained_by_eval(shapes, tmp_path):
    args = ("eval", "--gt", shapes / "coco.json", "--task", "semantic", "--workers", 0)
    given = run(*args, "--out", tmp_path / "a", "--conf", 0.3)
    assert given.exit_code == 0, given.output
    assert "--conf ignored" in " ".join(given.output.split())
    plain = run(*args, "--out", tmp_path / "b")
    assert plain.exit_code == 0 and "--conf ignored" not in plain.output, plain.output

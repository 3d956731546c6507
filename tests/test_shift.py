"""A shift test: the shipped instance models scored on shapes from a second, independently
written generator (tests/shift_shapes.py: anti-aliased, blended, blurred, textured), not the one
their training data came from. Each floor is below the model's measured figure on these 12 images
(weights/README.md has the 40-image figures), so a change that makes the shipped weights or the
inference path generalise worse fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from segcli.engine.eval.run import EvalOptions, run_eval
from tests.shift_shapes import make_shift_set

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
FLOORS = {"yolact_resnet18_shapes.pt": 0.80,   # the default, trained on the varied generator; measured 0.857
          "maskrcnn_resnet18_shapes.pt": 0.65}  # trained on the plain one; measured 0.780


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    return make_shift_set(tmp_path_factory.mktemp("shift"), 12, seed=5)


@pytest.mark.parametrize("weights", sorted(FLOORS))
def test_the_shipped_model_holds_up_on_shapes_drawn_another_way(truth, tmp_path, weights):
    report = run_eval(EvalOptions(gt=truth, weights=WEIGHTS / weights, out=tmp_path / "eval", workers=0))
    assert report["ground_truth_objects"] >= 20  # the generator made a real test
    assert report["segm"]["AP"] >= FLOORS[weights], report["segm"]

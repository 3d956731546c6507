"""The shipped default weights: small, safe to load, and as good as weights/README.md says on the
example validation images; predict and eval use them when no --weights is given."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from segcli.cli import app
from segcli.engine.predict.run import PredictOptions, predict_folder
from segcli.models.checkpoint import read_checkpoint
from segcli.models.defaults import DEFAULT_WEIGHTS, default_weights, weights_dir

EXAMPLE_VAL = Path(__file__).resolve().parents[1] / "examples" / "shapes" / "val"
# floors a little under the figures weights/README.md records for examples/shapes/val
MASK_AP_FLOOR, MASK_AP50_FLOOR = 0.88, 0.97  # recorded: 0.922 and 0.999
MIOU_FLOOR, PIXEL_ACCURACY_FLOOR = 0.90, 0.98  # recorded: 0.944 and 0.993


@pytest.mark.parametrize("task", ["instance", "semantic"])
def test_shipped_weights_are_small_and_load_without_pickled_code(task):
    path = default_weights(task)
    assert path.parent == weights_dir() and path.name == DEFAULT_WEIGHTS[task]
    assert path.stat().st_size < 25 * 2**20
    record = read_checkpoint(path)["record"]  # torch.load(weights_only=True) inside
    assert record["task"] == task
    assert [c["name"] for c in record["categories"]] == ["circle", "square", "triangle"]


def test_default_instance_model_scores_on_the_example_val_split(tmp_path):
    result = CliRunner().invoke(app, ["eval", str(EXAMPLE_VAL), "--out", str(tmp_path / "e"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["inputs"]["weights"].endswith(DEFAULT_WEIGHTS["instance"])
    assert report["segm"]["AP"] >= MASK_AP_FLOOR and report["segm"]["AP50"] >= MASK_AP50_FLOOR, report["segm"]
    for name in ("circle", "square", "triangle"):
        assert report["segm"]["per_class"][name] >= MASK_AP_FLOOR - 0.15


def test_default_semantic_model_scores_on_the_example_val_split(tmp_path):
    result = CliRunner().invoke(app, ["eval", str(EXAMPLE_VAL), "--task", "semantic", "--out",
                                      str(tmp_path / "e"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["inputs"]["weights"].endswith(DEFAULT_WEIGHTS["semantic"])
    assert report["mIoU"] >= MIOU_FLOOR and report["pixel_accuracy"] >= PIXEL_ACCURACY_FLOOR, report
    assert (tmp_path / "e" / "confusion_matrix.png").is_file()


def test_predict_without_weights_uses_the_shipped_model(tmp_path):
    result = CliRunner().invoke(app, ["predict", "folder", str(EXAMPLE_VAL / "images"), "--out", str(tmp_path / "p"),
                                      "--workers", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["weights"].endswith(DEFAULT_WEIGHTS["instance"]) and summary["done"] == 20
    dataset = json.loads((tmp_path / "p" / "dataset.json").read_text())
    assert {a["image_id"] for a in dataset["annotations"]} == {image["id"] for image in dataset["images"]}
    # the predictions score well against the ground truth when joined by file name
    result = CliRunner().invoke(app, ["eval", "--pred", str(tmp_path / "p" / "predictions.json"), "--gt",
                                      str(EXAMPLE_VAL / "via_project.json"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["segm"]["AP50"] >= MASK_AP50_FLOOR - 0.05


def test_missing_default_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_WEIGHTS_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["predict", "folder", str(EXAMPLE_VAL / "images"), "--task", "semantic"])
    assert result.exit_code == 2 and "default semantic weights are missing" in result.output
    assert DEFAULT_WEIGHTS["semantic"] in result.output


def test_tiles_find_what_the_whole_images_show(tmp_path):
    """Four example images side by side in one 640x480 picture, predicted in 320-pixel tiles,
    give the same objects as the four images predicted one by one."""
    paths = sorted((EXAMPLE_VAL / "images").iterdir())[:4]
    pictures = [cv2.imread(str(p)) for p in paths]
    big = np.vstack([np.hstack(pictures[:2]), np.hstack(pictures[2:])])
    (tmp_path / "big").mkdir()
    cv2.imwrite(str(tmp_path / "big" / "big.png"), big)
    weights = default_weights("instance")
    tiled = predict_folder(tmp_path / "big", PredictOptions(weights=weights, out=tmp_path / "t", tile=320, workers=0))
    predict_folder(EXAMPLE_VAL / "images", PredictOptions(weights=weights, out=tmp_path / "s", workers=0))
    assert tiled["done"] == 1
    found = json.loads((tmp_path / "t" / "dataset.json").read_text())["annotations"]
    whole = json.loads((tmp_path / "s" / "dataset.json").read_text())
    ids = {image["file_name"]: image["id"] for image in whole["images"]}
    expected = []
    for k, path in enumerate(paths):
        dx, dy = 320 * (k % 2), 240 * (k // 2)
        for a in whole["annotations"]:
            if a["image_id"] == ids[path.name]:
                x, y, w, h = a["bbox"]
                expected.append((a["category_id"], [x + dx, y + dy, w, h]))
    matched = 0
    for category, (x, y, w, h) in expected:
        for a in found:
            bx, by, bw, bh = a["bbox"]
            inter = max(0, min(x + w, bx + bw) - max(x, bx)) * max(0, min(y + h, by + bh) - max(y, by))
            if a["category_id"] == category and inter / (w * h + bw * bh - inter) > 0.7:
                matched += 1
                break
    # tiles are 320x320 around 320x240 originals: a little more context, a few more false alarms
    assert matched >= 0.8 * len(expected) and len(found) <= 1.3 * len(expected), (matched, len(expected), len(found))

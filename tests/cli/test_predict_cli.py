"""segcli predict from the command line: per-stage times in the summary (issue 14 item 5), a path
given without a subcommand, and --classes by name or by COCO category id (item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segcli.data.synthetic import generate_shapes_dataset
from tests.helpers import assert_refused, run

FAST = ("--device", "cpu", "--imgsz", 64, "--workers", 0, "--procs", 1)
STAGES = ("decode", "model", "write")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict_cli")
    generate_shapes_dataset(root, 3, seed=4, sizes=((96, 64), (64, 80)))
    return root / "images"


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# per-stage times -------------------------------------------------------------------------------

def test_summary_gives_the_time_of_each_stage_per_image(images, tmp_path):
    out = tmp_path / "out"
    result = run("predict", "folder", images, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    summary = _summary(out)
    per_image = summary["ms_per_image"]
    assert set(per_image) == set(STAGES)
    assert all(per_image[stage] >= 0 for stage in STAGES)
    wall_ms = summary["seconds"] * 1000
    # with --workers 0 decoding and the model take turns in this process; the writer thread
    # overlaps them, so each stage alone, and decode + model together, fit in the wall time
    images_done = summary["predicted_now"]
    assert images_done == 3
    assert all(per_image[stage] * images_done <= wall_ms for stage in STAGES)
    assert (per_image["decode"] + per_image["model"]) * images_done <= wall_ms
    text = " ".join(result.stdout.split())
    assert "ms decode" in text and "ms model" in text and "ms write per image" in text, result.stdout


# a path with no subcommand ---------------------------------------------------------------------

def _predicted(out: Path) -> list[dict]:
    return json.loads((out / "predictions.json").read_text())


def _image_names(out: Path) -> list[str]:
    return sorted(image["file_name"] for image in json.loads((out / "dataset.json").read_text())["images"])


def test_a_folder_without_subcommand_is_predict_folder(images, tmp_path):
    by_folder = run("predict", "folder", images, "--out", tmp_path / "a", *FAST, "--conf", 0.3)
    assert by_folder.exit_code == 0, by_folder.output
    by_path = run("predict", images, "--out", tmp_path / "b", *FAST, "--conf", 0.3)
    assert by_path.exit_code == 0, by_path.output
    assert _predicted(tmp_path / "b") == _predicted(tmp_path / "a")
    assert _summary(tmp_path / "b")["images"] == 3


def test_image_files_without_subcommand_are_predict_image_with_every_option(images, tmp_path):
    files = sorted(images.iterdir())[:2]
    result = run("predict", *files, "--out", tmp_path / "out", *FAST, "--batch", 2, "--classes", "1,square",
                 "--no-overlays")
    assert result.exit_code == 0, result.output
    assert _image_names(tmp_path / "out") == sorted(f.name for f in files)
    assert not (tmp_path / "out" / "overlays").exists()
    assert {item["category_id"] for item in _predicted(tmp_path / "out")} <= {1, 2}


def test_a_quoted_glob_without_subcommand_predicts_the_matching_images(images, tmp_path):
    first = min(images.iterdir())
    pattern = str(images / f"{first.stem[:-1]}[01]{first.suffix}")  # 000000.png and 000001.png
    result = run("predict", pattern, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output
    assert _image_names(tmp_path / "out") == ["000000.png", "000001.png"]


@pytest.mark.parametrize("name, problem", [("no_such_folder", "no such predict command, folder or file"),
                                           ("nothing*.png", "no image (jpg, png, bmp, tif, webp) matches")])
def test_neither_command_nor_path_is_one_error_line_pointing_at_predict_folder(tmp_path, name, problem):
    assert_refused(run("predict", tmp_path / name), name, problem, "segcli predict folder DIR")


def test_help_shows_the_path_form():
    result = run("predict", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "PATH" in text and "folder" in text and "image" in text


# --classes by name or by id ---------------------------------------------------------------------

def test_classes_by_category_id_equal_classes_by_name(images, tmp_path):
    by_name = run("predict", "folder", images, "--out", tmp_path / "a", *FAST, "--conf", 0.3, "--classes",
                  "circle,triangle")
    by_id = run("predict", "folder", images, "--out", tmp_path / "b", *FAST, "--conf", 0.3, "--classes", "1, 3")
    assert by_name.exit_code == 0 and by_id.exit_code == 0, by_name.output + by_id.output
    assert _predicted(tmp_path / "b") == _predicted(tmp_path / "a")
    assert {item["category_id"] for item in _predicted(tmp_path / "b")} <= {1, 3}


@pytest.mark.parametrize("classes, bad", [("7", "7"), ("0", "0"), ("circle,dog", "dog")])
def test_unknown_classes_are_one_error_line_listing_the_valid_ones(images, tmp_path, classes, bad):
    assert_refused(run("predict", "folder", images, "--out", tmp_path / "out", *FAST, "--classes", classes),
                   bad, "1 circle", "2 square", "3 triangle")
    assert not (tmp_path / "out").exists()

"""Outputs that would destroy inputs (issue 13): ``convert`` and its report, ``convert --to masks
--overwrite``, ``eval --json``, and classes files that must read back what was written.

Each test runs the real CLI on files it makes in tmp_path and checks that the inputs are
byte-for-byte unchanged, that the refusal is one ``error:`` line with exit code 2, and that
nothing was written.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import (
    assert_refused,
    region,
    run,
    snapshot,
    via2_project,
    write_image,
    write_json,
)

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 64, 48
SQUARE = {"name": "polygon", "all_points_x": [10, 30, 30, 10], "all_points_y": [10, 10, 30, 30]}


def coco(names: list[str]) -> dict:
    """A COCO file: image a.png (64x48) with one square per category name."""
    return {"images": [{"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT}],
            "annotations": [{"id": k, "image_id": 1, "category_id": k, "area": 100.0, "bbox": [2 * k, 2, 4, 4],
                             "segmentation": [[2 * k, 2, 2 * k + 4, 2, 2 * k + 4, 6, 2 * k, 6]], "iscrowd": 0}
                            for k in range(1, len(names) + 1)],
            "categories": [{"id": k, "name": name} for k, name in enumerate(names, start=1)]}


def via_dataset(folder: Path) -> Path:
    """images/a.png and images/b.png with a VIA project annotating them, all under ``folder``."""
    write_image(folder / "images" / "a.png", WIDTH, HEIGHT, seed=1)
    write_image(folder / "images" / "b.png", WIDTH, HEIGHT, seed=2)
    project = via2_project({"a.png": [region(SQUARE, name="cell")], "b.png": [region(SQUARE, name="cell")]})
    project["_via_settings"]["core"]["default_filepath"] = "images/"
    return write_json(folder / "via.json", project)


def label_map_folder(folder: Path, classes: str) -> Path:
    """A label-mask folder: classes.txt and a.png holding labels 1 and 2."""
    folder.mkdir(parents=True)
    label_map = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    label_map[5:15, 5:15] = 1
    label_map[25:35, 25:35] = 2
    assert cv2.imwrite(str(folder / "a.png"), label_map)
    (folder / "classes.txt").write_text(classes, encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- the report is an output


def test_report_of_the_output_being_the_input_is_refused(tmp_path):
    """``convert A.report.json A.json``: A.json's report would be written over the input."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    source = write_json(tmp_path / "A.report.json", coco(["cell"]))
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        assert_refused(run("convert", source, tmp_path / "A.json", "--to", "via", *extra), "A.report.json", "input")
        assert snapshot(tmp_path) == before


def test_existing_report_is_replaced_only_with_overwrite(tmp_path):
    """An unrelated ``X.report.json`` beside a new output needs --overwrite, like the output; a
    re-run with --overwrite replaces both."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    source = write_json(tmp_path / "coco.json", coco(["cell"]))
    report = tmp_path / "X.report.json"
    report.write_text("my notes", encoding="utf-8")
    assert_refused(run("convert", source, tmp_path / "X.json"), "X.report.json", "--overwrite")
    assert report.read_text(encoding="utf-8") == "my notes"
    assert not (tmp_path / "X.json").exists()
    result = run("convert", source, tmp_path / "X.json", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text(encoding="utf-8"))["output"] == str(tmp_path / "X.json")
    assert (tmp_path / "X.json").exists()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_report_path_is_a_folder_nothing_written(tmp_path, overwrite):
    """out.report.json a folder: refused before out.json is written."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    source = write_json(tmp_path / "coco.json", coco(["cell"]))
    (tmp_path / "out.report.json").mkdir()
    assert_refused(run("convert", source, tmp_path / "out.json", "--to", "via", *overwrite), "out.report.json")
    assert not (tmp_path / "out.json").exists()
    assert (tmp_path / "out.report.json").is_dir() and not any((tmp_path / "out.report.json").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "coco.json", "out.report.json"]


# --------------------------------------------------------------------------- mask folders never take inputs


@pytest.mark.parametrize("target", ["images", ".", ".."], ids=["images-folder", "annotation-folder", "parent"])
def test_masks_overwrite_never_replaces_a_folder_holding_inputs(tmp_path, target):
    """--to masks --overwrite into the images folder, the annotation file's folder or a parent
    of both: refused, every input file still there."""
    data = tmp_path / "data"
    source = via_dataset(data)
    before = snapshot(tmp_path)
    output = (data / target).resolve()
    line = assert_refused(run("convert", source, output, "--to", "masks", "--overwrite"), "input")
    assert str(output) in line
    assert snapshot(tmp_path) == before


def test_masks_overwrite_of_a_folder_holding_user_files_is_refused(tmp_path):
    """An existing folder that is not a previous segcli mask output is never replaced."""
    source = via_dataset(tmp_path)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("_background_\ncell\n", encoding="utf-8")
    (labels / "thesis.tex").write_text("three years of work", encoding="utf-8")
    before = snapshot(tmp_path)
    assert_refused(run("convert", source, labels, "--to", "masks", "--overwrite"), "labels", "thesis.tex")
    assert snapshot(tmp_path) == before


def test_masks_overwrite_replaces_a_previous_segcli_output(tmp_path):
    """What --overwrite is for: re-running a conversion into the folder it wrote."""
    source = via_dataset(tmp_path)
    labels = tmp_path / "labels"
    assert run("convert", source, labels, "--to", "masks").exit_code == 0
    first = snapshot(labels)
    result = run("convert", source, labels, "--to", "masks", "--overwrite")
    assert result.exit_code == 0, result.output
    assert snapshot(labels) == first
    assert sorted(first) == ["a.png", "b.png", "classes.txt"]


def test_replacing_a_mask_folder_leaves_a_user_folder_named_like_its_backup_alone(tmp_path):
    """The old folder is parked during the swap; a user's '.labels.old' beside it is not the place."""
    source = via_dataset(tmp_path)
    labels = tmp_path / "labels"
    assert run("convert", source, labels, "--to", "masks").exit_code == 0
    backup = tmp_path / ".labels.old"
    backup.mkdir()
    (backup / "keep.txt").write_text("mine", encoding="utf-8")
    assert run("convert", source, labels, "--to", "masks", "--overwrite").exit_code == 0
    assert (backup / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".labels.old"]


def test_masks_output_inside_the_input_mask_folder_is_refused(tmp_path):
    """A sub-folder of an input mask folder is part of the input (maps are read recursively)."""
    maps = label_map_folder(tmp_path / "maps", "_background_\ncat\ndog\n")
    (maps / "more").mkdir()
    assert cv2.imwrite(str(maps / "more" / "b.png"), np.ones((HEIGHT, WIDTH), dtype=np.uint8))
    before = snapshot(tmp_path)
    assert_refused(run("convert", maps, maps / "more", "--to", "masks", "--overwrite"), "input folder")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- eval --json


def semantic_eval_inputs(tmp_path: Path) -> tuple[Path, Path]:
    gt = label_map_folder(tmp_path / "gt", "_background_\ncat\ndog\n")
    pred = label_map_folder(tmp_path / "pred", "_background_\ncat\ndog\n")
    return gt, pred


@pytest.mark.parametrize("json_at", ["gt/classes.txt", "pred/a.png", "pred/metrics.json", "gt"],
                         ids=["ground-truth-file", "prediction-file", "inside-predictions", "ground-truth-folder"])
def test_eval_json_never_writes_over_or_into_inputs(tmp_path, json_at):
    gt, pred = semantic_eval_inputs(tmp_path)
    before = snapshot(tmp_path)
    result = run("eval", "--gt", gt, "--pred", pred, "--out", tmp_path / "eval", "--json", tmp_path / json_at)
    assert_refused(result, json_at.split("/")[-1], "--json")
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "eval").exists()


def test_eval_json_prediction_file_is_refused(tmp_path):
    """Instance eval: --json naming the COCO results being scored."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    gt = write_json(tmp_path / "gt.json", coco(["cell"]))
    pred = write_json(tmp_path / "pred.json", [{"image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4], "score": 0.9}])
    before = snapshot(tmp_path)
    assert_refused(run("eval", "--gt", gt, "--pred", pred, "--out", tmp_path / "eval", "--json", pred),
                   "pred.json", "input")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- classes files round-trip


def test_class_names_round_trip_exactly_through_classes_txt(tmp_path):
    """COCO -> masks -> COCO keeps every name as written: spaces, '#', unicode, a background word."""
    names = ["  leading", "trailing  ", "# not a comment", "caf\u00e9 \u732b", "background", "_background_", "a\u00a0b"]
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    source = write_json(tmp_path / "coco.json", coco(names))
    assert run("convert", source, tmp_path / "maps", "--to", "masks").exit_code == 0
    result = run("convert", tmp_path / "maps", tmp_path / "back.json", "--images", tmp_path)
    assert result.exit_code == 0, result.output
    back = json.loads((tmp_path / "back.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in back["categories"]] == names
    assert len(back["annotations"]) == len(names)


@pytest.mark.parametrize("name", ["line\nbreak", "carriage\rreturn", "nul\x00", "para\u2029graph", "   "])
def test_category_name_a_classes_file_cannot_hold_is_refused(tmp_path, name):
    """A name with a line break would add a line to classes.txt and shift every later class."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    source = write_json(tmp_path / "coco.json", coco(["cat", name, "dog"]))
    assert_refused(run("convert", source, tmp_path / "maps", "--to", "masks"), "coco.json", "category name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "coco.json"]


def test_checkpoint_class_name_with_a_line_break_is_refused_by_predict(tmp_path):
    """A semantic checkpoint naming a class 'square\\nsquare': predict refuses it up front."""
    checkpoint = torch.load(ROOT / "weights" / "pspnet_resnet18_shapes.pt", weights_only=True)
    checkpoint["record"]["categories"][1]["name"] = "square\nsquare"
    weights = tmp_path / "broken.pt"
    torch.save(checkpoint, weights)
    image = write_image(tmp_path / "in" / "a.png", WIDTH, HEIGHT)
    result = run("predict", "image", image, "--weights", weights, "--out", tmp_path / "out",
                 "--device", "cpu")
    assert_refused(result, "broken.pt", "category name")
    assert not (tmp_path / "out").exists()


def test_duplicate_class_names_in_classes_txt_are_refused(tmp_path):
    """Masks -> COCO with 'cat' twice in classes.txt wrote a COCO file `segcli stats` refused."""
    maps = label_map_folder(tmp_path / "maps", "_background_\ncat\ncat\n")
    result = run("convert", maps, tmp_path / "out.json")
    assert_refused(result, "classes.txt", "'cat'", "lines 2 and 3")
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "out.report.json").exists()


# --------------------------------------------------------------------------- too many classes for a PNG


def test_more_categories_than_16_bit_masks_hold_is_refused_up_front(tmp_path):
    """65,536 categories (a VIA dropdown) -> masks: refused before anything is rasterised."""
    options = {str(k): f"c{k}" for k in range(65536)}
    attributes = {"region": {"class": {"type": "dropdown", "options": options, "default_options": {}}}, "file": {}}
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    source = write_json(tmp_path / "via.json", via2_project({"a.png": [region(SQUARE, **{"class": "65535"})]},
                                                           attributes))
    assert_refused(run("convert", source, tmp_path / "maps", "--to", "masks"), "65536 categories", "65535")
    assert not (tmp_path / "maps").exists()

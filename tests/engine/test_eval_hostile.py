"""Hostile inputs to ``segcli eval`` (issue 13): an --out that is a file, malformed prediction
files, out-of-range options, FIFOs and decompression bombs among label maps, and outputs that
are all or nothing.

Each test runs the real CLI on files it makes in tmp_path and checks one ``error:`` line, exit
code 2, no traceback and no output. Tests that could hang (FIFOs) run the CLI in a subprocess
with a timeout, so a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segcli.cli import app
from tests.helpers import can_mount_tmpfs

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 64, 48
SQUARE = [[10, 10, 30, 10, 30, 30, 10, 30]]
TRUTH = {"images": [{"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 400.0,
                          "segmentation": SQUARE, "bbox": [10, 10, 20, 20]}],
         "categories": [{"id": 1, "name": "cell"}]}
RESULT = {"image_id": 1, "category_id": 1, "segmentation": SQUARE, "bbox": [10, 10, 20, 20], "score": 0.9}
IMAGES = [{"id": 1, "file_name": "a.png"}]
CATEGORIES = [{"id": 1, "name": "cell"}]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def run_process(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI in its own process: a hang becomes a TimeoutExpired failure, not a blocked suite."""
    return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "COLUMNS": "200"})


def assert_refused(code: int, stderr: str, *names: str) -> str:
    """Exit code 2, one ``error:`` line naming ``names``, no traceback."""
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def refused(result, *names: str) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return assert_refused(result.exit_code, result.stderr, *names)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def instance_files(tmp_path) -> tuple[Path, Path]:
    """A COCO ground truth (image a.png, one square) and a results list predicting it."""
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps(TRUTH), encoding="utf-8")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([RESULT]), encoding="utf-8")
    return truth, pred


def label_maps(folder: Path, names=("a", "b")) -> Path:
    """A label-mask folder: classes.txt (background, cell) and one small map per name."""
    folder.mkdir(parents=True)
    label_map = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    label_map[5:15, 5:15] = 1
    for name in names:
        assert cv2.imwrite(str(folder / f"{name}.png"), label_map)
    (folder / "classes.txt").write_text("_background_\ncell\n", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- 1. --out an existing file


def test_out_an_existing_file_is_refused_and_left_alone(tmp_path, instance_files):
    truth, pred = instance_files
    out = tmp_path / "taken"
    out.write_text("mine", encoding="utf-8")
    before = snapshot(tmp_path)
    line = refused(run("eval", "--gt", truth, "--pred", pred, "--out", out), "taken", "--out", "not a folder")
    assert snapshot(tmp_path) == before, line


def test_out_below_a_file_is_refused(tmp_path, instance_files):
    truth, pred = instance_files
    (tmp_path / "taken").write_text("mine", encoding="utf-8")
    before = snapshot(tmp_path)
    refused(run("eval", "--gt", truth, "--pred", pred, "--out", tmp_path / "taken" / "eval"), "taken", "--out")
    assert snapshot(tmp_path) == before


def test_out_a_file_is_refused_before_a_model_is_loaded(tmp_path):
    """With a model (here the shipped one): refused before the ground truth or the model is read."""
    (tmp_path / "split").mkdir()
    out = tmp_path / "taken"
    out.write_text("mine", encoding="utf-8")
    refused(run("eval", tmp_path / "split", "--out", out), "taken", "not a folder")
    assert out.read_text(encoding="utf-8") == "mine"


# --------------------------------------------------------------------------- 2. malformed --pred files


PREDICTION_FILES = {
    # a COCO file of predictions: its images and categories are what it adds to a results list
    "annotations_without_images": ({"annotations": [RESULT], "categories": CATEGORIES}, ["'images'"]),
    "annotations_without_categories": ({"annotations": [RESULT], "images": IMAGES}, ["'categories'"]),
    "images_a_string": ({"annotations": [RESULT], "images": "a.png", "categories": CATEGORIES},
                        ["'images' must be a list"]),
    "images_an_object": ({"annotations": [RESULT], "images": {"1": "a.png"}, "categories": CATEGORIES},
                         ["'images' must be a list"]),
    "image_not_an_object": ({"annotations": [RESULT], "images": [5], "categories": CATEGORIES}, ["image 0"]),
    "image_id_a_string": ({"annotations": [RESULT], "images": [{"id": "1", "file_name": "a.png"}],
                           "categories": CATEGORIES}, ["image 0", "'id'"]),
    "image_file_name_a_number": ({"annotations": [RESULT], "images": [{"id": 1, "file_name": 5}],
                                  "categories": CATEGORIES}, ["image 0", "'file_name'"]),
    "image_id_twice": ({"annotations": [RESULT], "images": [{"id": 1, "file_name": "a.png"},
                                                             {"id": 1, "file_name": "b.png"}],
                        "categories": CATEGORIES}, ["image 1", "id 1"]),
    "categories_a_string": ({"annotations": [RESULT], "images": IMAGES, "categories": "cell"},
                            ["'categories' must be a list"]),
    "category_null": ({"annotations": [RESULT], "images": IMAGES, "categories": [None]}, ["category 0"]),
    "category_name_a_list": ({"annotations": [RESULT], "images": IMAGES, "categories": [{"id": 1, "name": ["x"]}]},
                             ["category 0", "'name'"]),
    "category_id_twice": ({"annotations": [RESULT], "images": IMAGES,
                           "categories": [{"id": 1, "name": "cell"}, {"id": 1, "name": "dot"}]},
                          ["category 1", "id 1"]),
    "annotation_not_an_object": ({"annotations": [RESULT, "x"], "images": IMAGES, "categories": CATEGORIES},
                                 ["prediction 1", "must be an object"]),
    "bbox_negative_width": ([{**RESULT, "bbox": [1, 1, -5, 5]}], ["prediction 0", "bbox"]),
    "bbox_1e308": ([{**RESULT, "bbox": [1, 1, 1e308, 5]}], ["prediction 0", "bbox"]),
    "bbox_holds_true": ([{**RESULT, "bbox": [True, 1, 2, 3]}], ["prediction 0", "bbox"]),
}


@pytest.mark.parametrize("name", sorted(PREDICTION_FILES))
def test_malformed_prediction_file_is_one_line_error(tmp_path, instance_files, name):
    data, fragments = PREDICTION_FILES[name]
    truth, _ = instance_files
    pred = tmp_path / f"{name}.json"
    pred.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "eval"
    refused(run("eval", "--gt", truth, "--pred", pred, "--out", out), pred.name, *fragments)
    assert not out.exists()


def test_well_formed_coco_file_of_predictions_still_scores(tmp_path, instance_files):
    truth, _ = instance_files
    pred = tmp_path / "dataset.json"
    pred.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.png"}], "categories": CATEGORIES,
                                "annotations": [{**RESULT, "image_id": 7}]}), encoding="utf-8")
    result = run("eval", "--gt", truth, "--pred", pred, "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["segm"]["AP"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- 3. option ranges


OPTIONS = [("--conf", "nan"), ("--conf", "inf"), ("--conf", "-0.1"), ("--conf", "1.5"),
           ("--ignore-index", "-1"), ("--ignore-index", "65536"), ("--worst", "-1"),
           ("--imgsz", "0"), ("--imgsz", "-5"), ("--imgsz", "100000"),
           ("--batch", "0"), ("--batch", "100000"), ("--workers", "-3"), ("--workers", "1000")]


@pytest.mark.parametrize("option,value", OPTIONS)
def test_option_out_of_range_is_refused_before_any_work(tmp_path, option, value):
    """Valid inputs, one bad option: refused by name before anything is read or created."""
    gt, pred = label_maps(tmp_path / "gt"), label_maps(tmp_path / "pred")
    out = tmp_path / "eval"
    line = refused(run("eval", "--gt", gt, "--pred", pred, "--out", out, option, value), option)
    assert value.lstrip("-") in line.lower()
    assert not out.exists()


# --------------------------------------------------------------------------- 4. FIFOs and bombs among masks


@pytest.mark.parametrize("side", ["pred", "gt"])
def test_fifo_named_like_a_label_map_is_refused_not_waited_on(tmp_path, side):
    folders = {"gt": label_maps(tmp_path / "gt"), "pred": label_maps(tmp_path / "pred")}
    os.mkfifo(folders[side] / "c.png")
    out = tmp_path / "eval"
    done = run_process("eval", "--gt", folders["gt"], "--pred", folders["pred"], "--out", out)
    assert_refused(done.returncode, done.stderr, "c.png", "not a regular file")
    assert not out.exists()


@pytest.mark.parametrize("side", ["pred", "gt"])
def test_fifo_given_as_the_prediction_or_truth_file_is_refused(tmp_path, instance_files, side):
    truth, pred = instance_files
    fifo = tmp_path / f"fifo_{side}.json"
    os.mkfifo(fifo)
    files = {"gt": truth, "pred": pred, side: fifo}
    done = run_process("eval", "--gt", files["gt"], "--pred", files["pred"], "--out", tmp_path / "eval")
    assert_refused(done.returncode, done.stderr, fifo.name)
    assert not (tmp_path / "eval").exists()


@pytest.fixture(scope="module")
def bomb_png(tmp_path_factory) -> Path:
    """A valid 20000x20000 palette PNG of zeros: 400 megapixels in about 50 KB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    image = Image.new("P", (20000, 20000), 0)
    image.putpalette([0, 0, 0, 255, 255, 255])
    image.save(path)
    return path


@pytest.mark.parametrize("side", ["pred", "gt"])
def test_400_megapixel_label_map_is_refused_by_the_pixel_limit(tmp_path, bomb_png, side):
    folders = {"gt": label_maps(tmp_path / "gt"), "pred": label_maps(tmp_path / "pred")}
    shutil.copyfile(bomb_png, folders[side] / "b.png")
    out = tmp_path / "eval"
    refused(run("eval", "--gt", folders["gt"], "--pred", folders["pred"], "--out", out),
            "b.png", "20000x20000", "megapixel limit")
    assert not out.exists()


def test_pixel_limit_follows_segcli_max_megapixels(tmp_path):
    """The one pixel limit: a 64x48 map passes by default and is refused under 0.001 MP."""
    gt, pred = label_maps(tmp_path / "gt"), label_maps(tmp_path / "pred")
    result = CliRunner().invoke(app, ["eval", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "e")],
                                env={"SEGCLI_MAX_MEGAPIXELS": "0.001"})
    refused(result, "a.png", "megapixel limit")
    assert not (tmp_path / "e").exists()


# --------------------------------------------------------------------------- 5. outputs all or nothing


def test_existing_out_with_a_folder_in_place_of_metrics_json_is_refused_before_work(tmp_path, instance_files):
    truth, pred = instance_files
    out = tmp_path / "eval"
    (out / "metrics.json").mkdir(parents=True)
    refused(run("eval", "--gt", truth, "--pred", pred, "--out", out), "metrics.json", "folder")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_json_below_a_file_is_refused_before_work(tmp_path, instance_files):
    truth, pred = instance_files
    (tmp_path / "taken").write_text("mine", encoding="utf-8")
    out = tmp_path / "eval"
    refused(run("eval", "--gt", truth, "--pred", pred, "--out", out, "--json", tmp_path / "taken" / "m.json"),
            "taken")
    assert not out.exists()


def test_disk_full_midway_leaves_no_half_filled_out_folder(tmp_path, instance_files):
    """A real full disk (a 40 KB tmpfs in a private mount namespace): the first PR-curve plot
    (about 30 KB) fits, the second does not. The new --out folder must not remain, half filled."""
    if not can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs in a private namespace here (needs root and unshare)")
    truth, pred = instance_files
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "eval"
    command = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "segcli", "eval", "--gt", truth,
                                                      "--pred", pred, "--out", out])
    script = (f"mount -t tmpfs -o size=40k tmpfs {shlex.quote(str(disk))} || exit 99; {command} >/dev/null; "
              f"rc=$?; ls -A {shlex.quote(str(disk))} >&2; exit $rc")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode != 99, done.stderr
    lines = done.stderr.splitlines()
    assert_refused(done.returncode, "\n".join(lines[:1]), "No space left")
    assert lines[1:] == [], f"left on the disk: {lines[1:]}"


def test_existing_out_gets_every_file_or_keeps_its_old_ones(tmp_path, instance_files):
    """An existing --out holding an earlier run: a failing run (a bad prediction) leaves it as it was."""
    truth, pred = instance_files
    out = tmp_path / "eval"
    assert run("eval", "--gt", truth, "--pred", pred, "--out", out).exit_code == 0
    before = snapshot(out)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**RESULT, "score": "high"}]), encoding="utf-8")
    refused(run("eval", "--gt", truth, "--pred", bad, "--out", out), "bad.json")
    assert snapshot(out) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_with_a_model_every_listed_file_is_in_out_and_nothing_hidden_remains(tmp_path):
    """The shipped instance model on one generated image: the overlays of worst/ and the plots
    are moved into --out with the rest, and metrics.json names their final paths. A ground-truth
    object that is not in the picture makes sure the model is not perfect, so worst/ is written."""
    from segcli.data.synthetic import generate_shapes_dataset

    via = generate_shapes_dataset(tmp_path / "split", 1, seed=1, sizes=((96, 64),))
    project = json.loads(via.read_text())
    entry = next(iter(project["_via_img_metadata"].values()))
    entry["regions"].append({"shape_attributes": {"name": "polygon", "all_points_x": [1, 9, 9, 1],
                                                  "all_points_y": [1, 1, 9, 9]},
                             "region_attributes": {"shape": "circle"}})
    via.write_text(json.dumps(project))
    out = tmp_path / "eval"
    result = run("eval", tmp_path / "split", "--out", out, "--device", "cpu", "--workers", 0)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    overlays = [row["overlay"] for row in metrics["worst_images"] if "overlay" in row]
    assert overlays, metrics["worst_images"]
    listed = list(metrics["files"].values()) + overlays
    assert listed and all(Path(path).is_file() and Path(path).parent.resolve().is_relative_to(out.resolve())
                          for path in listed), listed
    assert [p for p in out.rglob(".*")] == []


@pytest.mark.parametrize("where", ["pred", "pred/sub", "gt", "gt/sub"])
def test_out_among_the_label_maps_being_scored_is_refused(tmp_path, where):
    """confusion_matrix.png written into a mask folder would be read as a label map next time."""
    gt, pred = label_maps(tmp_path / "gt"), label_maps(tmp_path / "pred")
    before = snapshot(tmp_path)
    refused(run("eval", "--gt", gt, "--pred", pred, "--out", tmp_path / where), "--out", "input folder")
    assert snapshot(tmp_path) == before
    assert where in ("pred", "gt") or not (tmp_path / where).exists()


def test_out_the_split_folder_being_scored_is_refused(tmp_path, instance_files):
    """metrics.json beside the split's annotation file would make the split ambiguous."""
    truth, pred = instance_files
    split = tmp_path / "split"
    split.mkdir()
    shutil.copyfile(truth, split / "coco.json")
    assert cv2.imwrite(str(split / "a.png"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    before = snapshot(split)
    refused(run("eval", split, "--pred", pred, "--out", split), "--out", "input folder")
    assert snapshot(split) == before

"""Hostile options of ``segcli train`` (issue 13): run names that would leave ``--out`` and option
values out of range are one ``error:`` line with exit 2, before any data is read or any run
folder is made."""

from __future__ import annotations

import pytest

BAD_NAMES = ["../../x", "a/b", "a\\b", "..", ".", "", "a\x00b", "x" * 201, "line\nbreak"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["dotdot-path", "slash", "backslash", "dotdot", "dot", "empty",
                                                  "nul", "201-chars", "newline"])
def test_run_names_are_single_path_components(tmp_path, name):
    out = tmp_path / "a" / "b" / "runs"
    result = run("train", tmp_path / "no-data", "--out", out, "--name", name, "--epochs", 1)
    assert_refused(result, "--name")
    assert list(tmp_path.iterdir()) == []


BAD_OPTIONS = [("--imgsz", "100000"), ("--imgsz", "31"), ("--imgsz", "-5"), ("--batch", "0"), ("--workers", "-3"),
               ("--epochs", "0"), ("--epochs", "-1"), ("--lr", "nan"), ("--lr", "0"), ("--lr", "-1"),
               ("--lr", "inf"), ("--patience", "-1"), ("--val-every", "0"), ("--seed", "-1")]


@pytest.mark.parametrize("option,value", BAD_OPTIONS, ids=[f"{o}={v}" for o, v in BAD_OPTIONS])
def test_option_ranges_are_checked_before_any_work(tmp_path, option, value):
    result = run("train", tmp_path / "no-data", "--out", tmp_path / "runs", option, value)
    assert_refused(result, option)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option,value", [("--epochs", "0"), ("--workers", "-3")])
def test_option_ranges_are_checked_on_resume_too(tmp_path, option, value):
    result = run("train", "--resume", tmp_path / "no-run", option, value)
    assert_refused(result, option)


# --------------------------------------------------------------------------- hostile training data

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from segcli.data.synthetic import generate_shapes_dataset  # noqa: E402
from tests.helpers import assert_refused, run

TINY = ("--epochs", 1, "--imgsz", 64, "--batch", 2, "--workers", 0, "--device", "cpu")
BOX = {"name": "rect", "x": 0, "y": 0, "width": 1500, "height": 1}


def tiny_data(root: Path, val_objects: bool = True) -> Path:
    """DATA with train/ and val/: 3 generated 64x48 images each (val without regions if asked)."""
    for split in ("train", "val"):
        generate_shapes_dataset(root / split, 3, seed=5, sizes=((64, 48),))
    if not val_objects:
        project = json.loads((root / "val" / "via_project.json").read_text())
        for entry in project["_via_img_metadata"].values():
            entry["regions"] = []
        (root / "val" / "via_project.json").write_text(json.dumps(project))
    return root


def add_train_image(root: Path, name: str, regions: list | None = None) -> None:
    """Name images/``name`` in the training project (the file is made by the caller)."""
    path = root / "train" / "via_project.json"
    project = json.loads(path.read_text())
    project["_via_img_metadata"][name] = {"filename": f"images/{name}", "size": -1, "file_attributes": {},
                                          "regions": regions or []}
    path.write_text(json.dumps(project))


def test_a_2000x1_training_image_is_skipped_by_name(tmp_path):
    data = tiny_data(tmp_path / "data")
    cv2.imwrite(str(data / "train" / "images" / "line.png"), np.full((1, 2000, 3), 200, np.uint8))
    add_train_image(data, "line.png", [{"shape_attributes": BOX, "region_attributes": {"shape": "square"}}])
    result = run("train", data, "--out", tmp_path / "runs", *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "line.png" in result.output
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").is_file()


def test_a_truncated_jpeg_and_an_html_page_are_named(tmp_path):
    data = tiny_data(tmp_path / "data")
    ok, jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (data / "train" / "images" / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (data / "train" / "images" / "page.jpg").write_text("<html><body>not an image</body></html>")
    add_train_image(data, "cut.jpg")
    add_train_image(data, "page.jpg")
    result = run("train", data, "--out", tmp_path / "runs", *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "cut.jpg" in result.output and "page.jpg" in result.output, result.output


def test_a_validation_split_without_objects_still_gives_a_best_pt(tmp_path):
    data = tiny_data(tmp_path / "data", val_objects=False)
    result = run("train", data, "--out", tmp_path / "runs", *TINY)
    assert result.exit_code == 0, (result.output, result.exception)
    run_dir = tmp_path / "runs" / "exp"
    assert (run_dir / "weights" / "best.pt").is_file(), result.output
    assert "last epoch" in result.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_a_training_image_does_not_hang(tmp_path):
    data = tiny_data(tmp_path / "data")
    os.mkfifo(data / "train" / "images" / "pipe.png")
    add_train_image(data, "pipe.png")
    command = [sys.executable, "-m", "segcli", "train", str(data), "--out", str(tmp_path / "runs"),
               *map(str, TINY)]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("segcli train blocked on a FIFO")
    assert finished.returncode == 0, finished.stderr
    assert "pipe.png" in finished.stdout + finished.stderr


def test_the_largest_seed_trains(tmp_path):
    """--seed 2^32-1 is in range: the per-image augmentation seed must not overflow torch's."""
    data = tiny_data(tmp_path / "data")
    result = run("train", data, "--out", tmp_path / "runs", *TINY, "--seed", 2**32 - 1)
    assert result.exit_code == 0, (result.output, result.exception)

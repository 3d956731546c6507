"""Small builders shared by tests: images on disk and VIA/COCO dicts."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """Write a random RGB PNG (or JPEG by suffix) of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return path


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def via2_project(images: dict[str, list[dict]], attributes: dict | None = None,
                 file_attributes: dict[str, dict] | None = None) -> dict:
    """A VIA 2 project from {filename: [region, ...]}."""
    metadata = {}
    for name, regions in images.items():
        metadata[f"{name}-1"] = {"filename": name, "size": -1, "regions": regions,
                                 "file_attributes": (file_attributes or {}).get(name, {})}
    return {"_via_settings": {"core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""},
                              "project": {"name": "t"}},
            "_via_img_metadata": metadata,
            "_via_attributes": attributes or {"region": {}, "file": {}}}


def region(shape: dict, **attrs) -> dict:
    return {"shape_attributes": shape, "region_attributes": attrs}


def run(*args):
    """The segcli CLI in-process (typer's CliRunner), arguments turned into strings."""
    from typer.testing import CliRunner

    from segcli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_refused(result, *names: str) -> str:
    """Exit code 2, one ``error:`` line naming ``names``, no traceback; ``result`` from ``run`` or
    ``subprocess.run(..., capture_output=True, text=True)``. Returns the line."""
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert exit_code == 2, (exit_code, result.stdout, result.stderr)
    assert getattr(result, "exception", None) is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) with its bytes, to prove nothing was replaced or deleted."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def can_mount_tmpfs(tmp_path: Path) -> bool:
    """True where a private mount namespace with a tmpfs can be made (``unshare -m``), so that
    tests can run a command on a real small or full disk; False (the test skips) elsewhere."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs {probe}"],
                          capture_output=True, timeout=60)
    return done.returncode == 0


def direct_cocoeval(gt_path, results, iou_type: str) -> list[float]:
    """The 12 COCOeval figures of a plain pycocotools call (loadRes of the results as given), to
    hold segcli's figures against."""
    import contextlib
    import copy
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def small_train_val(root: Path, train_images: int = 8) -> Path:
    """``root/train`` and ``root/val`` (2 images) of generated 128x96 shapes with coco.json: a
    training run of a few seconds; returns ``root``."""
    from segcli.data.synthetic import generate_shapes_dataset

    generate_shapes_dataset(root / "train", train_images, seed=7, coco=True, sizes=((128, 96),))
    generate_shapes_dataset(root / "val", 2, seed=8, coco=True, sizes=((128, 96),))
    return root



MASK_RCNN_RECIPE = {"model": "maskrcnn_resnet18_fpn", "optimizer": "sgd", "ema": False, "mosaic": False,
                    "copy_paste": False}
"""TrainConfig options of the Mask R-CNN recipe that was segcli's default until the one-stage model
and its recipe replaced it: for tests of other things (predict, resume, checkpoints) whose tiny
runs were tuned on it, and which start from the shipped Mask R-CNN."""

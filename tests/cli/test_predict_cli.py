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

"""An instance-id mask folder (``convert --to masks --instances``) is ground truth for
``segcli eval`` as its COCO conversion is, and is refused as predictions (it has no scores)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import assert_refused, run

VAL = Path(__file__).resolve().parents[2] / "examples" / "shapes" / "val"


def _results_from(coco_path: Path, drop_every: int = 3) -> list[dict]:
    """The ground truth's own objects as scored results, every ``drop_every``-th left out (so
    the figures are not all 1 and a wrong join shows)."""
    coco = json.loads(coco_path.read_text())
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "bbox": a["bbox"], "score": 1.0 - 0.01 * (k % 50)}
            for k, a in enumerate(coco["annotations"]) if k % drop_every]


def test_instance_id_masks_score_as_their_coco_conversion(tmp_path):
    coco_path, inst = tmp_path / "gt.json", tmp_path / "inst"
    assert run("convert", VAL / "via_project.json", coco_path, "--images", VAL / "images").exit_code == 0
    assert run("convert", VAL / "via_project.json", inst, "--to", "masks", "--instances",
               "--images", VAL / "images").exit_code == 0
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results_from(coco_path)))
    figures = {}
    for name, gt in (("coco", coco_path), ("inst", inst)):
        metrics = tmp_path / f"{name}.json"
        result = run("eval", "--gt", gt, "--pred", results, "--images", VAL / "images", "--json", metrics,
                     "--out", tmp_path / f"out_{name}")
        assert result.exit_code == 0, result.stdout + result.stderr
        report = json.loads(metrics.read_text())
        figures[name] = {kind: report[kind]["AP"] for kind in ("segm", "bbox")}
    assert 0.3 < figures["coco"]["segm"] < 0.99
    assert figures["inst"] == figures["coco"]


def test_instance_id_masks_as_predictions_are_refused(tmp_path):
    inst = tmp_path / "inst"
    assert run("convert", VAL / "via_project.json", inst, "--to", "masks", "--instances",
               "--images", VAL / "images").exit_code == 0
    assert_refused(run("eval", "--gt", VAL / "via_project.json", "--pred", inst, "--images", VAL / "images",
                       "--out", tmp_path / "out"), "inst", "no scores")

"""segcli eval by every route gives the same figures: with a model, from predict's files, from the
files an eval run keeps, and as a direct pycocotools call on those files (issue 14, items 3, 11, 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from segcli.cli import app
from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.eval.run import EvalOptions, run_eval
from segcli.engine.core.metrics import STAT_NAMES
from segcli.engine.predict.run import PredictOptions, predict_folder
from segcli.formats import geometry
from segcli.models.defaults import default_weights
from tests.helpers import direct_cocoeval


SMALL, IMGSZ = ((160, 120),), 120  # small images seen at their own size: every model run is quick


def _figures(report: dict) -> dict:
    return {kind: {**{name: report[kind][name] for name in STAT_NAMES}, **report[kind]["per_class"]}
            for kind in ("segm", "bbox")}




@pytest.fixture(scope="module")
def instance_runs(tmp_path_factory):
    """A COCO split scored with the shipped Mask R-CNN, and the same images through predict."""
    root = tmp_path_factory.mktemp("routes")
    generate_shapes_dataset(root / "gt", 3, seed=3, coco=True, sizes=SMALL)
    (root / "gt" / "via_project.json").unlink()  # the split holds one annotation file: coco.json
    weights = default_weights("instance")
    model = run_eval(EvalOptions(gt=root / "gt", weights=weights, conf=0.05, out=root / "eval", workers=0,
                                 imgsz=IMGSZ))
    predict_folder(root / "gt" / "images", PredictOptions(weights=weights, out=root / "predict", conf=0.05,
                                                          workers=0, formats={"coco"}, overlays=False, imgsz=IMGSZ))
    return root, model


def test_model_route_and_predict_files_give_identical_figures(instance_runs, tmp_path):
    root, model = instance_runs
    files = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=root / "predict" / "predictions.json",
                                 out=tmp_path / "e"))
    assert model["predictions"] == files["predictions"] > 0
    assert _figures(files) == _figures(model)
    # the test can fail: the detector's boxes are not the masks' boxes
    results = json.loads((root / "predict" / "predictions.json").read_text())
    mask_boxes = [geometry.rle_area_bbox(geometry.rle_from_json(r["segmentation"], 0, 0))[1] for r in results]
    assert any(not np.allclose(r["bbox"], box, atol=0.5) for r, box in zip(results, mask_boxes))


def test_eval_keeps_its_predictions_and_they_score_the_same(instance_runs, tmp_path):
    root, model = instance_runs
    kept = root / "eval" / "predictions.json"
    dataset = json.loads((root / "eval" / "dataset.json").read_text())
    assert {img["file_name"] for img in dataset["images"]} == {f"images/00000{k}.png" for k in range(3)}
    assert len(dataset["annotations"]) == model["predictions"] and model["files"]["predictions"] == str(kept)
    again = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=kept, out=tmp_path / "again"))
    assert _figures(again) == _figures(model)
    # ids are the ground truth's: pycocotools reads the kept file as it is and agrees
    results = json.loads(kept.read_text())
    for iou_type in ("segm", "bbox"):
        ours = [model[iou_type][name] for name in STAT_NAMES]
        assert np.allclose(ours, direct_cocoeval(root / "gt" / "coco.json", results, iou_type), atol=1e-12, rtol=0)


@pytest.fixture(scope="module")
def boxed_results(tmp_path_factory):
    """Results whose boxes are not their masks' boxes, and false alarms whose mask area is small
    (thin diagonals) but whose box area is medium: area buckets by box and by mask differ."""
    root = tmp_path_factory.mktemp("boxed")
    generate_shapes_dataset(root, 12, seed=11, coco=True)
    truth = json.loads((root / "coco.json").read_text())
    sizes = {img["id"]: (img["height"], img["width"]) for img in truth["images"]}
    rng = np.random.default_rng(1)
    results = []
    for annotation in truth["annotations"]:
        height, width = sizes[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        grow = float(rng.uniform(0, 6))
        results.append({"image_id": annotation["image_id"], "category_id": annotation["category_id"],
                        "segmentation": geometry.rle_to_json(geometry.polygons_to_rle(
                            annotation["segmentation"], height, width)),
                        "bbox": [x - grow, y - grow, w + 2 * grow, h + 2 * grow],
                        "score": round(float(rng.random()), 4)})
    for image_id, (height, width) in sizes.items():
        mask = np.zeros((height, width), dtype=bool)
        for k in range(60):
            mask[20 + k, 20 + k: 23 + k] = True  # ~180 px of mask in a 62 x 60 box (3720 px)
        results.append({"image_id": image_id, "category_id": 1 + image_id % 3, "score": 0.9,
                        "segmentation": geometry.rle_to_json(geometry.mask_to_rle(mask)),
                        "bbox": [20.0, 20.0, 62.0, 60.0]})
    (root / "pred.json").write_text(json.dumps(results))
    return root, results


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_figures_equal_pycocotools_on_results_with_boxes(boxed_results, tmp_path, backend):
    if backend == "faster":
        pytest.importorskip("faster_coco_eval")
    root, results = boxed_results
    report = run_eval(EvalOptions(gt=root / "coco.json", pred=root / "pred.json", out=tmp_path / "e", backend=backend))
    for iou_type in ("segm", "bbox"):
        ours = [report[iou_type][name] for name in STAT_NAMES]
        assert np.allclose(ours, direct_cocoeval(root / "coco.json", results, iou_type), atol=1e-9, rtol=0), iou_type


def test_mask_area_buckets_on_request(boxed_results, tmp_path):
    root, results = boxed_results
    report = run_eval(EvalOptions(gt=root / "coco.json", pred=root / "pred.json", out=tmp_path / "e",
                                  segm_area="mask"))
    without_boxes = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    direct = direct_cocoeval(root / "coco.json", without_boxes, "segm")
    assert np.allclose([report["segm"][name] for name in STAT_NAMES], direct, atol=1e-9, rtol=0)
    assert direct != direct_cocoeval(root / "coco.json", results, "segm")  # the two rules do differ here
    assert any("its mask's (--segm-area mask" in note for note in report["notes"])


# --- label-mask ground truth (item 11) and the label maps a semantic eval run keeps (item 14) ---


def _convert_to_masks(annotations, folder):
    result = CliRunner().invoke(app, ["convert", str(annotations), str(folder), "--to", "masks"])
    assert result.exit_code == 0, result.output
    return folder


def _semantic_figures(report: dict) -> dict:
    return {key: report[key] for key in ("mIoU", "pixel_accuracy", "mean_accuracy", "fwIoU", "per_class_iou",
                                         "per_image_mIoU", "confusion_matrix")}


@pytest.fixture(scope="module")
def semantic_run(tmp_path_factory):
    """A VIA split, its label masks, and the shipped FCN+PSPNet scored on the split."""
    root = tmp_path_factory.mktemp("semantic")
    generate_shapes_dataset(root / "data", 3, seed=4, sizes=SMALL)
    _convert_to_masks(root / "data" / "via_project.json", root / "masks")
    model = run_eval(EvalOptions(gt=root / "data", task="semantic", out=root / "eval", workers=0, imgsz=IMGSZ))
    return root, model


def test_semantic_eval_keeps_label_maps_that_score_the_same(semantic_run, tmp_path):
    root, model = semantic_run
    kept = root / "eval" / "masks"
    assert (kept / "classes.txt").read_text().split() == ["_background_", "circle", "square", "triangle"]
    assert len(list(kept.rglob("*.png"))) == 3
    again = run_eval(EvalOptions(gt=root / "data", pred=kept, out=tmp_path / "again"))
    assert _semantic_figures(again) == _semantic_figures(model)


def test_model_mode_takes_a_label_mask_folder_as_ground_truth(semantic_run, tmp_path):
    root, model = semantic_run
    report = run_eval(EvalOptions(gt=root / "masks", images=root / "data" / "images", task="semantic",
                                  out=tmp_path / "e", workers=0, imgsz=IMGSZ))
    assert _semantic_figures(report) == _semantic_figures(model)  # the same ground truth, as label PNGs
    assert any("label values 0 _background_, 1 circle, 2 square, 3 triangle (classes from" in note
               and "classes.txt" in note for note in report["notes"])


@pytest.fixture
def masks_without_classes(semantic_run, tmp_path):
    root, _ = semantic_run
    folder = tmp_path / "plain"
    for path in (root / "masks").rglob("*.png"):
        (folder / path.relative_to(root / "masks")).parent.mkdir(parents=True, exist_ok=True)
        (folder / path.relative_to(root / "masks")).write_bytes(path.read_bytes())
    return folder


def test_label_masks_without_classes_file_take_the_models_classes(semantic_run, masks_without_classes, tmp_path):
    root, model = semantic_run
    result = CliRunner().invoke(app, ["eval", "--gt", str(masks_without_classes), "--images",
                                      str(root / "data" / "images"), "--task", "semantic", "--out",
                                      str(tmp_path / "e"), "--workers", "0", "--imgsz", str(IMGSZ)],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "label values 0 _background_, 1 circle, 2 square, 3 triangle (classes from the model)" in result.output
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert saved["mIoU"] == pytest.approx(model["mIoU"], abs=1e-12)


def test_label_masks_without_classes_file_in_pred_mode_need_classes(semantic_run, masks_without_classes, tmp_path):
    root, model = semantic_run
    args = ["eval", "--gt", str(masks_without_classes), "--pred", str(root / "eval" / "masks")]
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "pass --classes" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "a").exists()
    report = run_eval(EvalOptions(gt=masks_without_classes, pred=root / "eval" / "masks", out=tmp_path / "b",
                                  classes=["circle", "square", "triangle"]))
    assert _semantic_figures(report) == _semantic_figures(model)
    assert any("(classes from --classes)" in note for note in report["notes"])
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c"), "--classes", "circle,,square"])
    assert bad.exit_code == 2 and "--classes" in bad.output


def test_instance_routes_take_a_label_mask_folder_as_ground_truth(instance_runs, tmp_path):
    root, model = instance_runs
    masks = _convert_to_masks(root / "gt" / "coco.json", tmp_path / "masks")
    files = run_eval(EvalOptions(gt=masks, pred=root / "eval" / "predictions.json", out=tmp_path / "a"))
    assert files["segm"]["AP"] > 0.05 and files["images"] == 3
    assert any("label values 0 _background_, 1 circle" in note for note in files["notes"])
    (masks / "classes.txt").unlink()
    refused = CliRunner().invoke(app, ["eval", "--gt", str(masks), "--out", str(tmp_path / "b")])
    assert refused.exit_code == 2 and "--images" in refused.output
    with_model = run_eval(EvalOptions(gt=masks, images=root / "gt" / "images", out=tmp_path / "c", workers=0,
                                      imgsz=IMGSZ))
    assert with_model["predictions"] == model["predictions"] and with_model["segm"]["AP"] > 0.05
    assert any("(classes from the model)" in note for note in with_model["notes"])
    assert (tmp_path / "c" / "predictions.json").is_file()


def test_a_second_semantic_run_into_the_same_folder_leaves_no_stale_label_map(semantic_run, tmp_path):
    root, _ = semantic_run
    out = tmp_path / "e"
    (out / "masks" / "images").mkdir(parents=True)
    stale = out / "masks" / "images" / "stale.png"
    stale.write_bytes((root / "masks" / "images" / "000000.png").read_bytes())  # a label map of an earlier run
    (out / "masks" / "classes.txt").write_text("_background_\nold\n")
    run_eval(EvalOptions(gt=root / "data", task="semantic", out=out, workers=0, imgsz=IMGSZ))
    assert not stale.exists() and (out / "masks" / "classes.txt").read_text().split()[1] == "circle"
    assert len(list((out / "masks").rglob("*.png"))) == 3
    (out / "masks" / "notes.txt").write_text("mine")  # not something eval writes: never deleted
    refused = CliRunner().invoke(app, ["eval", str(root / "data"), "--task", "semantic", "--out", str(out),
                                       "--imgsz", str(IMGSZ)])
    assert refused.exit_code == 2 and "masks" in refused.output and (out / "masks" / "notes.txt").exists()


def test_out_whose_masks_folder_is_an_input_is_refused_before_any_work(semantic_run, tmp_path):
    root, _ = semantic_run
    out = tmp_path / "run"
    (out / "masks").mkdir(parents=True)
    for path in (root / "masks").rglob("*"):
        target = out / "masks" / path.relative_to(root / "masks")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            target.write_bytes(path.read_bytes())
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    refused = CliRunner().invoke(app, ["eval", "--gt", str(out / "masks"), "--images", str(root / "data" / "images"),
                                       "--task", "semantic", "--out", str(out)])
    assert refused.exit_code == 2 and "input" in refused.output, refused.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before


def test_classes_given_but_not_needed_is_a_warning(instance_runs, tmp_path):
    root, _ = instance_runs
    report = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=root / "eval" / "predictions.json",
                                  out=tmp_path / "e", classes=["circle"]))
    assert any("--classes" in warning and "not used" in warning for warning in report["warnings"])

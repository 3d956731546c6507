"""segcli eval: figures equal to pycocotools and numpy, known answers, joins by name, bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from segcli.cli import app
from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.eval.run import EvalOptions, instance_report, run_eval
from segcli.engine.core.metrics import STAT_NAMES
from segcli.formats import geometry
from tests.helpers import direct_cocoeval


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A generated COCO ground truth and imperfect predictions of it (moved, missed, mislabelled)."""
    root = tmp_path_factory.mktemp("eval")
    generate_shapes_dataset(root / "gt", 16, seed=5, coco=True)
    truth = json.loads((root / "gt" / "coco.json").read_text())
    rng = np.random.default_rng(0)
    results = []
    for annotation in truth["annotations"]:
        image = next(i for i in truth["images"] if i["id"] == annotation["image_id"])
        if rng.random() < 0.15:
            continue  # missed
        mask = geometry.rle_to_mask(geometry.polygons_to_rle(annotation["segmentation"], image["height"],
                                                             image["width"]))
        shift = rng.integers(-4, 5, size=2)
        mask = np.roll(mask, tuple(shift), axis=(0, 1))
        category = annotation["category_id"] if rng.random() > 0.1 else 1 + annotation["category_id"] % 3
        results.append({"image_id": annotation["image_id"], "category_id": int(category),
                        "segmentation": geometry.rle_to_json(geometry.mask_to_rle(mask)),
                        "score": round(float(rng.random()), 4)})
    for image in truth["images"][:5]:  # false alarms
        results.append({"image_id": image["id"], "category_id": 2, "score": 0.3,
                        "segmentation": geometry.rle_to_json(geometry.polygons_to_rle(
                            [[5, 5, 40, 5, 40, 40, 5, 40]], image["height"], image["width"]))})
    (root / "pred.json").write_text(json.dumps(results))
    return root, truth, results




def test_figures_equal_a_direct_pycocotools_call(shapes, tmp_path):
    root, _, results = shapes
    report = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=root / "pred.json", out=tmp_path / "e"))
    for iou_type in ("segm", "bbox"):
        direct = direct_cocoeval(root / "gt" / "coco.json", results, iou_type)
        ours = [report[iou_type][name] for name in STAT_NAMES]
        assert np.allclose(ours, direct, atol=1e-9, rtol=0), (iou_type, ours, direct)
    assert 0.2 < report["segm"]["AP"] < 0.95  # imperfect, not degenerate
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert saved["segm"]["AP"] == report["segm"]["AP"] and set(saved["segm"]["per_class"]) == {
        "circle", "square", "triangle"}
    for name in ("pr_curves_segm.png", "pr_curves_bbox.png"):
        assert cv2.imread(str(tmp_path / "e" / name)).shape[2] == 3
    assert report["worst_images"] and report["worst_images"][0]["f1"] < 1


def test_faster_backend_gives_the_same_figures(shapes, tmp_path):
    pytest.importorskip("faster_coco_eval")
    root, _, _ = shapes
    slow = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=root / "pred.json", out=tmp_path / "a"))
    fast = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=root / "pred.json", out=tmp_path / "b",
                                backend="faster"))
    for iou_type in ("segm", "bbox"):
        for name in ("AP", "AP50", "AP75", "AR100"):
            assert fast[iou_type][name] == pytest.approx(slow[iou_type][name], abs=1e-6), (iou_type, name)


def test_ground_truth_given_back_scores_one(shapes, tmp_path):
    root, truth, _ = shapes
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                "bbox": a["bbox"], "score": 1.0} for a in truth["annotations"]]
    (tmp_path / "same.json").write_text(json.dumps(results))
    report = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=tmp_path / "same.json", out=tmp_path / "e"))
    assert report["segm"]["AP"] == pytest.approx(1.0) and report["bbox"]["AP"] == pytest.approx(1.0)
    assert report["worst_images"] == [] and not report["warnings"]


def _square_rle(x, y, size, h=100, w=100):
    mask = np.zeros((h, w), bool)
    mask[y:y + size, x:x + size] = True
    return geometry.rle_to_json(geometry.mask_to_rle(mask))


def _truth(annotations, categories=("a", "b")):
    images = [{"id": 1, "file_name": "x.png", "width": 100, "height": 100}]
    out = []
    for k, (category, rle) in enumerate(annotations, start=1):
        mask = geometry.rle_to_mask(geometry.rle_from_json(rle, 100, 100))
        area, bbox = geometry.rle_area_bbox(geometry.mask_to_rle(mask))
        out.append({"id": k, "image_id": 1, "category_id": category, "segmentation": rle, "area": float(area),
                    "bbox": [float(v) for v in bbox], "iscrowd": 0})
    return {"images": images, "annotations": out,
            "categories": [{"id": i, "name": n} for i, n in enumerate(categories, start=1)]}


def test_known_answers_missed_object_wrong_class_and_donut():
    one, two = _square_rle(10, 10, 20), _square_rle(60, 60, 20)
    # one of two objects found: precision 1 up to recall 0.5 -> 51 of 101 recall points
    report = instance_report(_truth([(1, one), (1, two)]), [{"image_id": 1, "category_id": 1, "segmentation": one,
                                                            "score": 0.9}])
    assert report["segm"]["AP"] == pytest.approx(51 / 101)
    assert report["worst_images"][0] == {"image_id": 1, "image": "x.png", "tp": 1, "fp": 0, "fn": 1, "f1": 0.6667}
    # the right mask with the wrong class: class a has AP 0, class b has no ground truth (n/a)
    report = instance_report(_truth([(1, one)]), [{"image_id": 1, "category_id": 2, "segmentation": one,
                                                   "score": 0.9}])
    assert report["segm"]["AP"] == 0.0 and report["segm"]["per_class"]["a"] == 0.0
    assert np.isnan(report["segm"]["per_class"]["b"]) and any("n/a" in n for n in report["notes"])
    # a donut predicted as a filled disk: IoU = ring / disk, so AP counts the thresholds below it
    yy, xx = np.mgrid[:100, :100]
    radius = np.hypot(yy - 50, xx - 50)
    disk, ring = radius <= 30, (radius <= 30) & (radius > 14)
    iou = ring.sum() / disk.sum()
    assert 0.75 < iou < 0.8
    rle = {k: geometry.rle_to_json(geometry.mask_to_rle(m)) for k, m in (("disk", disk), ("ring", ring))}
    report = instance_report(_truth([(1, rle["ring"])]), [{"image_id": 1, "category_id": 1,
                                                            "segmentation": rle["disk"], "score": 0.9}])
    passed = sum(1 for t in np.linspace(0.5, 0.95, 10) if iou >= t)
    assert report["segm"]["AP"] == pytest.approx(passed / 10)


def test_dense_images_also_report_ap_with_raised_max_dets():
    squares = [(1, _square_rle(x, y, 4)) for x in range(0, 100, 8) for y in range(0, 100, 8)]  # 169 objects
    truth = _truth(squares)
    results = [{"image_id": 1, "category_id": 1, "segmentation": rle, "score": 0.5 + k / 1000}
               for k, (_, rle) in enumerate(squares)]
    report = instance_report(truth, results)
    assert report["dense"]["max_dets"] == 169
    assert report["segm"]["AP"] < 0.7 and report["dense"]["segm"]["AP"] == pytest.approx(1.0)
    assert any("maxDets 169" in note for note in report["notes"])


def test_categories_and_images_are_joined_by_name_with_warnings(shapes, tmp_path):
    root, truth, results = shapes
    remap = {1: 30, 2: 10, 3: 20}
    ids = {image["id"]: image["id"] + 100 for image in truth["images"]}
    moved = [{**r, "image_id": ids[r["image_id"]], "category_id": remap[r["category_id"]]} for r in results]
    moved.append({"image_id": 999, "category_id": 10, "bbox": [0, 0, 5, 5], "score": 0.5,
                  "segmentation": _square_rle(0, 0, 5, 240, 320)})
    moved.append({"image_id": 101, "category_id": 40, "score": 0.5, "segmentation": _square_rle(0, 0, 5, 240, 320)})
    folder = tmp_path / "predict"
    folder.mkdir()
    (folder / "predictions.json").write_text(json.dumps(moved))
    (folder / "dataset.json").write_text(json.dumps({
        "images": [{**image, "id": ids[image["id"]]} for image in truth["images"]], "annotations": [],
        "categories": [{"id": remap[c["id"]], "name": c["name"].upper()} for c in truth["categories"]]
        + [{"id": 40, "name": "hexagon"}]}))
    joined = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=folder / "predictions.json", out=tmp_path / "a"))
    plain = run_eval(EvalOptions(gt=root / "gt" / "coco.json", pred=root / "pred.json", out=tmp_path / "b"))
    assert joined["segm"]["AP"] == pytest.approx(plain["segm"]["AP"], abs=1e-12)
    text = " | ".join(joined["warnings"])
    assert "matched by name" in text and "'CIRCLE' 30->1" in text
    assert "image id(s) not in the ground truth" in text and "999" in text
    assert "absent from the ground truth" in text and "hexagon" in text


def test_bad_predictions_give_warnings_or_one_line_errors(shapes, tmp_path):
    root, truth, _ = shapes
    gt = root / "gt" / "coco.json"
    runner = CliRunner()
    (tmp_path / "empty.json").write_text("[]")
    result = runner.invoke(app, ["eval", "--gt", str(gt), "--pred", str(tmp_path / "empty.json"),
                                 "--out", str(tmp_path / "e1")])
    assert result.exit_code == 0 and "empty" in result.output and "every AP is 0" in result.output
    (tmp_path / "unknown.json").write_text(json.dumps([{"image_id": 12345, "category_id": 1, "score": 0.5,
                                                         "bbox": [0, 0, 4, 4]}]))
    result = runner.invoke(app, ["eval", "--gt", str(gt), "--pred", str(tmp_path / "unknown.json"),
                                 "--out", str(tmp_path / "e2")])
    assert result.exit_code == 0 and "12345" in result.output and "none of the predictions matched" in result.output
    image = truth["images"][0]
    (tmp_path / "size.json").write_text(json.dumps([{"image_id": image["id"], "category_id": 1, "score": 0.5,
                                                      "segmentation": _square_rle(0, 0, 5, 50, 50)}]))
    result = runner.invoke(app, ["eval", "--gt", str(gt), "--pred", str(tmp_path / "size.json"),
                                 "--out", str(tmp_path / "e3")])
    assert result.exit_code == 2 and "does not match image" in result.output and "size.json" in result.output
    assert not (tmp_path / "e3" / "metrics.json").exists()
    for text, message in (('{"a": 1}', "not COCO predictions"), ('[{"image_id": "x"}]', "image_id must be"),
                          ('[{"image_id": 1, "category_id": 1, "score": 0.5}]', "needs a segmentation or a bbox"),
                          ("[", "invalid JSON")):
        (tmp_path / "bad.json").write_text(text)
        result = runner.invoke(app, ["eval", "--gt", str(gt), "--pred", str(tmp_path / "bad.json")])
        assert result.exit_code == 2 and message in result.output, (text, result.output)
        assert "Traceback" not in result.output


def test_via_ground_truth_without_its_images_is_a_clear_error(tmp_path):
    generate_shapes_dataset(tmp_path / "d", 2, seed=3)
    project = tmp_path / "d" / "via_project.json"
    (tmp_path / "alone").mkdir()
    lonely = tmp_path / "alone" / "via.json"  # no images anywhere below its folder
    lonely.write_text(project.read_text())
    (tmp_path / "p.json").write_text("[]")
    result = CliRunner().invoke(app, ["eval", "--gt", str(lonely), "--pred", str(tmp_path / "p.json"),
                                      "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "sizes" in result.output and "--images" in result.output
    result = CliRunner().invoke(app, ["eval", "--gt", str(lonely), "--pred", str(tmp_path / "p.json"),
                                      "--images", str(tmp_path / "d" / "images"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output


# --- semantic ---------------------------------------------------------------------------------


def _write_maps(folder, maps, names):
    folder.mkdir(parents=True)
    for name, label_map in maps.items():
        cv2.imwrite(str(folder / f"{name}.png"), label_map.astype(np.uint8))
    (folder / "classes.txt").write_text("\n".join(names) + "\n")


def test_semantic_scores_equal_numpy_and_classes_match_by_name(tmp_path):
    rng = np.random.default_rng(1)
    truth = {f"im{k}": rng.integers(0, 4, size=(30, 40)) for k in range(5)}
    truth["im0"][:3] = 255  # ignored pixels
    truth["im1"][truth["im1"] == 3] = 1  # an image without class 3
    predicted = {k: np.where(rng.random(v.shape) < 0.7, v, rng.integers(0, 4, size=v.shape)) for k, v in truth.items()}
    predicted = {k: np.where(v == 255, 0, v) for k, v in predicted.items()}
    _write_maps(tmp_path / "gt", truth, ["_background_", "cat", "dog", "bird"])
    # the predictions list their classes in another order: values are re-mapped by name
    order = {0: 0, 1: 3, 2: 1, 3: 2}
    _write_maps(tmp_path / "pred", {k: np.vectorize(order.get)(v) for k, v in predicted.items()},
                ["_background_", "dog", "bird", "cat"])
    report = run_eval(EvalOptions(gt=tmp_path / "gt", pred=tmp_path / "pred", out=tmp_path / "e"))
    # independent numpy computation
    t = np.concatenate([v.ravel() for v in truth.values()])
    p = np.concatenate([v.ravel() for v in predicted.values()])
    keep = t != 255
    t, p = t[keep], p[keep]
    ious = [((t == c) & (p == c)).sum() / ((t == c) | (p == c)).sum() for c in range(4)]
    assert report["mIoU"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert report["pixel_accuracy"] == pytest.approx((t == p).mean(), abs=1e-12)
    assert report["mean_accuracy"] == pytest.approx(np.mean([(p[t == c] == c).mean() for c in range(4)]), abs=1e-12)
    per_image = []
    for key in truth:
        tt, pp = truth[key].ravel(), predicted[key].ravel()
        tt, pp = tt[tt != 255], pp[truth[key].ravel() != 255]
        present = [c for c in range(4) if (tt == c).any()]  # the seed's definition: ground-truth classes
        per_image.append(np.mean([((tt == c) & (pp == c)).sum() / ((tt == c) | (pp == c)).sum() for c in present]))
    assert report["per_image_mIoU"] == pytest.approx(np.mean(per_image), abs=1e-12)
    assert any("matched by name" in w for w in report["warnings"])
    assert cv2.imread(str(tmp_path / "e" / "confusion_matrix.png")) is not None
    # the ground truth as prediction scores 1.0
    same = run_eval(EvalOptions(gt=tmp_path / "gt", pred=tmp_path / "gt", out=tmp_path / "f"))
    assert same["mIoU"] == 1.0 and same["pixel_accuracy"] == 1.0 and same["per_image_mIoU"] == 1.0


def test_semantic_binary_0_255_masks_and_absent_classes(tmp_path):
    truth = {"a": np.zeros((20, 20), int)}
    truth["a"][5:15, 5:15] = 255
    _write_maps(tmp_path / "gt", truth, ["_background_", "lesion"])
    _write_maps(tmp_path / "pred", truth, ["_background_", "lesion"])
    report = run_eval(EvalOptions(gt=tmp_path / "gt", pred=tmp_path / "pred", out=tmp_path / "e"))
    assert report["mIoU"] == 1.0 and report["per_class_iou"]["lesion"] == 1.0  # not IoU 0 / NaN
    assert any("255 read as the class" in w for w in report["warnings"])
    # a class with no ground truth is n/a and left out of the mean
    _write_maps(tmp_path / "gt3", {"a": np.eye(20, dtype=int)}, ["_background_", "x", "y"])
    _write_maps(tmp_path / "pred3", {"a": np.eye(20, dtype=int)}, ["_background_", "x", "y"])
    report = run_eval(EvalOptions(gt=tmp_path / "gt3", pred=tmp_path / "pred3", out=tmp_path / "g"))
    assert report["mIoU"] == 1.0 and np.isnan(report["per_class_iou"]["y"])
    saved = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert saved["per_class_iou"]["y"] is None
    # mismatched sizes: one-line error naming the predicted file
    _write_maps(tmp_path / "small", {"a": np.zeros((10, 10), int)}, ["_background_", "lesion"])
    result = CliRunner().invoke(app, ["eval", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "small"),
                                      "--out", str(tmp_path / "h")])
    assert result.exit_code == 2 and "a.png" in result.output and "10x10" in result.output


def test_matching_shared_among_processes_gives_identical_figures():
    rng = np.random.default_rng(3)
    images, annotations, results = [], [], []
    for image_id in range(1, 421):  # above the size where the matching is shared
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 64, "height": 64})
        for _ in range(3):
            x, y, size = (int(v) for v in rng.integers(0, 40, size=3))
            size = 4 + size % 20
            box = [float(x), float(y), float(size), float(size)]
            category = int(rng.integers(1, 3))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": box, "area": float(size * size), "iscrowd": 0,
                                "segmentation": [[x, y, x + size, y, x + size, y + size, x, y + size]]})
            dx = int(rng.integers(-3, 4))
            results.append({"image_id": image_id, "category_id": category, "score": float(rng.random()),
                            "bbox": [x + dx, y, size, size],
                            "segmentation": _square_rle(max(0, x + dx), y, size, 64, 64)})
    truth = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    one = instance_report(truth, results, processes=1)
    two = instance_report(truth, results, processes=2)
    for kind in ("segm", "bbox"):
        assert one[kind] == two[kind]
    assert one["worst_images"] == two["worst_images"]
    assert 0.1 < one["segm"]["AP"] < 0.9

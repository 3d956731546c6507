"""segcli predict folder: awkward images, every output valid and consistent, bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

from segcli.cli import app
from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.predict.run import PredictOptions, predict_folder
from segcli.engine.train.trainer import TrainConfig, train
from segcli.formats import geometry
from segcli.formats.io import read_annotations
from segcli.formats.masks import read_label_map
from segcli.ledger import Ledger
from tests.helpers import MASK_RCNN_RECIPE


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Mask R-CNN trained for a few steps in the test itself (no shipped weights yet)."""
    root = tmp_path_factory.mktemp("predict_model")
    for split in ("train", "val"):
        generate_shapes_dataset(root / "data" / split, 4, seed=7, sizes=((160, 120),))
    # on one thread: CPU kernels (and so this short run's model) differ with the thread count, and
    # on two the 8 epochs ended with every score under the tests' --conf 0.3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(data=str(root / "data"), epochs=8, batch=2, imgsz=120, workers=0, out=str(root),
                          name="run", warmup_iters=4, **MASK_RCNN_RECIPE))
    finally:
        torch.set_num_threads(threads)
    return root / "run" / "weights" / "best.pt", root / "data" / "train" / "images"


@pytest.fixture
def awkward_folder(tmp_path, trained):
    """Generated images as RGBA PNG, EXIF-rotated JPEG, grayscale, 16-bit, nested, plus a corrupt file."""
    _, images = trained
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(images.iterdir())]
    Image.fromarray(rgb[0]).convert("RGBA").save(folder / "rgba.png")
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(rgb[1], k=1)))  # stored rotated, EXIF turns it back
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "exif.jpg", exif=exif, quality=95)
    Image.fromarray(rgb[2]).convert("L").save(folder / "grey.png")
    cv2.imwrite(str(folder / "nested" / "deep16.png"), (cv2.cvtColor(rgb[3], cv2.COLOR_RGB2BGR).astype(np.uint16) * 257))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def test_every_output_is_valid(awkward_folder, trained, tmp_path):
    weights, _ = trained
    out = tmp_path / "out"
    summary = predict_folder(awkward_folder, PredictOptions(weights=weights, out=out, conf=0.3, recursive=True,
                                                            workers=0))
    assert summary["done"] == 4 and [s["image"] for s in summary["skipped"]] == ["corrupt.jpg"]
    dataset = json.loads((out / "dataset.json").read_text())
    sizes = {image["file_name"]: (image["width"], image["height"]) for image in dataset["images"]}
    assert sizes == {"exif.jpg": (160, 120), "grey.png": (160, 120), "nested/deep16.png": (160, 120),
                     "rgba.png": (160, 120)}
    assert sum(summary["instances_per_class"].values()) == len(dataset["annotations"]) > 0
    gt = COCO(str(out / "dataset.json"))
    results = json.loads((out / "predictions.json").read_text())
    assert len(gt.loadRes(results).getAnnIds()) == len(results) == len(dataset["annotations"])
    for name, (w, h) in sizes.items():
        overlay = cv2.imread(str((out / "overlays" / name).with_suffix(".jpg")))
        assert overlay.shape == (h, w, 3)
    # the VIA project reads back (segcli convert) as the same objects, least confident image first
    via = json.loads((out / "via_project.json").read_text())
    firsts = [min([r["region_attributes"]["score"] for r in e["regions"]], default=0)
              for e in via["_via_img_metadata"].values()]
    assert firsts == sorted(firsts)
    back = read_annotations(out / "via_project.json", Ledger())
    for image in back.images:
        predicted = [a for a in dataset["annotations"]
                     if a["image_id"] == next(i["id"] for i in dataset["images"] if i["file_name"] == image.file_name)]
        names = {c["id"]: c["name"] for c in dataset["categories"]}
        for category in set(names.values()):
            want = np.zeros((120, 160), bool)
            for a in predicted:
                if names[a["category_id"]] == category:
                    want |= geometry.rle_to_mask(geometry.rle_from_json(a["segmentation"], 120, 160))
            got = np.zeros((120, 160), bool)
            for a in image.annotations:
                if a.category == category:
                    points = geometry.via_shape_to_points(a.via_shape)
                    got |= geometry.rle_to_mask(geometry.polygons_to_rle([geometry.points_to_flat(points)], 120, 160))
            if want.any() or got.any():
                assert (want & got).sum() / (want | got).sum() > 0.9
            assert all(a.attributes["needs_review"] in ("yes", "no") for a in image.annotations)


def test_predict_cli_errors(tmp_path, trained):
    weights, images = trained
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "folder", str(tmp_path / "none"), "--weights", str(weights)])
    assert result.exit_code == 2 and "image folder not found" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["predict", "folder", str(tmp_path / "empty"), "--weights", str(weights)])
    assert result.exit_code == 2 and "no images found" in result.output
    result = runner.invoke(app, ["predict", "folder", str(images), "--weights", str(weights), "--classes", "hexagon",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "hexagon" in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    result = runner.invoke(app, ["predict", "folder", str(images), "--weights", str(weights), "--out", str(tmp_path / "full")])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (tmp_path / "full" / "x").read_text() == "keep"


def test_resume_completes_an_interrupted_run(awkward_folder, trained, tmp_path):
    weights, _ = trained
    out = tmp_path / "out"
    options = PredictOptions(weights=weights, out=out, conf=0.3, recursive=True, workers=0, batch=1)
    seen = []

    def interrupt_after_two(kind, **data):
        if kind == "progress":
            seen.append(data["done"])
            if data["done"] == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_folder(awkward_folder, options, interrupt_after_two)
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    with open(out / "results.jsonl", "a") as fh:
        fh.write('{"file_name": "torn by kill -9')  # a half-written last line is ignored
    options.resume = True
    summary = predict_folder(awkward_folder, options)
    # sorted: corrupt.jpg (skipped) and exif.jpg were done before the interruption
    assert summary["predicted_now"] == 3 and summary["done"] == 4 and len(summary["skipped"]) == 1
    fresh = predict_folder(awkward_folder, PredictOptions(weights=weights, out=tmp_path / "fresh", conf=0.3,
                                                          recursive=True, workers=0, batch=1))
    resumed = json.loads((out / "dataset.json").read_text())
    full = json.loads((tmp_path / "fresh" / "dataset.json").read_text())
    assert resumed["images"] == full["images"]
    assert [(a["image_id"], a["category_id"], a["segmentation"]) for a in resumed["annotations"]] == \
        [(a["image_id"], a["category_id"], a["segmentation"]) for a in full["annotations"]]
    assert fresh["done"] == 4


def test_semantic_model_writes_label_maps_and_per_class_masks(tmp_path):
    data = tmp_path / "data"
    for split in ("train", "val"):
        generate_shapes_dataset(data / split, 4, seed=7, sizes=((160, 120),))
    train(TrainConfig(data=str(data), task="semantic", model="pspnet_mobilenet_v3_large", epochs=2, batch=2,
                      imgsz=96, workers=0, out=str(tmp_path), name="sem"))
    out = tmp_path / "out"
    summary = predict_folder(data / "val" / "images", PredictOptions(weights=tmp_path / "sem" / "weights" / "best.pt",
                                                                     out=out, workers=0))
    assert summary["task"] == "semantic" and summary["done"] == 4
    assert (out / "masks" / "classes.txt").read_text().split() == ["_background_", "circle", "square", "triangle"]
    dataset = json.loads((out / "dataset.json").read_text())
    for image in dataset["images"]:
        label_map = read_label_map((out / "masks" / image["file_name"]).with_suffix(".png"))  # palette: indices
        assert label_map.shape == (120, 160) and label_map.max() <= 3
        overlay = cv2.imread(str((out / "overlays" / image["file_name"]).with_suffix(".jpg")))
        assert overlay.shape == (120, 160, 3)
        per_class = [a for a in dataset["annotations"] if a["image_id"] == image["id"]]
        assert sorted(a["category_id"] for a in per_class) == sorted(int(v) for v in np.unique(label_map) if v)
        for annotation in per_class:  # one RLE per class present, equal to the label map's pixels
            mask = geometry.rle_to_mask(geometry.rle_from_json(annotation["segmentation"], 120, 160))
            assert (mask == (label_map == annotation["category_id"])).all()
    results = json.loads((out / "predictions.json").read_text())  # COCO stuff results: no score
    assert [(r["image_id"], r["category_id"], r["segmentation"]) for r in results] == \
        [(a["image_id"], a["category_id"], a["segmentation"]) for a in dataset["annotations"]]


def test_torchrun_shards_images_and_merges_one_set_of_files(awkward_folder, trained, tmp_path):
    """Two processes each take every other image; rank 0 merges: the files equal a one-process run."""
    import os
    import subprocess
    import sys

    weights, _ = trained
    common = ["predict", "folder", str(awkward_folder), "--weights", str(weights), "--conf", "0.3", "--recursive",
              "--workers", "0", "--batch", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "segcli", *common, "--out", str(tmp_path / "ddp")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    subprocess.run([sys.executable, "-m", "segcli", *common, "--out", str(tmp_path / "one")], check=True, env=env,
                   capture_output=True, timeout=600)
    assert sorted(p.name for p in (tmp_path / "ddp").glob("results*.jsonl")) == ["results.jsonl"]
    for name in ("dataset.json", "predictions.json", "via_project.json"):
        ddp, one = (json.loads((tmp_path / run / name).read_text()) for run in ("ddp", "one"))
        assert ddp == one, name
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["done"] == 4 and summary["predicted_now"] == 4
    assert sorted(p.name for p in (tmp_path / "ddp" / "overlays").rglob("*.jpg")) == \
        sorted(p.name for p in (tmp_path / "one" / "overlays").rglob("*.jpg"))


def test_local_processes_share_the_images_and_give_the_same_files(trained, tmp_path):
    """--procs 2: a forked one-thread process takes every other image; the merged files match a
    one-process run (masks equal but for rare pixels where one- and two-thread sums round apart)."""
    weights, _ = trained
    generate_shapes_dataset(tmp_path / "many", 32, seed=9, sizes=((160, 120),))
    runs = {}
    for procs in (1, 2):
        summary = predict_folder(tmp_path / "many" / "images", PredictOptions(
            weights=weights, out=tmp_path / f"p{procs}", conf=0.3, workers=0, procs=procs))
        assert summary["processes"] == procs and summary["done"] == 32
        assert sorted(p.name for p in (tmp_path / f"p{procs}").glob("results*.jsonl")) == ["results.jsonl"]
        runs[procs] = json.loads((tmp_path / f"p{procs}" / "dataset.json").read_text())
    assert runs[1]["images"] == runs[2]["images"]
    one, two = runs[1]["annotations"], runs[2]["annotations"]
    assert [(a["image_id"], a["category_id"]) for a in one] == [(a["image_id"], a["category_id"]) for a in two]
    for a, b in zip(one, two):
        ma = geometry.rle_to_mask(geometry.rle_from_json(a["segmentation"], 120, 160))
        mb = geometry.rle_to_mask(geometry.rle_from_json(b["segmentation"], 120, 160))
        assert (ma != mb).sum() <= max(3, 0.01 * ma.sum())
    assert len(list((tmp_path / "p2" / "overlays").iterdir())) == 32


def test_banded_label_maps_and_overlays_equal_the_whole_image_computation():
    """The row-band computations that keep a 10000x10000 image within memory give what the
    whole-image ones give: the label map of F.interpolate + argmax (up to a float-rounding pixel),
    and the overlay blend (up to one grey level of rounding)."""
    import torch.nn.functional as F

    from segcli.engine.core.overlay import class_colours, draw_instances, draw_semantic
    from segcli.engine.core.results import semantic_prediction

    generator = torch.Generator().manual_seed(0)
    differing = total = 0
    for h, w, height, width in ((60, 80, 700, 1000), (240, 320, 241, 333), (50, 40, 30, 20), (24, 32, 1100, 90)):
        logits = torch.randn(1, 4, h, w, generator=generator)
        expected = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False).argmax(1)[0]
        got = semantic_prediction(logits, height, width, np.uint8, band_rows=97)
        assert got.shape == (height, width) and got.dtype == np.uint8
        differing += int((got != expected.numpy()).sum())
        total += got.size
    assert differing <= 3, (differing, total)

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (1100, 700, 3), dtype=np.uint8)
    label_map = np.zeros((1100, 700), np.uint8)
    label_map[100:900, 50:600] = 1
    label_map[300:1000, 200:650] = 2
    picture = draw_semantic(rgb, label_map, ["a", "b"], alpha=0.5)
    lut = np.array(class_colours(2), dtype=np.float32)
    painted = label_map > 0
    reference = rgb.astype(np.float32)
    reference[painted] = reference[painted] * 0.5 + lut[label_map[painted]] * 0.5
    region = (slice(200, 1100), slice(0, 700))  # away from the legend drawn at the top left
    assert np.abs(picture[region].astype(int) - reference[region]).max() <= 1
    assert (picture[200:][~painted[200:]] == rgb[200:][~painted[200:]]).all()

    mask = np.zeros((1100, 700), bool)
    mask[400:1050, 100:500] = True
    rle = geometry.mask_to_rle(mask)
    boxes = np.array([[100, 400, 500, 1050]], dtype=np.float32)
    picture = draw_instances(rgb, [rle], boxes, np.array([1]), np.array([0.9]), ["a"], alpha=0.45)
    inner = (slice(420, 1030), slice(120, 480))  # inside the mask, away from outline, box and label
    expected_inner = rgb[inner].astype(np.float32) * 0.55 + lut[1] * 0.45
    assert np.abs(picture[inner].astype(int) - expected_inner).max() <= 1
    assert (picture[:380] == rgb[:380]).all()

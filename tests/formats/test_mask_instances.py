"""Label-mask outputs and what they keep (issue 14, item 2).

Class-value label maps cannot hold two touching objects of one class apart, nor an object
another one covers: the ledger must list each such object, and its prediction must be what a
read-back yields. ``--to masks --instances`` writes instance-id maps that give every instance
back. Class maps are palette PNGs, read as class indices by segcli and by PIL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from segcli.engine.convert import convert
from segcli.formats import geometry
from segcli.formats.io import read_annotations
from segcli.formats.masks import read_label_map
from segcli.ledger import Ledger
from tests.helpers import assert_refused, region, run, via2_project, write_image, write_json

WIDTH, HEIGHT = 100, 80
CLASSES = {"type": "dropdown", "description": "", "options": {"a": "a", "b": "b"}, "default_options": {}}


def rect(x: int, y: int, w: int, h: int, name: str) -> dict:
    return region({"name": "rect", "x": x, "y": y, "width": w, "height": h}, kind=name)


SCENE = [
    rect(5, 5, 20, 20, "a"),     # region 0 and 1: side by side, one class: merged
    rect(25, 5, 20, 20, "a"),
    rect(60, 5, 10, 10, "b"),    # region 2 and 3: the same square twice: 2 is wholly hidden by 3
    rect(60, 5, 10, 10, "a"),
    rect(60, 40, 30, 30, "b"),   # region 4, with region 5 on it (another class): partly hidden
    rect(70, 50, 10, 10, "a"),
    rect(5, 50, 15, 15, "a"),    # region 6: alone, read back exactly
]


def project(tmp_path: Path, regions: list[dict], name: str = "p.json") -> Path:
    write_image(tmp_path / "images" / "a.png", WIDTH, HEIGHT)
    data = via2_project({"a.png": regions}, attributes={"region": {"kind": CLASSES}, "file": {}})
    return write_json(tmp_path / name, data)


def entries_by_region(ledger: Ledger) -> dict[str, list]:
    found: dict[str, list] = {}
    for entry in ledger.entries:
        if entry.item.startswith("region"):
            found.setdefault(entry.item, []).append(entry)
    return found


def read_back(folder: Path, images: Path) -> list:
    ledger = Ledger()
    dataset = read_annotations(folder, ledger, images_dir=images)
    ledger.raise_errors()
    return dataset.images[0].annotations


def source_masks(tmp_path: Path, regions: list[dict]) -> list[np.ndarray]:
    """Each region rasterised alone (as COCO would hold it)."""
    return [geometry.rle_to_mask(geometry.polygons_to_rle(
        [[r["shape_attributes"]["x"], r["shape_attributes"]["y"],
          r["shape_attributes"]["x"] + r["shape_attributes"]["width"], r["shape_attributes"]["y"],
          r["shape_attributes"]["x"] + r["shape_attributes"]["width"],
          r["shape_attributes"]["y"] + r["shape_attributes"]["height"],
          r["shape_attributes"]["x"], r["shape_attributes"]["y"] + r["shape_attributes"]["height"]]],
        HEIGHT, WIDTH)).astype(bool) for r in regions]


def test_class_maps_list_every_merged_or_hidden_object_as_read_back_finds(tmp_path):
    src = project(tmp_path, SCENE)
    result = convert(src, tmp_path / "masks", to="masks")
    listed = entries_by_region(result.ledger)
    assert {item: [e.reason.split(":")[0] for e in es] for item, es in listed.items()} == {
        "region 0": ["merged"], "region 1": ["merged"], "region 2": ["hidden"], "region 4": ["partly hidden"]}
    assert [e.action for e in listed["region 2"]] == ["dropped"]
    assert "region 1" in listed["region 0"][0].reason and "region 3" in listed["region 2"][0].reason
    back = read_back(tmp_path / "masks", tmp_path / "images")
    assert result.objects_written == len(back) == 5  # predicted = what a read-back yields
    # objects in == objects read back + objects lost (a merged pair reads back as one)
    merged = sum(1 for es in listed.values() if es[0].reason.startswith("merged"))
    hidden = sum(1 for es in listed.values() if es[0].reason.startswith("hidden"))
    assert len(SCENE) == len(back) + (merged - 1) + hidden
    # an object the ledger does not list is read back exactly
    masks_in = source_masks(tmp_path, SCENE)
    masks_back = [geometry.rle_to_mask(a.rle).astype(bool) for a in back]
    for number in (3, 5, 6):
        assert sum(np.array_equal(masks_in[number], m) for m in masks_back) == 1
    report = json.loads((tmp_path / "masks.report.json").read_text())
    assert report["label_maps"] == {"objects": 7, "objects_read_back": 5, "merged": 2, "hidden": 1,
                                    "partly_hidden": 1, "split": 0}


def test_prediction_matches_read_back_with_splits_and_multi_part_objects(tmp_path):
    bar = region({"name": "polygon", "all_points_x": [40, 44, 44, 40], "all_points_y": [0, 0, 80, 80]}, kind="a")
    regions = [rect(10, 30, 80, 10, "b"), bar, rect(60, 60, 10, 10, "a"), rect(71, 60, 10, 10, "a")]
    src = project(tmp_path, regions)
    result = convert(src, tmp_path / "masks", to="masks")
    listed = entries_by_region(result.ledger)
    assert listed["region 0"][0].reason.startswith("split")  # the bar cuts the strip in two
    back = read_back(tmp_path / "masks", tmp_path / "images")
    assert result.objects_written == len(back) == 5  # 2 halves + the bar + 2 squares 1 px apart


def test_strict_refuses_class_maps_that_lose_objects(tmp_path):
    src = project(tmp_path, SCENE)
    result = run("convert", src, tmp_path / "masks", "--to", "masks", "--strict")
    assert result.exit_code == 1
    assert "merged" in result.stderr
    assert not (tmp_path / "masks").exists()
    shown = run("convert", src, tmp_path / "masks", "--to", "masks")
    assert shown.exit_code == 0, shown.stderr
    assert "merged" in shown.stdout and "hidden" in shown.stdout and "--instances" in shown.stdout


def test_instance_maps_give_every_instance_back(tmp_path):
    regions = [r for number, r in enumerate(SCENE) if number != 2]  # no object wholly covered
    regions.append(region({"name": "rect", "x": 30, "y": 40, "width": 10, "height": 10}, kind="b", iscrowd="1"))
    src = project(tmp_path, regions)
    result = run("convert", src, tmp_path / "inst", "--to", "masks", "--instances")
    assert result.exit_code == 0, result.stderr
    png = tmp_path / "inst" / "a.png"
    with Image.open(png) as image:
        assert image.mode in ("I;16", "I")
        ids = np.array(image)
    assert ids.dtype.itemsize >= 2 and sorted(np.unique(ids).tolist()) == list(range(len(regions) + 1))
    mapping = json.loads((tmp_path / "inst" / "instances.json").read_text())
    assert [c["name"] for c in mapping["categories"]] == ["a", "b"]
    back = read_back(tmp_path / "inst", tmp_path / "images")
    assert len(back) == len(regions)
    masks_in = source_masks(tmp_path, regions)
    overlapped = {3}  # region 3 here is SCENE's 4: the big b square with an a on it
    for number, (source, annotation) in enumerate(zip(regions, back)):
        assert annotation.category == source["region_attributes"]["kind"]
        mask = geometry.rle_to_mask(annotation.rle).astype(bool)
        if number in overlapped:
            assert mask.sum() == masks_in[number].sum() - masks_in[4].sum()
        else:
            assert np.array_equal(mask, masks_in[number]), number
    assert [a.iscrowd for a in back] == [0] * (len(regions) - 1) + [1]
    report = json.loads((tmp_path / "inst.report.json").read_text())
    partly = [e for e in report["entries"] if e["reason"].startswith("partly hidden")]
    assert [e["item"] for e in partly] == ["region 3"] and "100 of 900 px" in partly[0]["reason"]


def test_instance_maps_round_trip_to_coco(tmp_path):
    src = project(tmp_path, [rect(5, 5, 20, 20, "a"), rect(25, 5, 20, 20, "a"), rect(50, 50, 20, 20, "b")])
    assert run("convert", src, tmp_path / "inst", "--to", "masks", "--instances").exit_code == 0
    out = run("convert", tmp_path / "inst", tmp_path / "back.json", "--images", tmp_path / "images")
    assert out.exit_code == 0, out.stderr
    coco = json.loads((tmp_path / "back.json").read_text())
    assert [a["area"] for a in coco["annotations"]] == [400, 400, 400]
    assert [c["name"] for c in coco["categories"]] == ["a", "b"]
    assert "nothing was changed or dropped" in out.stdout


def test_instances_needs_masks_output(tmp_path):
    src = project(tmp_path, SCENE[:1])
    assert_refused(run("convert", src, tmp_path / "o.json", "--to", "coco", "--instances"), "--instances")


def test_class_maps_are_palette_pngs_read_as_indices(tmp_path):
    regions = [rect(5, 5, 20, 20, "a"), rect(50, 50, 20, 20, "b"),
               region({"name": "rect", "x": 30, "y": 40, "width": 10, "height": 10}, kind="b", iscrowd="1")]
    src = project(tmp_path, regions)
    convert(src, tmp_path / "masks", to="masks")
    png = tmp_path / "masks" / "a.png"
    with Image.open(png) as image:
        assert image.mode == "P"
        palette = image.getpalette()
        pil_values = np.array(image)
    assert palette[3:6] != [0, 0, 0] and palette[6:9] != palette[3:6]  # classes 1 and 2 have colours
    expected = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    expected[40:50, 30:40] = 255  # the crowd region: void
    expected[5:25, 5:25] = 1
    expected[50:70, 50:70] = 2
    assert np.array_equal(pil_values, expected)
    assert np.array_equal(read_label_map(png), expected)
    back = read_back(tmp_path / "masks", tmp_path / "images")
    assert [a.category for a in back] == ["a", "b"]
    # --overwrite accepts the folder segcli wrote
    assert run("convert", src, tmp_path / "masks", "--to", "masks", "--overwrite", "--images", tmp_path / "images").exit_code == 0


def test_instance_folder_can_be_overwritten(tmp_path):
    src = project(tmp_path, SCENE[:2])
    assert run("convert", src, tmp_path / "inst", "--to", "masks", "--instances").exit_code == 0
    again = run("convert", src, tmp_path / "inst", "--to", "masks", "--instances", "--overwrite", "--images", tmp_path / "images")
    assert again.exit_code == 0, again.stderr


def test_predict_label_maps_are_palette_pngs_too(tmp_path):
    """predict's masks/ goes through the same writer as convert's label maps."""
    from segcli.engine.predict.outputs import write_label_map

    label_map = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    label_map[10:20, 10:30] = 3
    write_label_map(label_map, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
        assert np.array_equal(np.array(image), label_map)
    assert np.array_equal(read_label_map(tmp_path / "m.png"), label_map)

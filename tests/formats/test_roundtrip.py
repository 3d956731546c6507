"""VIA -> COCO -> VIA keeps regions, shapes and attributes; every VIA version and shape is read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from segcli.engine.convert import convert
from segcli.formats.io import read_annotations
from segcli.ledger import Ledger
from tests.helpers import region, via2_project, write_image, write_json

EVERY_SHAPE = [
    region({"name": "polygon", "all_points_x": [10, 60, 35.5], "all_points_y": [10, 12, 50.25]},
           kind="2", note="tri £ \"quoted\"", flags={"a": True, "b": True}),
    region({"name": "rect", "x": 70, "y": 5, "width": 30, "height": 20}, kind="1"),
    region({"name": "circle", "cx": 40, "cy": 90, "r": 15}, kind="3"),
    region({"name": "ellipse", "cx": 110, "cy": 80, "rx": 20, "ry": 8, "theta": 0.5}, kind="1"),
    region({"name": "polyline", "all_points_x": [5, 50, 90], "all_points_y": [110, 100, 115]}, kind="1"),
    region({"name": "point", "cx": 130, "cy": 10}, kind="2"),
    region({"name": "rect", "x": 100, "y": 30, "width": 25, "height": 25}),  # no label
]
ATTRIBUTES = {"region": {"kind": {"type": "dropdown", "description": "", "default_options": {},
                                  "options": {"1": "cat", "2": "dog", "3": "bird"}},
                         "note": {"type": "text", "description": "", "default_options": {}, "options": {}},
                         "flags": {"type": "checkbox", "description": "", "default_options": {},
                                   "options": {"a": "A", "b": "B"}}},
              "file": {"weather": {"type": "text", "description": "", "default_options": {}, "options": {}}}}


@pytest.fixture
def via_project(tmp_path):
    write_image(tmp_path / "a.png", 160, 120)
    write_image(tmp_path / "b.png", 64, 48, seed=1)
    project = via2_project({"a.png": EVERY_SHAPE, "b.png": []}, ATTRIBUTES,
                           {"a.png": {"weather": "sunny, 20°C"}})
    return write_json(tmp_path / "project.json", project)


def test_via_to_coco_to_via_is_lossless(tmp_path, via_project):
    coco_path, back_path = tmp_path / "coco.json", tmp_path / "back.json"
    result = convert(via_project, coco_path)
    assert result.to == "coco"
    assert not result.ledger.lossy
    convert(coco_path, back_path)
    original = json.loads(via_project.read_text())["_via_img_metadata"]
    restored = json.loads(back_path.read_text())["_via_img_metadata"]
    assert [v["filename"] for v in restored.values()] == ["a.png", "b.png"]
    for before, after in zip(original.values(), restored.values()):
        assert after["file_attributes"] == before["file_attributes"]
        assert len(after["regions"]) == len(before["regions"])
        for r0, r1 in zip(before["regions"], after["regions"]):
            assert r1["shape_attributes"] == r0["shape_attributes"]
            assert r1["region_attributes"] == r0["region_attributes"]
    assert json.loads(back_path.read_text())["_via_attributes"]["region"]["kind"] == ATTRIBUTES["region"]["kind"]


def test_coco_output_loads_in_pycocotools_with_mask_areas(tmp_path, via_project):
    coco_path = tmp_path / "coco.json"
    convert(via_project, coco_path)
    coco = COCO(str(coco_path))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert names == {1: "cat", 2: "dog", 3: "bird", 4: "object"}
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == 5  # polyline and point have no area
    assert [names[a["category_id"]] for a in anns] == ["dog", "cat", "bird", "cat", "object"]
    for ann in anns:
        mask = coco.annToMask(ann)
        assert ann["area"] == mask.sum() > 0
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["iscrowd"] == 0
    circle = anns[2]
    assert abs(circle["area"] - np.pi * 15**2) / (np.pi * 15**2) < 0.05
    rect = anns[1]
    assert rect["area"] == 30 * 20
    image = coco.loadImgs(anns[0]["image_id"])[0]
    assert (image["width"], image["height"]) == (160, 120)
    kept = image["attributes"]["via_nonarea_regions"]
    assert [k["region"]["shape_attributes"]["name"] for k in kept] == ["polyline", "point"]
    assert anns[0]["attributes"]["note"] == "tri £ \"quoted\""


def test_via1_export_and_via3_project_read_every_shape(tmp_path):
    write_image(tmp_path / "a.png", 160, 120)
    via1 = {"a.png1234": {"filename": "a.png", "size": 1234, "file_attributes": {},
                          "regions": {str(i): r for i, r in enumerate(EVERY_SHAPE)}}}
    ledger = Ledger()
    dataset = read_annotations(write_json(tmp_path / "via1.json", via1), ledger, label_attr="kind")
    assert dataset.source_format == "via1-export"
    assert [a.shape_name for a in dataset.images[0].annotations] == ["polygon", "rect", "circle", "ellipse", "rect"]
    assert [i for i, _ in dataset.images[0].nonarea_regions] == [4, 5]

    via3 = {"project": {"pid": "p", "vid_list": ["1"]}, "config": {},
            "attribute": {"1": {"aname": "kind", "anchor_id": "FILE1_Z0_XY1", "type": 4,
                                "options": {"1": "cat", "2": "dog"}, "default_option_id": ""},
                          "2": {"aname": "weather", "anchor_id": "FILE1_Z0_XY0", "type": 1, "options": {}}},
            "file": {"1": {"fid": "1", "fname": "a.png", "type": 2, "loc": 1, "src": "a.png"}},
            "view": {"1": {"fid_list": ["1"]}},
            "metadata": {
                "m0": {"vid": "1", "flg": 0, "z": [], "xy": [], "av": {"2": "rainy"}},
                "m1": {"vid": "1", "flg": 0, "z": [], "xy": [1, 5, 6], "av": {"1": "1"}},
                "m2": {"vid": "1", "flg": 0, "z": [], "xy": [2, 10, 10, 30, 20], "av": {"1": "2"}},
                "m3": {"vid": "1", "flg": 0, "z": [], "xy": [3, 50, 50, 10], "av": {"1": "1"}},
                "m4": {"vid": "1", "flg": 0, "z": [], "xy": [4, 90, 50, 12, 6], "av": {}},
                "m5": {"vid": "1", "flg": 0, "z": [], "xy": [5, 1, 1, 20, 20], "av": {}},
                "m6": {"vid": "1", "flg": 0, "z": [], "xy": [6, 1, 1, 20, 20, 40, 5], "av": {}},
                "m7": {"vid": "1", "flg": 0, "z": [], "xy": [7, 100, 100, 140, 100, 120, 115], "av": {"1": "2"}},
            }}
    ledger = Ledger()
    dataset = read_annotations(write_json(tmp_path / "via3.json", via3), ledger)
    image = dataset.images[0]
    assert dataset.source_format == "via3-project"
    assert dataset.label_attr == "kind"
    assert image.attributes == {"weather": "rainy"}
    assert [(a.shape_name, a.category) for a in image.annotations] == [
        ("rect", "dog"), ("circle", "cat"), ("ellipse", "object"), ("polygon", "dog")]
    assert [r["shape_attributes"]["name"] for _, r in image.nonarea_regions] == ["point", "polyline", "polyline"]
    assert any(e.action == "converted" and "line" in e.reason for e in ledger.entries)


def test_categories_from_dropdown_ids_and_default(tmp_path, via_project):
    dataset = read_annotations(via_project, Ledger())
    assert dataset.label_attr == "kind"
    assert [c.name for c in dataset.categories] == ["cat", "dog", "bird", "object"]
    unlabelled = dataset.images[0].annotations[-1]
    assert unlabelled.category_from_default and unlabelled.category == "object"


def test_label_masks_round_trip(tmp_path, via_project):
    masks_dir = tmp_path / "masks"
    convert(via_project, masks_dir, to="masks")
    assert (masks_dir / "classes.txt").read_text().split() == ["_background_", "cat", "dog", "bird", "object"]
    from PIL import Image
    label_map = np.array(Image.open(masks_dir / "a.png"))  # a palette PNG: PIL gives the indices
    assert label_map.shape == (120, 160)
    assert set(np.unique(label_map)) == {0, 1, 2, 3, 4}
    back = tmp_path / "from_masks.json"
    result = convert(masks_dir, back, to="coco", images_dir=tmp_path)
    coco = COCO(str(back))
    assert len(coco.getAnnIds()) == 5  # one instance per connected component
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["bird", "cat", "dog", "object"]
    assert result.dataset.images[0].file_name == "a.png"

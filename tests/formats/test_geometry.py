"""Geometry: holes, multi-part objects, repair and clipping, and property-based round trips."""

from __future__ import annotations

import math

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO

from segcli.engine.convert import convert
from segcli.formats import geometry
from tests.helpers import region, via2_project, write_image, write_json


def _notes():
    entries = []
    return entries, lambda action, reason: entries.append((action, reason))


def donut_mask(h=60, w=80):
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (40, 30), 25, 1, -1)
    cv2.circle(mask, (40, 30), 10, 0, -1)
    return mask.astype(bool)


def test_donut_keeps_its_hole_as_rle_not_crowd(tmp_path):
    mask = donut_mask()
    write_image(tmp_path / "images" / "d.png", 80, 60)
    coco = {"images": [{"id": 7, "file_name": "d.png", "width": 80, "height": 60}],
            "categories": [{"id": 3, "name": "donut"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0,
                             "segmentation": geometry.rle_to_json(geometry.mask_to_rle(mask))}]}
    src = write_json(tmp_path / "donut.json", coco)
    out = tmp_path / "out.json"
    convert(src, out, to="coco", images_dir=tmp_path / "images")
    result = COCO(str(out))
    ann = result.loadAnns(result.getAnnIds())[0]
    assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"], dict)
    assert (result.annToMask(ann).astype(bool) == mask).all()
    assert ann["area"] == int(mask.sum())
    # polygons cannot carry the hole: the VIA export says so
    via_out = tmp_path / "via.json"
    res = convert(out, via_out, to="via")
    assert any(e.action == "changed" and "holes" in e.reason for e in res.ledger.entries)


def test_two_part_object_stays_one_annotation(tmp_path):
    write_image(tmp_path / "t.png", 100, 50)
    parts = [[5, 5, 30, 5, 30, 30, 5, 30], [60, 10, 90, 10, 75, 40]]
    coco = {"images": [{"id": 1, "file_name": "t.png", "width": 100, "height": 50}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": parts}]}
    out = tmp_path / "out.json"
    convert(write_json(tmp_path / "in.json", coco), out, to="coco")
    ann = COCO(str(out)).loadAnns([1])[0]
    assert ann["segmentation"] == [[float(v) for v in p] for p in parts]
    assert ann["area"] == int(COCO(str(out)).annToMask(ann).sum())
    res = convert(out, tmp_path / "via.json", to="via")
    assert any("multi-part" in e.reason for e in res.ledger.entries)


def test_self_intersecting_polygon_is_repaired_and_reported(tmp_path):
    bowtie = {"name": "polygon", "all_points_x": [10, 50, 10, 50], "all_points_y": [10, 50, 50, 10]}
    write_image(tmp_path / "a.png", 64, 64)
    src = write_json(tmp_path / "p.json", via2_project({"a.png": [region(bowtie)]}))
    res = convert(src, tmp_path / "out.json")
    # the bow-tie's two triangles rasterise to the pixels of the crossing outline: noted, not a change
    assert [e.action for e in res.ledger.entries if e.action != "kept"] == ["repaired (mask unchanged)"]
    ann = COCO(str(tmp_path / "out.json")).loadAnns([1])[0]
    assert len(ann["segmentation"]) == 2  # two triangles
    assert 700 < ann["area"] < 900  # two triangles of 400 px2 each, not a sliver


def test_clipping_and_dropping_outside_the_image(tmp_path):
    write_image(tmp_path / "a.png", 50, 40)
    regions = [region({"name": "rect", "x": 40, "y": 30, "width": 20, "height": 20}),
               region({"name": "rect", "x": 60, "y": 60, "width": 5, "height": 5}),
               region({"name": "polygon", "all_points_x": [1, 2, 3], "all_points_y": [1, 2, 3]})]
    res = convert(write_json(tmp_path / "p.json", via2_project({"a.png": regions})), tmp_path / "o.json")
    actions = [(e.item, e.action) for e in res.ledger.entries]
    assert ("region 0", "clipped") in actions
    assert ("region 1", "dropped") in actions
    assert ("region 2", "dropped") in actions  # collinear: zero area
    ann = COCO(str(tmp_path / "o.json")).loadAnns([1])[0]
    assert ann["bbox"] == [40.0, 30.0, 10.0, 10.0] and ann["area"] == 100


@settings(max_examples=40, deadline=None)
@given(cx=st.floats(20, 80), cy=st.floats(20, 60), rx=st.floats(3, 19), ry=st.floats(3, 19),
       theta=st.floats(-math.pi, math.pi))
def test_ellipse_polygon_area_matches_analytic(cx, cy, rx, ry, theta):
    points = geometry.ellipse_points(cx, cy, rx, ry, theta)
    area = abs(geometry.shoelace_area(points))
    assert abs(area - math.pi * rx * ry) / (math.pi * rx * ry) < 0.01
    rle = geometry.polygons_to_rle([geometry.points_to_flat(points)], 80, 100)
    pixels, _ = geometry.rle_area_bbox(rle)
    assert abs(pixels - math.pi * rx * ry) <= 2 * math.pi * max(rx, ry) + 4  # within a 1-px rim


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 30), st.integers(1, 25), st.integers(1, 25)),
                min_size=1, max_size=4))
def test_mask_polygon_mask_round_trip(rects):
    mask = np.zeros((40, 64), bool)
    for x, y, w, h in rects:
        mask[y:y + h, x:x + w] = True
    rle_json = geometry.rle_to_json(geometry.mask_to_rle(mask))
    assert (geometry.rle_to_mask(geometry.rle_from_json(rle_json, 40, 64)) == mask).all()
    parts, has_holes = geometry.mask_to_polygons(mask)
    back = geometry.rle_to_mask(geometry.polygons_to_rle(parts, 40, 64))
    if has_holes:
        assert (back | mask).sum() >= mask.sum() and (mask & ~back).sum() == 0  # holes filled
    else:
        assert (back == mask).all()  # rectilinear outlines come back pixel-exact


def test_polygons_of_a_disc_rasterise_close_to_it():
    mask = np.zeros((80, 80), np.uint8)
    cv2.circle(mask, (40, 40), 20, 1, -1)
    parts, _ = geometry.mask_to_polygons(mask.astype(bool))
    back = geometry.rle_to_mask(geometry.polygons_to_rle(parts, 80, 80))
    iou = (back & mask.astype(bool)).sum() / (back | mask.astype(bool)).sum()
    assert iou > 0.97


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-20, 120), st.floats(-20, 100)), min_size=3, max_size=12))
def test_clean_polygon_always_valid_and_inside(points):
    entries, note = _notes()
    parts, _ = geometry.clean_polygon(np.asarray(points, dtype=np.float64), 100, 80, note)
    for part in parts:
        assert part.is_valid and part.area > 0
        minx, miny, maxx, maxy = part.bounds
        assert minx >= 0 and miny >= 0 and maxx <= 100 and maxy <= 80
    assert all(action in ("repaired", "repaired (mask unchanged)", "clipped", "dropped") for action, _ in entries)

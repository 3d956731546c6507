"""Tests for segcli.synthetic: determinism, file layout, and polygons that match the drawn pixels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcli.errors import SegcliError
from segcli.data.synthetic import CATEGORIES, generate_shapes_dataset

NUM_IMAGES = 20

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
"""pycocotools 2.0.11 ``decode`` under numpy 2 warns on every call; not ours to fix."""


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as relative path -> bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def load_rgb(path: Path) -> np.ndarray:
    """Read a PNG as H x W x 3 uint8 RGB."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def rasterise_polygon(polygon: list[float], height: int, width: int) -> np.ndarray:
    """H x W bool mask of a flat polygon as pycocotools (and detectron2) rasterise it."""
    rle = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
    return mask_utils.decode(rle).astype(bool)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(out, NUM_IMAGES, seed=7, coco=True)
    return out


def test_same_seed_gives_identical_files(dataset, tmp_path):
    again = tmp_path / "again"
    generate_shapes_dataset(again, NUM_IMAGES, seed=7, coco=True)
    first, second = read_tree(dataset), read_tree(again)
    assert len(first) == NUM_IMAGES + 2
    assert first == second


def test_different_seed_gives_different_files(dataset, tmp_path):
    other = tmp_path / "other"
    generate_shapes_dataset(other, NUM_IMAGES, seed=8, coco=True)
    first, second = read_tree(dataset), read_tree(other)
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)


def test_via_project_layout(dataset):
    project = json.loads((dataset / "via_project.json").read_text(encoding="utf-8"))
    assert list(project) == ["_via_settings", "_via_img_metadata", "_via_attributes",
                             "_via_data_format_version", "_via_image_id_list"]
    assert project["_via_settings"]["project"]["name"] == "shapes"
    assert project["_via_attributes"]["region"]["shape"]["options"] == {n: n for n in CATEGORIES}
    metadata = project["_via_img_metadata"]
    assert project["_via_image_id_list"] == list(metadata)
    for index, (key, entry) in enumerate(metadata.items()):
        assert entry["filename"] == f"images/{index:06d}.png"
        assert entry["size"] == (dataset / entry["filename"]).stat().st_size
        assert key == entry["filename"] + str(entry["size"])
        assert 1 <= len(entry["regions"]) <= 5
        assert entry["file_attributes"] == {}


def test_all_categories_appear(dataset):
    project = json.loads((dataset / "via_project.json").read_text(encoding="utf-8"))
    counts = Counter(region["region_attributes"]["shape"]
                     for entry in project["_via_img_metadata"].values()
                     for region in entry["regions"])
    assert set(counts) == set(CATEGORIES)
    assert all(count >= 3 for count in counts.values())


def test_polygons_cover_the_drawn_object(dataset):
    """Objects are solid colours, so an instance's visible pixels are those of its exact colour.

    The polygon's raster must lie on that colour (it is the object's own visible part, not an
    occluder or the background) and cover most of it (pixel-centre polygons lose about half of
    each boundary pixel, so small objects score lower).
    """
    project = json.loads((dataset / "via_project.json").read_text(encoding="utf-8"))
    ious = []
    for entry in project["_via_img_metadata"].values():
        image = load_rgb(dataset / entry["filename"])
        height, width = image.shape[:2]
        assert (width, height) == (320, 240)
        for region in entry["regions"]:
            shape = region["shape_attributes"]
            xs, ys = shape["all_points_x"], shape["all_points_y"]
            assert shape["name"] == "polygon" and len(xs) == len(ys) >= 3
            assert 0 <= min(xs) and max(xs) <= width and 0 <= min(ys) and max(ys) <= height
            polygon = [v for xy in zip(xs, ys) for v in xy]
            raster = rasterise_polygon(polygon, height, width)
            assert raster.sum() >= 30
            colours, counts = np.unique(image[raster], axis=0, return_counts=True)
            colour = colours[counts.argmax()]
            assert counts.max() / raster.sum() > 0.99
            visible = (image == colour).all(axis=2)
            ious.append((raster & visible).sum() / (raster | visible).sum())
    assert min(ious) > 0.9
    assert np.mean(ious) > 0.97


def test_coco_matches_via(dataset):
    coco = json.loads((dataset / "coco.json").read_text(encoding="utf-8"))
    project = json.loads((dataset / "via_project.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in coco["categories"]] == list(CATEGORIES)
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    regions = [(entry["filename"], region) for entry in project["_via_img_metadata"].values()
               for region in entry["regions"]]
    assert len(coco["annotations"]) == len(regions)
    images = {image["id"]: image for image in coco["images"]}
    for annotation, (filename, region) in zip(coco["annotations"], regions):
        image = images[annotation["image_id"]]
        assert image["file_name"] == filename
        assert CATEGORIES[annotation["category_id"] - 1] == region["region_attributes"]["shape"]
        polygon = annotation["segmentation"][0]
        assert polygon[0::2] == region["shape_attributes"]["all_points_x"]
        raster = rasterise_polygon(polygon, image["height"], image["width"])
        assert annotation["area"] == raster.sum() and annotation["iscrowd"] == 0
        x, y, w, h = annotation["bbox"]
        ys, xs = np.nonzero(raster)
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


def test_several_sizes(tmp_path):
    sizes = ((320, 240), (200, 160))
    generate_shapes_dataset(tmp_path, 8, seed=3, sizes=sizes, coco=True)
    coco = json.loads((tmp_path / "coco.json").read_text(encoding="utf-8"))
    seen = {(image["width"], image["height"]) for image in coco["images"]}
    assert seen == set(sizes)
    for image in coco["images"]:
        assert load_rgb(tmp_path / image["file_name"]).shape == (image["height"], image["width"], 3)


@pytest.mark.parametrize("kwargs", [{"num_images": -1}, {"sizes": ()}, {"sizes": ((10, 10),)}])
def test_bad_arguments_raise(tmp_path, kwargs):
    args = {"num_images": 1, "seed": 0, **kwargs}
    with pytest.raises(SegcliError):
        generate_shapes_dataset(tmp_path, **args)


def test_varied_images_are_reproducible_and_not_the_plain_ones(tmp_path):
    generate_shapes_dataset(tmp_path / "a", 6, seed=4, varied=True)
    generate_shapes_dataset(tmp_path / "b", 6, seed=4, varied=True)
    generate_shapes_dataset(tmp_path / "plain", 6, seed=4)
    varied = read_tree(tmp_path / "a")
    assert varied == read_tree(tmp_path / "b")
    plain = read_tree(tmp_path / "plain")
    assert all(varied[name] != plain[name] for name in varied if name.endswith(".png"))


def test_varied_set_has_what_the_plain_one_lacks(tmp_path):
    """Images without objects, crowded images, objects of 10-20 px, flat backgrounds."""
    generate_shapes_dataset(tmp_path, 60, seed=12, coco=True, varied=True)
    coco = json.loads((tmp_path / "coco.json").read_text(encoding="utf-8"))
    per_image = Counter(annotation["image_id"] for annotation in coco["annotations"])
    counts = [per_image[image["id"]] for image in coco["images"]]
    assert counts.count(0) >= 2 and max(counts) >= 7
    sides = [max(annotation["bbox"][2:]) for annotation in coco["annotations"]]
    assert sum(side < 20 for side in sides) >= 10 and max(sides) > 100
    spreads = [load_rgb(tmp_path / image["file_name"]).reshape(-1, 3).std(axis=0).mean()
               for image in coco["images"]]
    assert min(spreads) < 20 < max(spreads)  # flat-ish and busy backgrounds


def test_varied_objects_are_whole_visible_and_distinct_from_their_surroundings():
    """Each annotation is one simply connected part that keeps >= 25 % of its object, parts do
    not overlap, and (for objects of 200+ px) the image inside differs from the ring around it,
    even with transparency, low contrast, blur and noise."""
    from segcli.data.synthetic import VARIED, is_simple_region, render_image

    rng = np.random.default_rng(3)
    differences = []
    for _ in range(25):
        image, objects = render_image(rng, 320, 240, VARIED)
        covered = np.zeros(image.shape[:2], bool)
        for obj in objects:
            assert is_simple_region(obj.visible)
            assert obj.visible.sum() >= 0.25 * obj.full_area
            assert not (covered & obj.visible).any()
            covered |= obj.visible
            if obj.visible.sum() >= 200:
                inner = cv2.erode(obj.visible.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                ring = cv2.dilate(obj.visible.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~covered
                if inner.sum() >= 50 and ring.sum() >= 50:
                    differences.append(np.abs(image[inner].mean(0) - image[ring].mean(0)).mean())
    assert len(differences) >= 40
    assert min(differences) > 15 and np.percentile(differences, 10) > 30

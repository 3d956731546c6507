"""Real annotation files from other projects (../shared/data/formats and ../shared/data/drinks).

Every figure asserted here was read from the files themselves (see the README.md in each folder):
counts of images, regions, shapes and categories, sizes of the image files, and specific values.
Outputs go to pytest's tmp_path; nothing is written under ../shared.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segcli.engine.convert import convert
from segcli.engine.stats import dataset_stats
from segcli.errors import SegcliError
from segcli.formats.images import read_image_size
from segcli.formats.io import read_annotations
from segcli.ledger import Ledger

VIA1_DIR = "ox-vgg__via/via-1.x.y/tests/data"
VIA01_DIR = "ox-vgg__via/testdata"
VIA2_DEMO = "ox-vgg__via/via-2.x.y/src/demo/_via_basic_demo.annotations_json.extracted.json"
VIA2_DEMO_IMAGES = "ox-vgg__via/via-2.x.y/data/basic"
SHERLOCK = "ox-vgg__via/via-2.x.y/data/face_track_annotation/sherlock_ep01_tracks_FRCNN.json"
ITEAM_VIA = "iteam1__2label/datasets/via"
ITEAM_COCO = "iteam1__2label/datasets/coco1.0"
VIA3_VIDEO = ("vital-ultrasound__ai-echocardiography-for-low-resource-countries/data/labelling/"
              "json_files/4CV/01NVb_003_065/01NVb-003-065-3-4CV.json")
DATUMARO_COCO = "openvinotoolkit__datumaro/tests/assets/coco_dataset/coco_instances"
ROBOFLOW = "openvinotoolkit__datumaro/tests/assets/roboflow_dataset/coco"
LABELME_COCO = "wkentaro__labelme/examples/instance_segmentation/data_dataset_coco"
LABELME_VOC = "wkentaro__labelme/examples/instance_segmentation/data_dataset_voc"
COCO_SNIPPET = "ox-vgg__via/via-2.x.y/data/coco/coco_2017_snippet.json"
NSY = "nsy0328__VIA/tutorial"
RESULTS = "cocodataset__cocoapi/results/instances_val2014_fakesegm100_results.json"
SA1B = "openvinotoolkit__datumaro/tests/assets/segment_anything_dataset/a.json"

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "potted plant",
               "sheep", "sofa", "train", "tv/monitor"]


@pytest.fixture(scope="module")
def formats(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "formats"
    if not path.is_dir():
        pytest.skip("../shared/data/formats not present")
    return path


@pytest.fixture(scope="module")
def drinks(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "drinks"
    if not path.is_dir():
        pytest.skip("../shared/data/drinks not present")
    return path


def load(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read(path: Path, **kwargs):
    ledger = Ledger(str(path))
    return read_annotations(Path(path), ledger, **kwargs), ledger


def entries(ledger: Ledger, action: str) -> list:
    return [e for e in ledger.entries if e.action == action]


def shape_of(annotation: dict) -> str:
    """The VIA shape a COCO annotation written by segcli came from: ``attributes.via_shape``, or
    "polygon" for an unchanged VIA polygon (whose segmentation holds it exactly)."""
    shape = annotation.get("attributes", {}).get("via_shape")
    if shape is not None:
        return shape["name"]
    return "polygon" if isinstance(annotation["segmentation"], list) and annotation["segmentation"] else "?"


def via1_regions(entry: dict) -> list[dict]:
    """A VIA 1 ``regions`` dict {"0": ..., "1": ...} as a list in index order."""
    regions = entry["regions"]
    return [regions[k] for k in sorted(regions, key=int)] if isinstance(regions, dict) else regions


# --------------------------------------------------------------------------------------------
# VIA 1.x: VIA's own unit-test file, names that do not match the files, odd attribute values
# --------------------------------------------------------------------------------------------

VIA1_NAMES = ["test_pattern_qbist.jpg", "sinus_test_pattern.jpg", "a_swan_swimming_in_geneve_lake.jpg"]


def test_via1_json_to_coco_counts_sizes_and_byte_size_matching(formats, tmp_path):
    source = formats / VIA1_DIR / "unit_test_annotation2.json"
    result = convert(source, tmp_path / "coco.json", to="coco")
    coco = load(tmp_path / "coco.json")

    assert result.dataset.source_format == "via1-export"
    assert result.dataset.label_attr == "name"
    assert [im["file_name"] for im in coco["images"]] == VIA1_NAMES
    assert [(im["width"], im["height"]) for im in coco["images"]] == [(640, 480), (640, 480), (640, 427)]
    assert [im["via_size"] for im in coco["images"]] == [129855, 27894, 62201]
    assert (result.images_written, result.objects_written) == (3, 7)
    assert len(coco["annotations"]) == 7
    assert Counter(shape_of(a) for a in coco["annotations"]) == {
        "ellipse": 3, "rect": 2, "circle": 1, "polygon": 1}
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    ids = [im["id"] for im in coco["images"]]
    assert [per_image[i] for i in ids] == [4, 1, 2]

    # matched by byte size: the JSON names are not the names on disk
    matched = {e.image: e.reason for e in entries(result.ledger, "matched")}
    assert set(matched) == set(VIA1_NAMES)
    assert matched["test_pattern_qbist.jpg"].endswith("unit_test_img1.jpg")
    assert matched["sinus_test_pattern.jpg"].endswith("unit_test_img2.jpg")
    assert matched["a_swan_swimming_in_geneve_lake.jpg"].endswith("unit_test_img3.jpg")
    assert [im.path.name for im in result.dataset.images] == [
        "unit_test_img1.jpg", "unit_test_img2.jpg", "unit_test_img3.jpg"]
    assert not result.ledger.lossy

    # the 5 points are kept in the image attributes, not dropped
    nonarea = {im["file_name"]: im["attributes"].get("via_nonarea_regions", [])
               for im in coco["images"]}
    assert [r["index"] for r in nonarea["test_pattern_qbist.jpg"]] == [2, 3, 4, 7]
    assert nonarea["sinus_test_pattern.jpg"] == []
    assert [r["index"] for r in nonarea["a_swan_swimming_in_geneve_lake.jpg"]] == [2]
    points = [r["region"]["shape_attributes"] for rs in nonarea.values() for r in rs]
    assert all(p["name"] == "point" for p in points) and len(points) == 5
    assert {"name": "point", "cx": 638, "cy": 475} in points  # 2 px from the 640x480 corner
    assert len(entries(result.ledger, "kept")) == 5

    # file attributes, including the whitespace-only caption, verbatim
    assert [im["attributes"]["caption"] for im in coco["images"]] == [
        "+-08374*&$£*", 'a swan in geneve lake"', "  "]

    # rects rasterise exactly: area w*h and the same box
    rects = [a for a in coco["annotations"] if shape_of(a) == "rect"]
    assert sorted((a["bbox"], a["area"]) for a in rects) == [
        ([79.0, 310.0, 66.0, 62.0], 66 * 62), ([290.0, 208.0, 127.0, 113.0], 127 * 113)]

    # 6 categories: 5 labels from `name` plus the default for the 2 unlabelled regions
    names = {c["name"] for c in coco["categories"]}
    assert names == {'ellipse "red"', "rectangle 'black'", 'a "white" swan, good fortune',
                     'ellipse on "yellow"; background', "a 'rect' in \"blue\", background", "object"}
    by_id = {c["id"]: c["name"] for c in coco["categories"]}
    unlabelled = [a for a in coco["annotations"] if by_id[a["category_id"]] == "object"]
    assert sorted(shape_of(a) for a in unlabelled) == ["circle", "ellipse"]


def test_via1_json_coco_via_round_trip_keeps_regions_and_odd_values(formats, tmp_path):
    source = formats / VIA1_DIR / "unit_test_annotation2.json"
    convert(source, tmp_path / "coco.json", to="coco")
    back = convert(tmp_path / "coco.json", tmp_path / "via.json", to="via")
    assert (back.images_written, back.objects_written) == (3, 12)

    original = load(source)
    metadata = load(tmp_path / "via.json")["_via_img_metadata"]
    assert list(metadata) == list(original)  # keys filename+size, in file order
    for key, entry in original.items():
        out = metadata[key]
        assert out["filename"] == entry["filename"]
        assert out["size"] == entry["size"]
        assert out["file_attributes"] == entry["file_attributes"]
        assert out["regions"] == via1_regions(entry)  # same order, shapes and attributes
    qbist = metadata["test_pattern_qbist.jpg129855"]["regions"]
    assert qbist[0]["region_attributes"] == {"name": 'ellipse "red"'}
    assert qbist[3]["region_attributes"] == {"name": "unknown 598 fjs £$ *(&£^"}
    assert qbist[4]["region_attributes"] == {"name": "1564865"}
    assert qbist[5]["region_attributes"] == {}  # unlabelled: no category attribute added
    # the file on disk is UTF-8 with £ kept as a character
    assert "£" in (tmp_path / "via.json").read_text(encoding="utf-8")


def test_via1_csv_twin_gives_the_same_regions_as_the_json(formats):
    from_json, _ = read(formats / VIA1_DIR / "unit_test_annotation2.json")
    from_csv, csv_ledger = read(formats / VIA1_DIR / "unit_test_annotation1.csv")
    assert from_csv.source_format == "via-csv"
    assert not csv_ledger.errors
    assert from_csv.label_attr == from_json.label_attr == "name"
    assert [c.name for c in from_csv.categories] == [c.name for c in from_json.categories]
    assert [im.file_name for im in from_csv.images] == VIA1_NAMES
    assert [im.size_bytes for im in from_csv.images] == [129855, 27894, 62201]
    assert sum(len(im.annotations) for im in from_csv.images) == 7
    assert sum(len(im.nonarea_regions) for im in from_csv.images) == 5
    for a, b in zip(from_json.images, from_csv.images):
        assert a.attributes == b.attributes
        assert [x.via_shape for x in a.annotations] == [x.via_shape for x in b.annotations]
        assert [(x.category, x.attributes) for x in a.annotations] == [
            (x.category, x.attributes) for x in b.annotations]
        assert a.nonarea_regions == b.nonarea_regions


# --------------------------------------------------------------------------------------------
# VIA 0.1b: fileref {}, base64_data, polygons repeating their first point, an RGBA PNG
# --------------------------------------------------------------------------------------------

def test_via01b_json_polygons_rgba_png_and_empty_image(formats, tmp_path):
    source = formats / VIA01_DIR / "sample_img5_region_data.json"
    dataset, ledger = read(source, label_attr="shape")
    assert [im.file_name for im in dataset.images] == ["sample_img5b.jpg", "sample_img5a.png"]
    assert [im.size_bytes for im in dataset.images] == [54044, 55931]
    assert [a.shape_name for a in dataset.images[0].annotations] == [
        "circle", "ellipse", "rect", "polygon", "polygon"]
    assert dataset.images[1].annotations == [] and dataset.images[1].nonarea_regions == []
    assert [c.name for c in dataset.categories] == [
        "circular", "elliptical", "pentagon", "rectangle", "triangle"]
    assert [a.attributes for a in dataset.images[0].annotations] == [
        {"size": str(i)} for i in range(1, 6)]  # strings stay strings

    with Image.open(formats / VIA01_DIR / "sample_img5a.png") as png:
        assert png.mode == "RGBA"
    assert read_image_size(formats / VIA01_DIR / "sample_img5a.png") == (1202, 1202)

    result = convert(source, tmp_path / "coco.json", to="coco", label_attr="shape")
    coco = load(tmp_path / "coco.json")
    assert [(im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        ("sample_img5b.jpg", 1202, 1202), ("sample_img5a.png", 1202, 1202)]
    png_id = coco["images"][1]["id"]
    assert not [a for a in coco["annotations"] if a["image_id"] == png_id]  # kept, empty
    assert len(coco["annotations"]) == 5
    assert not result.ledger.lossy
    by_name = {c["id"]: c["name"] for c in coco["categories"]}
    polygons = {by_name[a["category_id"]]: a for a in coco["annotations"]
                if shape_of(a) == "polygon"}
    # the closing point that repeats the first one adds no vertex: a triangle and a pentagon
    triangle = [tuple(p) for p in np.asarray(polygons["triangle"]["segmentation"][0]).reshape(-1, 2)]
    assert list(dict.fromkeys(triangle)) == [(211, 679), (222, 1096), (582, 872)]
    pentagon = [tuple(p) for p in np.asarray(polygons["pentagon"]["segmentation"][0]).reshape(-1, 2)]
    assert len(set(pentagon)) == 5
    assert polygons["triangle"]["bbox"] == [211.0, 679.0, 370.0, 417.0]
    assert polygons["triangle"]["area"] == 76286 and polygons["pentagon"]["area"] == 112933
    # ...and COCO -> VIA gives back the VIA polygons as they were, closing point included
    convert(tmp_path / "coco.json", tmp_path / "via.json", to="via")
    regions = load(tmp_path / "via.json")["_via_img_metadata"]["sample_img5b.jpg54044"]["regions"]
    original = via1_regions(load(source)["sample_img5b.jpg54044"])
    assert [r["shape_attributes"] for r in regions] == [r["shape_attributes"] for r in original]
    assert [r["region_attributes"] for r in regions] == [r["region_attributes"] for r in original]
    rect = next(a for a in coco["annotations"] if by_name[a["category_id"]] == "rectangle")
    assert (rect["bbox"], rect["area"]) == ([819.0, 143.0, 261.0, 213.0], 261 * 213)


def test_via01b_json_without_label_attr_defaults_with_a_ledger_entry(formats):
    dataset, ledger = read(formats / VIA01_DIR / "sample_img5_region_data.json")
    assert dataset.source_format == "via1-export"
    assert dataset.label_attr is None
    assert [c.name for c in dataset.categories] == ["object"]
    [defaulted] = entries(ledger, "defaulted")
    assert "shape, size" in defaulted.reason


def test_via01b_csv_key_value_syntax_is_refused_with_a_clear_error(formats, tmp_path):
    with pytest.raises(SegcliError, match="0.1b"):
        convert(formats / VIA01_DIR / "sample_img5_region_data.csv", tmp_path / "out.json", to="coco")
    assert not (tmp_path / "out.json").exists()


# --------------------------------------------------------------------------------------------
# VIA 2.x demo: size -1, checkbox stored as a dict, file attributes
# --------------------------------------------------------------------------------------------

def test_via2_demo_to_coco_with_images_dir(formats, tmp_path):
    source = formats / VIA2_DEMO
    result = convert(source, tmp_path / "coco.json", to="coco", images_dir=formats / VIA2_DEMO_IMAGES)
    coco = load(tmp_path / "coco.json")
    assert result.dataset.source_format == "via2-export"
    assert [im.size_bytes for im in result.dataset.images] == [None, None]  # size -1: unknown
    assert [(im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        ("adutta_swan.jpg", 600, 400), ("wikimedia_death_of_socrates.jpg", 600, 394)]
    assert [shape_of(a) for a in coco["annotations"]] == [
        "polygon", "rect", "rect", "ellipse"]
    assert [a["attributes"].get("image_quality") for a in coco["annotations"]] == [
        {"good_illumination": True}, {"good_illumination": True},
        {"frontal": True, "good_illumination": True}, None]
    assert [a["attributes"]["name"] for a in coco["annotations"]] == [
        "Swan", "Plato", "Socrates", "Hemlock"]
    assert coco["images"][0]["attributes"] == {
        "caption": "Swan in lake Geneve", "public_domain": "no",
        "image_url": "http://www.robots.ox.ac.uk/~vgg/software/via/images/swan.jpg"}
    plato = coco["annotations"][1]
    assert (plato["bbox"], plato["area"]) == ([174.0, 139.0, 108.0, 227.0], 108 * 227)
    # name, type and image_quality could all be the class: default category + ledger note
    assert [c["name"] for c in coco["categories"]] == ["object"]
    assert len(entries(result.ledger, "defaulted")) == 1


def test_via2_demo_without_images_dir_asks_for_images(formats, tmp_path):
    with pytest.raises(SegcliError, match="--images"):
        convert(formats / VIA2_DEMO, tmp_path / "coco.json", to="coco")
    assert not (tmp_path / "coco.json").exists()


def test_via2_demo_round_trip_without_label_attr_keeps_region_attributes(formats, tmp_path):
    source = formats / VIA2_DEMO
    convert(source, tmp_path / "coco.json", to="coco", images_dir=formats / VIA2_DEMO_IMAGES)
    convert(tmp_path / "coco.json", tmp_path / "via.json", to="via")
    original = load(source)
    metadata = load(tmp_path / "via.json")["_via_img_metadata"]
    for entry, out in zip(original.values(), metadata.values()):
        assert out["file_attributes"] == entry["file_attributes"]
        # no "category": "object" may appear: these regions never had a label
        assert out["regions"] == entry["regions"]


def test_via2_demo_round_trip_with_label_attr_type(formats, tmp_path):
    source = formats / VIA2_DEMO
    first = convert(source, tmp_path / "coco.json", to="coco", images_dir=formats / VIA2_DEMO_IMAGES,
                    label_attr="type")
    assert [(c.id, c.name) for c in first.dataset.categories] == [(1, "bird"), (2, "cup"), (3, "human")]
    coco = load(tmp_path / "coco.json")
    assert [a["category_id"] for a in coco["annotations"]] == [1, 3, 3, 2]
    assert all("type" not in a["attributes"] for a in coco["annotations"])
    convert(tmp_path / "coco.json", tmp_path / "via.json", to="via")
    original = load(source)
    metadata = load(tmp_path / "via.json")["_via_img_metadata"]
    assert [e["filename"] for e in metadata.values()] == [e["filename"] for e in original.values()]
    for entry, out in zip(original.values(), metadata.values()):
        assert out["regions"] == entry["regions"]  # checkbox dict {"frontal": true, ...} included
        assert out["file_attributes"] == entry["file_attributes"]


def test_via2_demo_checkbox_definition_lists_every_option_used(formats, tmp_path):
    """VIA 2 shows a checkbox value only if its option is defined: the written definition of
    image_quality must list both options used in the regions (good_illumination, frontal)."""
    source = formats / VIA2_DEMO
    convert(source, tmp_path / "via.json", to="via", label_attr="type")
    attributes = load(tmp_path / "via.json")["_via_attributes"]["region"]
    assert attributes["image_quality"]["type"] == "checkbox"
    assert set(attributes["image_quality"]["options"]) == {"good_illumination", "frontal"}


# --------------------------------------------------------------------------------------------
# iteam1/2label VIA: 42 regions incl. 2 polylines, `.jpeg`, attribute `labels`
# --------------------------------------------------------------------------------------------

ITEAM_CATEGORIES = ["bird", "circle", "ellipse", "rectangle", "strawberry", "triangle"]


def test_iteam_via_json_to_coco_loads_in_pycocotools(formats, tmp_path):
    source = formats / ITEAM_VIA / "via_region_data.json"
    result = convert(source, tmp_path / "coco.json", to="coco")
    coco = load(tmp_path / "coco.json")
    assert result.dataset.label_attr == "labels"
    assert [c["name"] for c in coco["categories"]] == ITEAM_CATEGORIES
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5, 6]
    assert [(im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        ("strawberry.jpg", 800, 800), ("shapes.jpg", 588, 643), ("crack.jpeg", 1280, 720),
        ("birds.jpg", 1000, 666)]
    assert len(coco["annotations"]) == 40
    by_id = {c["id"]: c["name"] for c in coco["categories"]}
    assert Counter(by_id[a["category_id"]] for a in coco["annotations"]) == {
        "strawberry": 34, "bird": 2, "rectangle": 1, "triangle": 1, "ellipse": 1, "circle": 1}
    assert Counter(shape_of(a) for a in coco["annotations"]) == {
        "rect": 35, "polygon": 3, "ellipse": 1, "circle": 1}

    # the 2 polylines are kept (not dropped) at their region index
    nonarea = {im["file_name"]: im.get("attributes", {}).get("via_nonarea_regions", [])
               for im in coco["images"]}
    assert [r["index"] for r in nonarea["shapes.jpg"]] == [4]
    assert [r["index"] for r in nonarea["crack.jpeg"]] == [0]
    assert nonarea["strawberry.jpg"] == nonarea["birds.jpg"] == []
    assert {r["region"]["shape_attributes"]["name"] for rs in nonarea.values() for r in rs} == {"polyline"}
    assert len(entries(result.ledger, "kept")) == 2
    assert not result.ledger.lossy
    crack_id = next(im["id"] for im in coco["images"] if im["file_name"] == "crack.jpeg")
    assert not [a for a in coco["annotations"] if a["image_id"] == crack_id]

    api = COCO(str(tmp_path / "coco.json"))
    assert len(api.getAnnIds()) == 40 and len(api.getImgIds()) == 4
    for ann in api.loadAnns(api.getAnnIds()):
        mask = api.annToMask(ann)
        image = api.imgs[ann["image_id"]]
        assert mask.shape == (image["height"], image["width"])
        assert int(mask.sum()) == ann["area"] > 0


def test_iteam_via_round_trip_keeps_polylines_in_place(formats, tmp_path):
    source = formats / ITEAM_VIA / "via_region_data.json"
    convert(source, tmp_path / "coco.json", to="coco")
    convert(tmp_path / "coco.json", tmp_path / "via.json", to="via")
    original = load(source)
    metadata = load(tmp_path / "via.json")["_via_img_metadata"]
    assert list(metadata) == list(original)
    for key, entry in original.items():
        assert metadata[key]["regions"] == entry["regions"]
    assert metadata["crack.jpeg373171"]["regions"][0]["shape_attributes"]["name"] == "polyline"


def test_iteam_via_csv_twin(formats):
    """The CSV export holds 17 strawberry boxes; the JSON holds each of them twice (34)."""
    from_json, _ = read(formats / ITEAM_VIA / "via_region_data.json")
    from_csv, ledger = read(formats / ITEAM_VIA / "via_region_data.csv")
    assert not ledger.errors
    assert from_csv.source_format == "via-csv"
    assert from_csv.label_attr == "labels"
    assert [c.name for c in from_csv.categories] == ITEAM_CATEGORIES
    assert [im.file_name for im in from_csv.images] == [
        "strawberry.jpg", "shapes.jpg", "crack.jpeg", "birds.jpg"]
    assert [len(im.annotations) for im in from_csv.images] == [17, 4, 0, 2]
    assert [len(im.annotations) for im in from_json.images] == [34, 4, 0, 2]
    assert sum(len(im.nonarea_regions) for im in from_csv.images) == 2
    for a, b in zip(from_json.images, from_csv.images):
        assert a.nonarea_regions == b.nonarea_regions
        json_shapes = [(x.category, json.dumps(x.via_shape, sort_keys=True)) for x in a.annotations]
        csv_shapes = [(x.category, json.dumps(x.via_shape, sort_keys=True)) for x in b.annotations]
        assert list(dict.fromkeys(json_shapes)) == csv_shapes  # same boxes, without the repeats


# --------------------------------------------------------------------------------------------
# sherlock face tracks: no images, ./images/ prefix, size and attributes of odd types
# --------------------------------------------------------------------------------------------

def test_sherlock_to_coco_without_images_asks_for_images(formats, tmp_path):
    with pytest.raises(SegcliError, match="--images") as info:
        convert(formats / SHERLOCK, tmp_path / "coco.json", to="coco")
    assert "266" in str(info.value)
    assert not (tmp_path / "coco.json").exists()


def test_sherlock_to_via_without_images(formats, tmp_path):
    result = convert(formats / SHERLOCK, tmp_path / "via.json", to="via")
    assert (result.images_written, result.objects_written) == (266, 427)
    assert result.dataset.label_attr == "track"
    assert [c.name for c in result.dataset.categories] == ["320", "321", "322", "324"]
    original = load(formats / SHERLOCK)
    metadata = load(tmp_path / "via.json")["_via_img_metadata"]
    assert list(metadata) == list(original)
    first = metadata["./images/00011384.jpg63930"]
    assert first["filename"] == "./images/00011384.jpg"
    assert all(e["filename"].startswith("./images/") for e in metadata.values())
    assert first["size"] == 63930  # the string "63930" read as a number
    assert first["file_attributes"] == {"shot": 123}  # integer kept
    assert first["regions"][0]["shape_attributes"] == {
        "name": "rect", "x": 325, "y": 113, "width": 103, "height": 132}
    assert Counter(r["shape_attributes"]["name"] for e in metadata.values() for r in e["regions"]) == {
        "rect": 427}
    for key, entry in original.items():
        assert metadata[key]["file_attributes"] == entry["file_attributes"]
        # the integer track ids must come back as the integers they were, not as strings
        assert metadata[key]["regions"] == entry["regions"]


def test_sherlock_stats_without_images(formats):
    stats = dataset_stats(formats / SHERLOCK)
    assert stats["format"] == "via2-export"
    assert (stats["images"], stats["images_found"], stats["objects"]) == (266, 0, 427)
    assert stats["shapes"] == {"rect": 427}
    assert sum(c["objects"] for c in stats["categories"]) == 427
    missing = [p for p in stats["problems"] if p["action"] == "missing"]
    assert len(missing) == 266
    assert missing[0]["image"] == "./images/00011384.jpg"


# --------------------------------------------------------------------------------------------
# VIA 3 video project: temporal segments only
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("to", ["coco", "via"])
def test_via3_video_project_is_rejected(formats, tmp_path, to):
    with pytest.raises(SegcliError, match="no image with spatial regions"):
        convert(formats / VIA3_VIDEO, tmp_path / "out.json", to=to)
    assert not (tmp_path / "out.json").exists()


def test_via3_video_project_ledger(formats):
    dataset, ledger = read(formats / VIA3_VIDEO)
    assert dataset.source_format == "via3-project"
    assert dataset.images == []
    [skipped] = entries(ledger, "skipped")
    assert skipped.image == "01NVb-003-065-3 echo.mp4"
    assert "type 4" in skipped.reason
    assert len(ledger.errors) == 1


# --------------------------------------------------------------------------------------------
# COCO: datumaro test assets
# --------------------------------------------------------------------------------------------

def test_datumaro_instances_val_rle_and_noncontiguous_ids(formats, tmp_path):
    base = formats / DATUMARO_COCO
    source = base / "annotations/instances_val.json"
    result = convert(source, tmp_path / "coco.json", to="coco", images_dir=base / "images/val")
    coco = load(tmp_path / "coco.json")
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "a"), (2, "b"), (4, "c")]
    assert [(im["id"], im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        (40, "b.jpg", 5, 10)]
    assert coco["images"][0]["license"] == 0  # other image fields kept
    polygon, crowd = coco["annotations"]
    assert (polygon["id"], polygon["image_id"], polygon["category_id"]) == (1, 40, 1)
    assert polygon["attributes"] == {"x": 1, "y": "hello"}
    assert polygon["segmentation"] == [[0.0, 0.0, 1.0, 0.0, 1.0, 2.0, 0.0, 2.0]]
    assert polygon["area"] == 2 and polygon["iscrowd"] == 0

    # uncompressed RLE (iscrowd 1) written as compressed RLE, same pixels, same area
    assert (crowd["id"], crowd["category_id"], crowd["iscrowd"]) == (2, 2, 1)
    assert isinstance(crowd["segmentation"]["counts"], str)
    assert crowd["segmentation"]["size"] == [10, 5]
    assert crowd["area"] == 20
    original = load(source)["annotations"][1]["segmentation"]
    expected = mask_utils.decode(mask_utils.frPyObjects(original, 10, 5))
    written = mask_utils.decode({"size": [10, 5], "counts": crowd["segmentation"]["counts"].encode()})
    assert (written == expected).all() and int(expected.sum()) == 20
    assert crowd["bbox"] == [0.0, 0.0, 2.0, 10.0]  # two full columns
    assert not result.ledger.lossy

    api = COCO(str(tmp_path / "coco.json"))
    assert [int(api.annToMask(a).sum()) for a in api.loadAnns([1, 2])] == [2, 20]


def test_datumaro_instances_val_read_keeps_rle(formats):
    dataset, ledger = read(formats / DATUMARO_COCO / "annotations/instances_val.json")
    assert not ledger.errors
    [image] = dataset.images
    assert image.id == 40 and (image.width, image.height) == (5, 10)
    assert [a.shape_name for a in image.annotations] == ["polygon", "rle"]
    assert [a.iscrowd for a in image.annotations] == [0, 1]
    assert mask_utils.area(image.annotations[1].rle) == 20


def test_datumaro_instances_train_bbox_only(formats, tmp_path):
    base = formats / DATUMARO_COCO
    source = base / "annotations/instances_train.json"
    dataset, _ = read(source)
    [annotation] = dataset.images[0].annotations
    assert annotation.shape_name == "bbox" and annotation.bbox_xywh == [2.0, 2.0, 3.0, 1.0]

    convert(source, tmp_path / "coco.json", to="coco", images_dir=base / "images/train")
    [written] = load(tmp_path / "coco.json")["annotations"]
    assert written["segmentation"] == []
    assert written["bbox"] == [2.0, 2.0, 3.0, 1.0] and written["area"] == 3.0
    assert (written["image_id"], written["category_id"]) == (5, 2)

    result = convert(source, tmp_path / "via.json", to="via")
    [entry] = load(tmp_path / "via.json")["_via_img_metadata"].values()
    assert entry["filename"] == "a.jpg"
    assert entry["regions"] == [{"shape_attributes": {"name": "rect", "x": 2.0, "y": 2.0, "width": 3.0,
                                                      "height": 1.0},
                                 "region_attributes": {"category": "b"}}]
    [converted] = entries(result.ledger, "converted")
    assert "box-only" in converted.reason


def test_datumaro_coco_without_images_dir_asks_for_images(formats, tmp_path):
    with pytest.raises(SegcliError, match="--images"):
        convert(formats / DATUMARO_COCO / "annotations/instances_val.json", tmp_path / "c.json", to="coco")


# --------------------------------------------------------------------------------------------
# COCO written by labelme: category 0 _background_, multi-part polygons, sub-folder file names
# --------------------------------------------------------------------------------------------

def test_labelme_coco_background_dropped_multipart_and_subfolders(formats, tmp_path):
    source = formats / LABELME_COCO / "annotations.json"
    dataset, ledger = read(source)
    assert [(c.id, c.name) for c in dataset.categories] == list(enumerate(VOC_CLASSES, start=1))
    [dropped] = entries(ledger, "dropped")
    assert "_background_" in dropped.reason and "id 0" in dropped.reason
    assert [im.id for im in dataset.images] == [0, 1, 2]
    assert [im.file_name for im in dataset.images] == [
        "JPEGImages/2011_000003.jpg", "JPEGImages/2011_000025.jpg", "JPEGImages/2011_000006.jpg"]
    annotations = [a for im in dataset.images for a in im.annotations]
    assert len(annotations) == 12
    parts = {a.id: len(a.polygons) for a in annotations}
    assert parts[1] == 2 and parts[11] == 4
    assert sorted(parts.values()) == [1] * 10 + [2, 4]

    result = convert(source, tmp_path / "coco.json", to="coco")
    coco = load(tmp_path / "coco.json")
    # file names with a sub-folder resolve against the annotation file's folder
    assert [im.path for im in result.dataset.images] == [
        formats / LABELME_COCO / name for name in (
            "JPEGImages/2011_000003.jpg", "JPEGImages/2011_000025.jpg", "JPEGImages/2011_000006.jpg")]
    assert [(im["id"], im["width"], im["height"]) for im in coco["images"]] == [
        (0, 500, 338), (1, 500, 375), (2, 500, 375)]
    assert [a["id"] for a in coco["annotations"]] == list(range(12))
    assert [a["category_id"] for a in coco["annotations"]] == [15, 15, 5, 6, 6, 7, 15, 15, 15, 9, 15, 18]
    assert {c["id"] for c in coco["categories"]} == set(range(1, 21))
    four = next(a for a in coco["annotations"] if a["id"] == 11)
    assert len(four["segmentation"]) == 4
    api = COCO(str(tmp_path / "coco.json"))
    for ann in api.loadAnns(api.getAnnIds()):
        assert int(api.annToMask(ann).sum()) == ann["area"] > 0


def test_labelme_coco_to_via_splits_parts(formats, tmp_path):
    result = convert(formats / LABELME_COCO / "annotations.json", tmp_path / "via.json", to="via")
    metadata = load(tmp_path / "via.json")["_via_img_metadata"]
    assert [len(e["regions"]) for e in metadata.values()] == [4, 3, 9]  # 12 objects, 2 + 4 parts
    assert result.objects_written == 16
    changed = [e for e in result.ledger.entries if e.action == "changed" and "multi-part" in e.reason]
    assert sorted(e.item for e in changed) == ["annotation id 1", "annotation id 11"]
    assert [("2 parts" in e.reason, "4 parts" in e.reason) for e in sorted(changed, key=lambda e: e.item)] == [
        (True, False), (False, True)]
    assert all(r["shape_attributes"]["name"] == "polygon" for e in metadata.values() for r in e["regions"])


# --------------------------------------------------------------------------------------------
# CVAT COCO 1.0 export
# --------------------------------------------------------------------------------------------

def test_cvat_coco_export(formats, tmp_path):
    base = formats / ITEAM_COCO
    source = base / "annotations/instances_default.json"
    result = convert(source, tmp_path / "coco.json", to="coco", images_dir=base / "images")
    coco = load(tmp_path / "coco.json")
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [
        (1, "rectangle"), (2, "triangle"), (3, "circle"), (4, "ellipse"), (5, "line"), (6, "crack"),
        (7, "bird"), (8, "strawberry")]  # the 3 unused ones too
    assert [(im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        ("birds.jpg", 1000, 666), ("crack.jpeg", 1280, 720), ("shapes.jpg", 588, 643),
        ("strawberry.jpg", 800, 800)]
    annotations = coco["annotations"]
    assert len(annotations) == 23
    box_only = [a for a in annotations if a["segmentation"] == []]
    rles = [a for a in annotations if isinstance(a["segmentation"], dict)]
    polygons = [a for a in annotations if isinstance(a["segmentation"], list) and a["segmentation"]]
    assert (len(polygons), len(box_only), len(rles)) == (3, 18, 2)
    assert all(a["attributes"]["rotation"] == 0.0 for a in box_only)
    assert all("occluded" in a["attributes"] for a in annotations)
    assert sorted(a["area"] for a in rles) == [21359, 26287]
    assert all(a["iscrowd"] == 1 and a["segmentation"]["size"] == [643, 588] for a in rles)
    assert Counter(a["category_id"] for a in annotations) == {8: 17, 7: 2, 4: 2, 2: 1, 1: 1}
    original = {a["id"]: a for a in load(source)["annotations"]}
    for a in box_only:  # boxes inside the image are written as they were
        assert a["bbox"] == pytest.approx(original[a["id"]]["bbox"])
    assert not result.ledger.lossy


# --------------------------------------------------------------------------------------------
# Other COCO files
# --------------------------------------------------------------------------------------------

def test_coco_2017_snippet_without_images(formats, tmp_path):
    source = formats / COCO_SNIPPET
    with pytest.raises(SegcliError, match="--images"):
        convert(source, tmp_path / "coco.json", to="coco")
    result = convert(source, tmp_path / "via.json", to="via")
    assert {(c.id, c.name) for c in result.dataset.categories} == {
        (1, "person"), (44, "bottle"), (64, "potted plant")}
    assert [im.id for im in result.dataset.images] == [397133, 37777, 87038]
    metadata = load(tmp_path / "via.json")["_via_img_metadata"]
    original = load(source)
    assert [e["filename"] for e in metadata.values()] == [
        "000000397133.jpg", "000000037777.jpg", "000000087038.jpg"]
    assert [[r["region_attributes"] for r in e["regions"]] for e in metadata.values()] == [
        [{"category": "bottle"}], [{"category": "potted plant"}], [{"category": "person"}]]
    segmentation = {a["image_id"]: a["segmentation"][0] for a in original["annotations"]}
    for image, entry in zip(original["images"], metadata.values()):
        [region] = entry["regions"]
        assert region["shape_attributes"]["all_points_x"] == segmentation[image["id"]][0::2]
        assert region["shape_attributes"]["all_points_y"] == segmentation[image["id"]][1::2]


def test_nsy_sample_coco_info_list_and_no_area(formats, tmp_path):
    base = formats / NSY
    result = convert(base / "jsons/sample_coco.json", tmp_path / "coco.json", to="coco",
                     images_dir=base / "images")
    coco = load(tmp_path / "coco.json")
    assert isinstance(coco["info"], dict)
    assert [(im["id"], im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        (0, "sample0001.jpg", 512, 384)]
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [
        (1, "Bottles"), (2, "Cans"), (3, "PET bottles"), (4, "Papers"), (5, "Plastic"), (6, "Plastic Bag")]
    assert [a["category_id"] for a in coco["annotations"]] == [4, 4, 3, 5]
    assert [a["id"] for a in coco["annotations"]] == [0, 1, 2, 3]
    assert all(isinstance(a["area"], int) and a["area"] > 0 for a in coco["annotations"])
    assert result.objects_written == 4

    # its VIA twin (sample.json) gives the same objects, areas and classes
    twin = convert(base / "jsons/sample.json", tmp_path / "twin.json", to="coco",
                   images_dir=base / "images", label_attr="name")
    twin_coco = load(tmp_path / "twin.json")
    assert [a["area"] for a in twin_coco["annotations"]] == [a["area"] for a in coco["annotations"]]
    assert [a["bbox"] for a in twin_coco["annotations"]] == [a["bbox"] for a in coco["annotations"]]
    twin_names = {c["id"]: c["name"] for c in twin_coco["categories"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [twin_names[a["category_id"]] for a in twin_coco["annotations"]] == [
        names[a["category_id"]] for a in coco["annotations"]] == ["Papers", "Papers", "PET bottles", "Plastic"]
    assert twin.dataset.images[0].size_bytes == 19118


def test_nsy_tutorial_project_with_no_images(formats, tmp_path):
    result = convert(formats / NSY / "jsons/tutorial_project.json", tmp_path / "via.json", to="via")
    assert result.dataset.source_format == "via2-project"
    assert (result.images_written, result.objects_written) == (0, 0)
    out = load(tmp_path / "via.json")
    assert out["_via_img_metadata"] == {}
    # the attribute definitions are kept
    original = load(formats / NSY / "jsons/tutorial_project.json")["_via_attributes"]
    assert out["_via_attributes"]["region"]["name"] == original["region"]["name"]


def test_roboflow_layout_bbox_only(formats, tmp_path):
    train = convert(formats / ROBOFLOW / "train/_annotations.coco.json", tmp_path / "train.json", to="coco")
    coco = load(tmp_path / "train.json")
    assert [im.path.name for im in train.dataset.images] == ["train_001.jpg", "train_002.jpg"]
    assert [(im["width"], im["height"]) for im in coco["images"]] == [(10, 5), (10, 5)]
    assert [(a["id"], a["segmentation"], a["bbox"], a["area"]) for a in coco["annotations"]] == [
        (0, [], [2.0, 1.0, 3.0, 1.0], 3.0), (1, [], [0.0, 0.0, 2.0, 4.0], 8.0)]

    convert(formats / ROBOFLOW / "val/_annotations.coco.json", tmp_path / "val.json", to="coco")
    annotations = load(tmp_path / "val.json")["annotations"]
    assert [(a["id"], a["iscrowd"], a["segmentation"], a["bbox"]) for a in annotations] == [
        (1, 0, [], [0.0, 0.0, 1.0, 2.0]), (2, 1, [], [0.0, 0.0, 9.0, 1.0])]


def test_cocoapi_results_file_is_refused(formats, tmp_path):
    with pytest.raises(SegcliError, match="results") as info:
        convert(formats / RESULTS, tmp_path / "out.json", to="via")
    assert info.value.exit_code == 2
    assert not (tmp_path / "out.json").exists()
    with pytest.raises(SegcliError, match="results"):
        dataset_stats(formats / RESULTS)


def test_sa1b_per_image_file_is_refused(formats, tmp_path):
    with pytest.raises(SegcliError, match="SA-1B"):
        convert(formats / SA1B, tmp_path / "out.json", to="coco")


# --------------------------------------------------------------------------------------------
# labelme VOC label maps
# --------------------------------------------------------------------------------------------

def test_labelme_voc_class_masks_read_as_instances(formats, tmp_path):
    folder = formats / LABELME_VOC / "SegmentationClass"
    dataset, ledger = read(folder)
    assert dataset.source_format == "masks"
    assert not ledger.errors
    assert [(c.id, c.name) for c in dataset.categories] == list(enumerate(VOC_CLASSES, start=1))
    assert [im.file_name for im in dataset.images] == [
        "2011_000003.png", "2011_000006.png", "2011_000025.png"]
    assert [(im.width, im.height) for im in dataset.images] == [(500, 338), (500, 375), (500, 375)]
    # connected components (8-connectivity) of each class; 255 (void) is no object
    assert [Counter(a.category for a in im.annotations) for im in dataset.images] == [
        {"person": 3, "bottle": 1}, {"chair": 1, "person": 3, "sofa": 4}, {"bus": 1, "car": 1}]
    for image in dataset.images:
        labels = np.asarray(Image.open(folder / image.file_name))
        for value in np.unique(labels):
            if value in (0, 255):
                continue
            union = np.zeros(labels.shape, dtype=bool)
            for annotation in image.annotations:
                if annotation.category == VOC_CLASSES[value - 1]:
                    mask = mask_utils.decode(annotation.rle).astype(bool)
                    assert not (union & mask).any()
                    union |= mask
            assert (union == (labels == value)).all()
        covered = sum(int(mask_utils.area(a.rle)) for a in image.annotations)
        assert covered == int(((labels != 0) & (labels != 255)).sum())
    person = sorted(int(mask_utils.area(a.rle)) for a in dataset.images[0].annotations
                    if a.category == "person")
    assert person == [43, 15662, 17175]  # 32880 person pixels in 2011_000003


def test_labelme_voc_masks_to_coco_with_images(formats, tmp_path):
    base = formats / LABELME_VOC
    result = convert(base / "SegmentationClass", tmp_path / "coco.json", to="coco",
                     images_dir=base / "JPEGImages")
    coco = load(tmp_path / "coco.json")
    assert [(im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        ("2011_000003.jpg", 500, 338), ("2011_000006.jpg", 500, 375), ("2011_000025.jpg", 500, 375)]
    assert len(coco["annotations"]) == 14
    assert [c["name"] for c in coco["categories"]] == VOC_CLASSES
    by_id = {c["id"]: c["name"] for c in coco["categories"]}
    assert sum(a["area"] for a in coco["annotations"] if by_id[a["category_id"]] == "chair") == 44403
    assert sum(a["area"] for a in coco["annotations"] if by_id[a["category_id"]] == "sofa") == 14002
    assert not result.ledger.errors
    api = COCO(str(tmp_path / "coco.json"))
    for ann in api.loadAnns(api.getAnnIds()):
        assert int(api.annToMask(ann).sum()) == ann["area"]


def test_labelme_voc_masks_round_trip_keeps_class_pixels(formats, tmp_path):
    folder = formats / LABELME_VOC / "SegmentationClass"
    convert(folder, tmp_path / "masks", to="masks")
    assert (tmp_path / "masks/classes.txt").read_text(encoding="utf-8").splitlines() == [
        "_background_"] + VOC_CLASSES
    for name in ("2011_000003.png", "2011_000006.png", "2011_000025.png"):
        source = np.asarray(Image.open(folder / name)).astype(int)
        written = np.asarray(Image.open(tmp_path / "masks" / name)).astype(int)
        assert written.shape == source.shape
        objects = (source != 0) & (source != 255)
        assert (written[objects] == source[objects]).all()
        assert (written[source == 0] == 0).all()


# --------------------------------------------------------------------------------------------
# drinks (VIA 2 projects, dropdown `Name` with option ids "1"/"2"/"3")
# --------------------------------------------------------------------------------------------

def test_drinks_subset_to_coco(drinks, tmp_path):
    result = convert(drinks / "segmentation_train_subset.json", tmp_path / "coco.json", to="coco")
    coco = load(tmp_path / "coco.json")
    assert result.dataset.source_format == "via2-project"
    assert result.dataset.label_attr == "Name"
    assert coco["categories"] == [{"id": 1, "name": "Water", "supercategory": ""},
                                  {"id": 2, "name": "Soda", "supercategory": ""},
                                  {"id": 3, "name": "Juice", "supercategory": ""}]
    assert len(coco["images"]) == 184 and len(coco["annotations"]) == 515
    assert Counter(a["category_id"] for a in coco["annotations"]) == {1: 172, 2: 170, 3: 173}
    assert all((im["width"], im["height"]) == (640, 480) for im in coco["images"])
    empty = {im["file_name"] for im in coco["images"]} - {
        im["file_name"] for im in coco["images"] for a in coco["annotations"] if a["image_id"] == im["id"]}
    assert empty == {"0000352.jpg", "0000552.jpg", "0000990.jpg"}
    assert "Name" not in coco["annotations"][0]["attributes"]  # it became the category
    assert not result.ledger.lossy and not entries(result.ledger, "missing")
    assert not entries(result.ledger, "matched")  # every file found by its own name


def test_drinks_subset_via_coco_via_round_trip_is_identical(drinks, tmp_path):
    source = drinks / "segmentation_train_subset.json"
    convert(source, tmp_path / "coco.json", to="coco")
    back = convert(tmp_path / "coco.json", tmp_path / "via.json", to="via")
    assert not back.ledger.lossy
    original = load(source)
    out = load(tmp_path / "via.json")
    assert out["_via_attributes"] == original["_via_attributes"]
    assert out["_via_settings"]["project"]["name"] == "via_1000"
    assert list(out["_via_img_metadata"]) == list(original["_via_img_metadata"])
    for key, entry in original["_via_img_metadata"].items():
        written = out["_via_img_metadata"][key]
        assert written["size"] == entry["size"]
        assert [r["shape_attributes"] for r in written["regions"]] == [
            r["shape_attributes"] for r in entry["regions"]]
        assert [r["region_attributes"] for r in written["regions"]] == [
            r["region_attributes"] for r in entry["regions"]]
    names = Counter(r["region_attributes"]["Name"] for e in out["_via_img_metadata"].values()
                    for r in e["regions"])
    assert names == {"1": 172, "2": 170, "3": 173}


def test_drinks_full_train_skips_the_816_missing_images(drinks, tmp_path):
    result = convert(drinks / "segmentation_train.json", tmp_path / "coco.json", to="coco")
    coco = load(tmp_path / "coco.json")
    assert len(result.dataset.images) == 1000
    assert result.dataset.num_annotations == 2792
    missing = entries(result.ledger, "missing")
    skipped = entries(result.ledger, "skipped")
    assert len(missing) == 816 and len(skipped) == 816
    assert {e.image for e in missing} == {e.image for e in skipped}
    assert "0000001.jpg" in {e.image for e in skipped}
    # 0000427.jpg is absent; 0000744.jpg (present, and in the same file) has the same byte size,
    # but it is another image and must not stand in for it
    assert "0000427.jpg" in {e.image for e in skipped}
    assert not entries(result.ledger, "matched")
    assert (result.images_written, result.objects_written) == (184, 515)
    assert len(coco["images"]) == 184 and len(coco["annotations"]) == 515
    for image in result.dataset.images:
        if image.path is not None:
            assert image.path.name == image.file_name


def test_drinks_full_train_stats_list_missing_images(drinks):
    stats = dataset_stats(drinks / "segmentation_train.json")
    assert stats["format"] == "via2-project" and stats["label_attr"] == "Name"
    assert (stats["images"], stats["objects"], stats["empty_images"]) == (1000, 2792, 3)
    assert [(c["id"], c["name"], c["objects"]) for c in stats["categories"]] == [
        (1, "Water", 926), (2, "Soda", 928), (3, "Juice", 938)]
    assert stats["shapes"] == {"polygon": 2792}
    missing = [p for p in stats["problems"] if p["action"] == "missing"]
    assert stats["images_found"] == 184
    assert len(missing) == 816
    assert {"0000001.jpg", "0000427.jpg", "0000999.jpg"} <= {p["image"] for p in missing}


def test_drinks_test_sets(drinks, tmp_path):
    result = convert(drinks / "segmentation_test.json", tmp_path / "seg.json", to="coco")
    coco = load(tmp_path / "seg.json")
    assert (len(coco["images"]), len(coco["annotations"])) == (51, 146)
    assert Counter(a["category_id"] for a in coco["annotations"]) == {1: 33, 2: 62, 3: 51}
    assert not result.ledger.lossy


def test_drinks_labels_test_rects_match_the_csv(drinks, tmp_path):
    result = convert(drinks / "labels_test.json", tmp_path / "coco.json", to="coco")
    coco = load(tmp_path / "coco.json")
    assert result.dataset.label_attr == "name"
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [
        (1, "Summit Drinking Water 500ml"), (2, "Coca-Cola 330ml"), (3, "Del Monte 100% Pineapple Juice 240ml")]
    assert (len(coco["images"]), len(coco["annotations"])) == (51, 146)
    assert Counter(shape_of(a) for a in coco["annotations"]) == {"rect": 146}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert a["area"] == w * h
    # the ch. 11 CSV (columns xmin,xmax,ymin,ymax,class_id) holds the same boxes and classes
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    from_json = Counter((names[a["image_id"]], a["bbox"][0], a["bbox"][0] + a["bbox"][2], a["bbox"][1],
                         a["bbox"][1] + a["bbox"][3], a["category_id"]) for a in coco["annotations"])
    with open(drinks / "labels_test.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    from_csv = Counter((r["frame"], float(r["xmin"]), float(r["xmax"]), float(r["ymin"]), float(r["ymax"]),
                        int(r["class_id"])) for r in rows)
    assert len(rows) == 146
    assert from_json == from_csv
    first = coco["annotations"][0]
    assert (names[first["image_id"]], first["bbox"], first["area"]) == (
        "0010000.jpg", [174.0, 174.0, 85.0, 200.0], 17000)


def test_drinks_round_trip_keeps_integer_coordinates_as_integers(drinks, tmp_path):
    """VIA stores pixel coordinates as JSON integers; COCO -> VIA must not turn 116 into 116.0
    (the VIA file would differ from the original in every polygon)."""
    source = drinks / "segmentation_train_subset.json"
    convert(source, tmp_path / "coco.json", to="coco")
    convert(tmp_path / "coco.json", tmp_path / "via.json", to="via")
    original = load(source)["_via_img_metadata"]
    written = load(tmp_path / "via.json")["_via_img_metadata"]
    key = next(iter(original))
    assert all(type(v) is int for r in original[key]["regions"]
               for v in r["shape_attributes"]["all_points_x"])
    assert json.dumps(written[key]["regions"]) == json.dumps(original[key]["regions"])

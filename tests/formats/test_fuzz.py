"""Fuzzing every format reader with hypothesis: whatever a file holds, reading it through the public
entry points (``detect_format`` + ``read_annotations``) returns a Dataset or raises SegcliError,
never anything else, and never hangs. Files are random JSON (random keys and the keys the formats
use, numbers up to NaN, inf and 1e308), JSON shaped like each format with random values in every
slot, random CSV text and random bytes. What reads cleanly is also written (COCO, VIA, label
maps) on a 64x48 image, since writers are where shapes are rasterised.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from segcli.errors import SegcliError
from segcli.formats import coco, geometry, masks, via
from segcli.formats.io import detect_format, read_annotations
from segcli.ledger import Ledger

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

KEYS = ["_via_img_metadata", "_via_attributes", "_via_settings", "regions", "shape_attributes",
        "region_attributes", "file_attributes", "filename", "size", "name", "all_points_x", "all_points_y",
        "x", "y", "width", "height", "cx", "cy", "r", "rx", "ry", "theta", "images", "annotations",
        "categories", "segmentation", "bbox", "id", "image_id", "category_id", "file_name", "iscrowd",
        "counts", "area", "score", "attributes", "via_shape", "via_nonarea_regions", "segcli", "project",
        "file", "view", "metadata", "attribute", "vid", "xy", "av", "z", "fid_list", "fname", "type",
        "options", "region", "core", "default_filepath", "label_attr", "via_attributes", "aname"]

numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 1e308, -1e308, 5e-324, 10**400, 2**31, 2**64, 0.5, 64, 48]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers,
                    st.text(max_size=12), st.sampled_from(KEYS + ["polygon", "rect", "circle", "ellipse",
                                                                  "point", "polyline", "a.png", "1", ""]))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=6)), max_leaves=40)

# format-shaped documents: the right skeleton with random values in every slot
coordinates = st.one_of(st.lists(st.one_of(st.integers(-5, 80), st.floats(-5, 80)), min_size=0, max_size=12),
                        json_values)
shape = st.one_of(
    st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["polygon", "polyline"]), json_values),
                           "all_points_x": coordinates,
                           "all_points_y": coordinates}),
    st.fixed_dictionaries({"name": st.just("rect"), "x": numbers, "y": numbers, "width": numbers,
                           "height": numbers}),
    st.fixed_dictionaries({"name": st.sampled_from(["circle", "ellipse", "point"]), "cx": numbers,
                           "cy": numbers, "r": numbers, "rx": numbers, "ry": numbers},
                          optional={"theta": json_values}),
    json_values)
region = st.one_of(st.fixed_dictionaries({"shape_attributes": shape, "region_attributes": st.one_of(
    st.dictionaries(keys, json_values, max_size=3), json_values)}), json_values)
via_entry = st.fixed_dictionaries({"filename": st.one_of(st.just("a.png"), json_values),
                                   "regions": st.one_of(st.lists(region, max_size=4), json_values)},
                                  optional={"size": json_values, "file_attributes": json_values})
via_export = st.dictionaries(st.text(max_size=6), via_entry, min_size=1, max_size=3)
via_project = st.fixed_dictionaries({"_via_img_metadata": st.one_of(via_export, json_values)},
                                    optional={"_via_attributes": json_values, "_via_settings": json_values})
rle = st.fixed_dictionaries({"size": st.one_of(st.just([48, 64]), json_values),
                             "counts": st.one_of(st.text(max_size=20), st.lists(st.integers(-2, 3100), max_size=5),
                                                 json_values)})
coco_annotation = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 3), json_values), "image_id": st.one_of(st.just(1), json_values),
     "category_id": st.one_of(st.just(1), json_values),
     "segmentation": st.one_of(st.lists(coordinates, max_size=2), rle, json_values)},
    optional={"bbox": st.one_of(coordinates, json_values), "iscrowd": json_values, "score": json_values,
              "attributes": st.one_of(st.fixed_dictionaries({"via_shape": shape}), json_values)})
coco_document = st.fixed_dictionaries(
    {"images": st.one_of(st.lists(st.fixed_dictionaries(
        {"id": st.one_of(st.just(1), json_values), "file_name": st.one_of(st.just("a.png"), json_values)},
        optional={"width": st.one_of(st.just(64), json_values), "height": st.one_of(st.just(48), json_values),
                  "attributes": json_values}), max_size=2), json_values),
     "annotations": st.one_of(st.lists(coco_annotation, max_size=3), json_values),
     "categories": st.one_of(st.lists(st.fixed_dictionaries(
         {"id": st.one_of(st.integers(-1, 2), json_values), "name": st.one_of(st.just("cell"), json_values)}),
         max_size=2), json_values)},
    optional={"segcli": st.one_of(st.fixed_dictionaries({}, optional={
        "label_attr": json_values, "via_attributes": json_values, "via_settings": json_values,
        "default_category": json_values}), json_values), "info": json_values})
via3_document = st.fixed_dictionaries(
    {"project": json_values,
     "file": st.one_of(st.just({"1": {"fid": "1", "fname": "a.png", "type": 2}}), json_values),
     "view": st.one_of(st.just({"1": {"fid_list": ["1"]}}), json_values),
     "metadata": st.one_of(st.dictionaries(st.text(max_size=4), st.one_of(st.fixed_dictionaries(
         {"vid": st.one_of(st.just("1"), json_values),
          "xy": st.one_of(st.lists(st.one_of(st.integers(0, 9), st.floats(-5, 80)), max_size=9), json_values)},
         optional={"av": json_values, "z": json_values}), json_values), max_size=3), json_values)},
    optional={"attribute": json_values})


def read(path: Path):
    """The public reading path; anything but SegcliError escaping is a bug."""
    ledger = Ledger(str(path))
    try:
        dataset = read_annotations(path, ledger, detected=detect_format(path))
    except SegcliError:
        return None, ledger
    return dataset, ledger


def write_all(dataset, ledger: Ledger, folder: Path) -> None:
    """What read cleanly, written as COCO, VIA and label maps on a 64x48 image."""
    if ledger.errors:
        return
    for image in dataset.images:
        image.width, image.height = 64, 48
    try:
        json.dumps(coco.write_coco(dataset, ledger), allow_nan=False)
        json.dumps(via.write_via_project(dataset, ledger), allow_nan=False)
        masks.write_mask_folder(dataset, folder / f"maps{len(list(folder.iterdir()))}", ledger)
    except SegcliError:
        pass


def dump(data: object) -> str:
    return json.dumps(data, allow_nan=True)  # NaN/Infinity literals too: readers must refuse them


@pytest.fixture
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def read_and_write(path: Path, text: str) -> None:
    """``text`` as a file through the reader and, when it reads, through every writer."""
    path.write_text(text, encoding="utf-8")
    dataset, ledger = read(path)
    if dataset is not None:
        write_all(dataset, ledger, path.parent)


@FUZZ
@given(data=json_values)
def test_random_json(workdir, data):
    read_and_write(workdir / "random.json", dump(data))


@FUZZ
@given(data=st.one_of(via_export, via_project))
def test_via_shaped_json(workdir, data):
    read_and_write(workdir / "via.json", dump(data))


@FUZZ
@given(data=coco_document)
def test_coco_shaped_json(workdir, data):
    read_and_write(workdir / "coco.json", dump(data))


@FUZZ
@given(data=via3_document)
def test_via3_shaped_json(workdir, data):
    read_and_write(workdir / "via3.json", dump(data))


HEADER = "#filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes\n"
csv_field = st.one_of(st.text(max_size=20), json_values.map(dump), shape.map(dump))


@FUZZ
@given(rows=st.lists(st.lists(csv_field, min_size=0, max_size=8), max_size=4), quoted=st.booleans(),
       header=st.sampled_from([HEADER, "filename\n", ""]), tail=st.text(max_size=10))
def test_via_csv(workdir, rows, quoted, header, tail):
    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if quoted else value
    read_and_write(workdir / "via.csv", header + "\n".join(",".join(cell(v) for v in row) for row in rows) + tail)


@FUZZ
@given(text=st.text(max_size=300))
def test_via_csv_random_text(workdir, text):
    path = workdir / "text.csv"
    path.write_text(text, encoding="utf-8", errors="surrogatepass") if text.isprintable() else \
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
    read(path)


@FUZZ
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".json", ".csv"]))
def test_random_bytes(workdir, content, suffix):
    path = workdir / f"bytes{suffix}"
    path.write_bytes(content)
    read(path)


@FUZZ
@given(png=st.binary(max_size=200), classes=st.binary(max_size=40))
def test_label_mask_folder(workdir, png, classes):
    folder = workdir / "maps"
    folder.mkdir(exist_ok=True)
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png)
    (folder / "classes.txt").write_bytes(classes)
    read(folder)


# --------------------------------------------------------------------------- compressed RLE strings


@settings(max_examples=200, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       density=st.floats(0, 1), block=st.integers(1, 16))
def test_rle_string_counts_match_pycocotools(height, width, seed, density, block):
    """The runs decoded from pycocotools' own strings are the mask's runs (column-major)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((math.ceil(height / block), math.ceil(width / block))) < density
    mask = np.kron(coarse, np.ones((block, block), dtype=bool))[:height, :width]
    flat = mask.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0] + runs
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    assert geometry.rle_string_counts(encoded).tolist() == runs
    assert geometry.rle_string_counts(encoded.decode("ascii")).tolist() == runs


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_rle_string_counts_never_raises(text):
    runs = geometry.rle_string_counts(text)
    assert runs is None or (runs >= 0).all()

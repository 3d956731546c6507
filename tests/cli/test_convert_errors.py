"""CLI error handling of ``segcli convert`` (and a little of ``segcli stats``).

For every bad input a user must get one error line on stderr that names the file (and, where
there is one, the item), exit code 2 (1 for ``--strict``), no traceback, and no output file,
report or temporary entry left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from segcli import __version__
from segcli.cli import app

WIDTH, HEIGHT = 64, 48


# --------------------------------------------------------------------------- helpers


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_image(folder: Path, name: str = "a.png", width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A tiny grey PNG with a lighter square, width x height."""
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    image[10:30, 10:30] = 200
    path = folder / name
    assert cv2.imwrite(str(path), image)
    return path


def polygon(xs: list, ys: list) -> dict:
    return {"name": "polygon", "all_points_x": xs, "all_points_y": ys}


def region(shape: object, name: str = "cell") -> dict:
    return {"shape_attributes": shape, "region_attributes": {"name": name}}


GOOD_SHAPE = polygon([10, 30, 30, 10], [10, 10, 30, 30])


def via_export(regions: object, filename: str = "a.png") -> dict:
    """A VIA 2 JSON export (what 'Annotation > Export as JSON' writes) with one image."""
    return {f"{filename}1234": {"filename": filename, "size": 1234, "regions": regions,
                                "file_attributes": {}}}


def coco(images: list | None = None, annotations: list | None = None,
         categories: list | None = None) -> dict:
    """A COCO instances dict; by default one 64x48 image a.png with one polygon of class 'cell'."""
    return {
        "images": images if images is not None else [
            {"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT}],
        "annotations": annotations if annotations is not None else [coco_ann()],
        "categories": categories if categories is not None else [{"id": 1, "name": "cell"}],
    }


def coco_ann(id: object = 1, image_id: object = 1, category_id: object = 1, **fields) -> dict:
    ann = {"id": id, "image_id": image_id, "category_id": category_id,
           "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "area": 400.0,
           "bbox": [10, 10, 20, 20], "iscrowd": 0}
    ann.update(fields)
    return ann


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def leftovers(root: Path) -> list[str]:
    """Temporary entries (names starting with '.') anywhere under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def assert_clean_failure(result, root: Path, output: Path, names: list[str], exit_code: int = 2,
                         one_line: bool = True) -> str:
    """Exit code, no traceback, the message names ``names``, nothing written, no temp entries."""
    err = result.stderr
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for name in names:
        assert name in err, f"{name!r} not in error message {err!r}"
    if one_line:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one error line, got {err!r}"
        assert lines[0].startswith("error:"), lines[0]
    assert not output.exists(), f"{output.name} was written"
    report = output.with_name(output.name[:-5] + ".report.json") if output.name.endswith(".json") else None
    if report is not None:
        assert not report.exists(), f"{report.name} was written"
    assert leftovers(root) == [], f"temporary entries left: {leftovers(root)}"
    return err


# --------------------------------------------------------------------------- unreadable JSON


def _truncated() -> bytes:
    text = json.dumps(via_export([region(GOOD_SHAPE)]))
    return text[: len(text) // 2].encode()


def _non_utf8() -> bytes:
    # a COCO file saved as Latin-1: "café.png" with a single 0xE9 byte
    return json.dumps(coco(images=[{"id": 1, "file_name": "caf\u00e9.png", "width": WIDTH,
                                    "height": HEIGHT}]), ensure_ascii=False).encode("latin-1")


def _binary() -> bytes:
    ok, png = cv2.imencode(".png", np.zeros((8, 8), dtype=np.uint8))
    assert ok
    return png.tobytes()


def _nan_literal() -> bytes:
    return (b'{"images": [{"id": 1, "file_name": "a.png", "width": NaN, "height": 48}],'
            b' "annotations": [], "categories": []}')


UNREADABLE = {
    "malformed": (b'{"a.png1234": {"filename": "a.png",, "regions": []}}', ["invalid JSON"]),
    "truncated": (_truncated(), ["invalid JSON"]),
    "empty": (b"", ["empty"]),
    "whitespace-only": (b"  \n\t\n", ["invalid JSON"]),
    "binary-garbage": (_binary(), []),
    "non-utf8": (_non_utf8(), ["UTF-8"]),
    "nan-literal": (_nan_literal(), ["NaN"]),
    "infinity-literal": (b'{"images": [], "annotations": [], "categories": [{"id": Infinity, "name": "x"}]}',
                         ["Infinity"]),
    "deeply-nested": (b"[" * 100_000 + b"]" * 100_000, ["nested"]),
    "json-list": (b'[{"filename": "a.png", "regions": []}]', ["list"]),
    "empty-list": (b"[]", ["unknown format"]),
    "empty-object": (b"{}", ["empty"]),
    "json-string": (b'"hello"', ["unknown format"]),
    "unknown-format": (b'{"foo": 1, "bar": [1, 2]}', ["unknown format"]),
}


@pytest.mark.parametrize("case", list(UNREADABLE), ids=list(UNREADABLE))
def test_unreadable_or_unknown_json(tmp_path, case):
    content, fragments = UNREADABLE[case]
    write_image(tmp_path)
    src = tmp_path / "in.json"
    src.write_bytes(content)
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert_clean_failure(result, tmp_path, out, ["in.json", *fragments])


# --------------------------------------------------------------------------- invalid VIA content


def _via_with(shape: object) -> dict:
    return via_export([region(GOOD_SHAPE), region(shape)])


VIA_BAD = {
    "regions-is-string": (via_export("oops"), ["image 'a.png'", "regions"]),
    "region-not-object": (via_export([region(GOOD_SHAPE), 5]), ["image 'a.png'", "region 1"]),
    "shape-attributes-missing": (via_export([{"region_attributes": {}}]), ["image 'a.png'", "region 0"]),
    "all-points-x-string": (_via_with({"name": "polygon", "all_points_x": "10,30,30",
                                       "all_points_y": [10, 10, 30]}),
                            ["image 'a.png'", "region 1", "all_points_x"]),
    "xy-lengths-differ": (_via_with(polygon([10, 30, 30, 10], [10, 10, 30])),
                          ["image 'a.png'", "region 1", "all_points_x", "all_points_y"]),
    "coordinate-1e308": (_via_with(polygon([10, 1e308, 30], [10, 10, 30])),
                         ["image 'a.png'", "region 1", "1e+308"]),
    # 1e400 would read as inf, which no JSON output can hold: refused when the file is read
    "coordinate-1e400-inf": (_via_with(polygon([10, 30, 30], [10, 10, "__INF__"])),
                             ["1e400 is beyond float range", "line 1 column"]),
    "coordinate-string": (_via_with(polygon([10, "30", 30], [10, 10, 30])),
                          ["image 'a.png'", "region 1", "'30'"]),
    "coordinate-null": (_via_with(polygon([10, None, 30], [10, 10, 30])),
                        ["image 'a.png'", "region 1", "None"]),
    "coordinate-bool": (_via_with({"name": "rect", "x": True, "y": 1, "width": 5, "height": 5}),
                        ["image 'a.png'", "region 1"]),
    "negative-radius": (_via_with({"name": "circle", "cx": 20, "cy": 20, "r": -5}),
                        ["image 'a.png'", "region 1", "negative r"]),
    "negative-rect-width": (_via_with({"name": "rect", "x": 1, "y": 1, "width": -5, "height": 5}),
                            ["image 'a.png'", "region 1", "negative width"]),
    "unknown-shape": (_via_with({"name": "triangle", "cx": 20, "cy": 20}),
                      ["image 'a.png'", "region 1", "triangle"]),
    "shape-without-name": (_via_with({"cx": 20, "cy": 20, "r": 3}), ["image 'a.png'", "region 1"]),
    "rect-missing-key": (_via_with({"name": "rect", "x": 1, "y": 1, "width": 5}),
                         ["image 'a.png'", "region 1", "height"]),
    "missing-filename": ({"k1": {"filename": "", "regions": []}}, ["key 'k1'"]),
    "metadata-not-object": ({"_via_img_metadata": [1, 2], "_via_attributes": {"region": {}, "file": {}}},
                            ["_via_img_metadata"]),
}


def _dump_via(data: dict) -> str:
    # json cannot emit 1e400; write a literal that Python's json reads back as inf
    return json.dumps(data).replace('"__INF__"', "1e400")


@pytest.mark.parametrize("case", list(VIA_BAD), ids=list(VIA_BAD))
def test_invalid_via_content(tmp_path, case):
    data, fragments = VIA_BAD[case]
    write_image(tmp_path)
    src = tmp_path / "via.json"
    src.write_text(_dump_via(data), encoding="utf-8")
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert_clean_failure(result, tmp_path, out, ["via.json", *fragments])


def test_nan_coordinate_in_via_polygon(tmp_path):
    """JSON has no NaN; a NaN literal in a coordinate list is refused when the file is read."""
    write_image(tmp_path)
    src = tmp_path / "via.json"
    src.write_text(json.dumps(via_export([region(polygon([10, 30, 30], [10, 10, 30]))]))
                   .replace("[10, 10, 30]", "[10, NaN, 30]"), encoding="utf-8")
    assert "NaN" in src.read_text()
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert_clean_failure(result, tmp_path, out, ["via.json", "NaN"])


# --------------------------------------------------------------------------- invalid COCO content


def _coco_without(key: str) -> dict:
    data = coco()
    del data[key]
    return data


def _two_images(second_id: int) -> dict:
    return coco(images=[{"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT},
                        {"id": second_id, "file_name": "b.png", "width": WIDTH, "height": HEIGHT}])


COCO_BAD = {
    "missing-categories": (_coco_without("categories"), ["categories"]),
    "categories-not-list": (dict(coco(), categories={"1": "cell"}), ["categories"]),
    "images-not-list": (dict(coco(), images="a.png"), ["images"]),
    "category-id-string": (coco(categories=[{"id": "1", "name": "cell"}]), ["category 0"]),
    "bbox-three-numbers": (coco(annotations=[coco_ann(segmentation=[], bbox=[1, 2, 3])]),
                           ["image 'a.png'", "annotation id 1", "bbox must be [x, y, width, height]",
                            "[1, 2, 3]"]),
    "bbox-string": (coco(annotations=[coco_ann(segmentation=[], bbox="1,2,3,4")]),
                    ["image 'a.png'", "annotation id 1", "bbox"]),
    "segmentation-odd-length": (coco(annotations=[coco_ann(segmentation=[[10, 10, 30, 10, 30]])]),
                                ["image 'a.png'", "annotation id 1", "odd"]),
    "segmentation-string-coordinate": (coco(annotations=[coco_ann(segmentation=[[10, "10", 30, 10, 30, 30]])]),
                                       ["image 'a.png'", "annotation id 1", "'10'"]),
    "segmentation-1e308": (coco(annotations=[coco_ann(segmentation=[[10, 10, 1e308, 10, 30, 30]])]),
                           ["image 'a.png'", "annotation id 1", "1e+308"]),
    "segmentation-not-list": (coco(annotations=[coco_ann(segmentation="polygon")]),
                              ["image 'a.png'", "annotation id 1", "segmentation"]),
    "unknown-category-id": (coco(annotations=[coco_ann(category_id=99)]),
                            ["image 'a.png'", "annotation id 1", "99"]),
    "unknown-image-id": (coco(annotations=[coco_ann(image_id=99)]), ["annotation id 1", "99"]),
    "duplicate-image-id": (_two_images(1), ["image 'b.png'", "image 1", "duplicate image id 1"]),
    "duplicate-annotation-id": (coco(annotations=[coco_ann(id=7), coco_ann(id=7)]),
                                ["image 'a.png'", "annotation id 7", "duplicate annotation id 7"]),
    "duplicate-category-id": (coco(categories=[{"id": 1, "name": "cell"}, {"id": 1, "name": "nucleus"}]),
                              ["category 1", "duplicate category id 1"]),
    "duplicate-category-name": (coco(categories=[{"id": 1, "name": "cell"}, {"id": 2, "name": "cell"}]),
                                ["category 1", "cell"]),
    "rle-size-mismatch": (coco(annotations=[coco_ann(segmentation={"size": [10, 10], "counts": [100]})]),
                          ["image 'a.png'", "annotation id 1", "RLE"]),
    "rle-counts-wrong-sum": (coco(annotations=[coco_ann(segmentation={"size": [HEIGHT, WIDTH], "counts": [5, 5]})]),
                             ["image 'a.png'", "annotation id 1", "RLE"]),
    "rle-corrupt-string": (coco(annotations=[coco_ann(segmentation={"size": [HEIGHT, WIDTH], "counts": "\u00ff\u00ff"})]),
                           ["image 'a.png'", "annotation id 1"]),
    "image-size-not-int": (coco(images=[{"id": 1, "file_name": "a.png", "width": "64", "height": 48}]),
                           ["image 'a.png'", "image 0", "width/height"]),
    "annotation-not-object": (coco(annotations=[coco_ann(), "x"]), ["annotation 1"]),
    "image-id-list": (coco(annotations=[coco_ann(image_id=[1])]), ["annotation id 1", "image_id"]),
    "category-id-list": (coco(annotations=[coco_ann(category_id=[1])]),
                         ["image 'a.png'", "annotation id 1", "category_id"]),
    "category-id-object": (coco(annotations=[coco_ann(category_id={"id": 1})]),
                           ["image 'a.png'", "annotation id 1", "category_id"]),
}


@pytest.mark.parametrize("to", ["via", "coco"])
@pytest.mark.parametrize("case", list(COCO_BAD), ids=list(COCO_BAD))
def test_invalid_coco_content(tmp_path, case, to):
    data, fragments = COCO_BAD[case]
    write_image(tmp_path)
    write_image(tmp_path, "b.png")
    src = write_json(tmp_path / "coco.json", data)
    out = tmp_path / "out.json"
    result = run("convert", src, out, "--to", to)
    assert_clean_failure(result, tmp_path, out, ["coco.json", *fragments])


def test_invalid_coco_to_masks_leaves_no_folder(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "coco.json", coco(annotations=[coco_ann(category_id=99)]))
    out = tmp_path / "masks"
    result = run("convert", src, out, "--to", "masks")
    assert_clean_failure(result, tmp_path, out, ["coco.json", "annotation id 1", "99"])


@pytest.mark.parametrize("to", ["coco", "masks"])
def test_rle_size_differs_from_image_file(tmp_path, to):
    """COCO without width/height: the size comes from the 64x48 file, the RLE says 10x10."""
    write_image(tmp_path)
    src = write_json(tmp_path / "coco.json", coco(
        images=[{"id": 1, "file_name": "a.png"}],
        annotations=[coco_ann(segmentation={"size": [10, 10], "counts": [0, 100]})]))
    out = tmp_path / ("out.json" if to == "coco" else "labels")
    result = run("convert", src, out, "--to", to)
    assert_clean_failure(result, tmp_path, out, ["coco.json", "image 'a.png'", "annotation id 1", "RLE"])


def test_via_csv_not_utf8(tmp_path):
    write_image(tmp_path)
    src = tmp_path / "via.csv"
    src.write_bytes("#filename,file_size,file_attributes,region_count,region_id,"
                    "region_shape_attributes,region_attributes\n"
                    "caf\u00e9.png,1,{},0,0,{},{}\n".encode("latin-1"))
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert_clean_failure(result, tmp_path, out, ["via.csv", "UTF-8"])


# --------------------------------------------------------------------------- names that look like rich markup


def test_image_name_with_markup_closing_tag(tmp_path):
    """An image called 'a[/b].png' must be printed as is (not parsed as rich markup)."""
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export(
        [region({"name": "circle", "cx": 1, "cy": 1, "r": -1})], filename="a[/b].png"))
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert_clean_failure(result, tmp_path, out, ["via.json", "image 'a[/b].png'", "region 0"])


def test_input_name_with_brackets_is_printed_verbatim(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "coco[val].json", coco(annotations=[coco_ann(category_id=99)]))
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert_clean_failure(result, tmp_path, out, ["coco[val].json", "annotation id 1"])


def test_category_name_with_markup_converts(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE, name="[/x]")]))
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert [c["name"] for c in json.loads(out.read_text(encoding="utf-8"))["categories"]] == ["[/x]"]
    assert "[/x]" in result.stdout


def test_stats_category_name_with_markup(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "coco.json", coco(categories=[{"id": 1, "name": "[/x]"}]))
    result = run("stats", src)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "[/x]" in result.stdout


# --------------------------------------------------------------------------- paths and options


def test_input_does_not_exist(tmp_path):
    out = tmp_path / "out.json"
    result = run("convert", tmp_path / "nope.json", out)
    assert_clean_failure(result, tmp_path, out, ["nope.json", "not found"])


def test_input_is_csv_that_does_not_exist(tmp_path):
    out = tmp_path / "out.json"
    result = run("convert", tmp_path / "nope.csv", out)
    assert_clean_failure(result, tmp_path, out, ["nope.csv", "not found"])


def test_images_folder_does_not_exist(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    out = tmp_path / "out.json"
    result = run("convert", src, out, "--images", tmp_path / "no_such_dir")
    assert_clean_failure(result, tmp_path, out, ["no_such_dir"])


def test_stats_images_folder_does_not_exist(tmp_path):
    src = write_json(tmp_path / "coco.json", coco())
    result = run("stats", src, "--images", tmp_path / "no_such_dir")
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "no_such_dir" in result.stderr


def test_no_image_found(tmp_path):
    """VIA -> COCO needs image sizes; with no image on disk nothing can be written."""
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert_clean_failure(result, tmp_path, out, ["via.json", "--images"])


def test_output_exists_without_overwrite(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    out = tmp_path / "out.json"
    out.write_text("old", encoding="utf-8")
    result = run("convert", src, out)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "out.json" in result.stderr and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert out.read_text(encoding="utf-8") == "old"
    assert not (tmp_path / "out.report.json").exists()
    assert leftovers(tmp_path) == []


def test_output_exists_with_overwrite_replaces_it(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    out = tmp_path / "out.json"
    out.write_text("old", encoding="utf-8")
    result = run("convert", src, out, "--overwrite")
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [img["file_name"] for img in data["images"]] == ["a.png"]
    assert len(data["annotations"]) == 1
    assert [c["name"] for c in data["categories"]] == ["cell"]
    assert (tmp_path / "out.report.json").exists()
    assert leftovers(tmp_path) == []


def test_masks_output_folder_exists_with_overwrite_replaces_it(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    out = tmp_path / "labels"
    out.mkdir()  # a previous segcli mask output (user files are never replaced: test_hostile_outputs.py)
    (out / "classes.txt").write_text("_background_\nold\n", encoding="utf-8")
    assert cv2.imwrite(str(out / "stale.png"), np.zeros((8, 8), dtype=np.uint8))
    result = run("convert", src, out, "--to", "masks")
    assert result.exit_code == 2
    assert "labels" in result.stderr
    assert (out / "stale.png").exists()
    result = run("convert", src, out, "--to", "masks", "--overwrite")
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "classes.txt"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_output_equal_to_input(tmp_path, overwrite):
    write_image(tmp_path)
    src = write_json(tmp_path / "coco.json", coco())
    before = src.read_bytes()
    result = run("convert", src, src, *(["--overwrite"] if overwrite else []))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "coco.json" in result.stderr
    if overwrite:
        assert "input" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert src.read_bytes() == before
    assert not (tmp_path / "coco.report.json").exists()
    assert leftovers(tmp_path) == []


def test_output_equal_to_input_by_another_spelling(tmp_path, monkeypatch):
    write_image(tmp_path)
    (tmp_path / "sub").mkdir()
    src = write_json(tmp_path / "coco.json", coco())
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    result = run("convert", "coco.json", "sub/../coco.json", "--overwrite")
    assert result.exit_code == 2, result.output
    assert "coco.json" in result.stderr
    assert src.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_output_parent_is_a_file(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    (tmp_path / "f.txt").write_text("x", encoding="utf-8")
    out = tmp_path / "f.txt" / "out.json"
    result = run("convert", src, out)
    assert_clean_failure(result, tmp_path, out, ["f.txt"])
    assert (tmp_path / "f.txt").read_text(encoding="utf-8") == "x"


def test_json_output_is_a_folder(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    out = tmp_path / "o.json"
    out.mkdir()
    result = run("convert", src, out, "--overwrite")
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "o.json" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert out.is_dir() and not any(out.iterdir())
    assert not (tmp_path / "o.report.json").exists()
    assert leftovers(tmp_path) == []


def test_label_attr_no_region_has(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    out = tmp_path / "out.json"
    result = run("convert", src, out, "--label-attr", "species")
    assert_clean_failure(result, tmp_path, out, ["via.json", "species"])


def test_label_attr_on_coco_input(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "coco.json", coco())
    out = tmp_path / "out.json"
    result = run("convert", src, out, "--label-attr", "name")
    assert_clean_failure(result, tmp_path, out, ["coco.json", "--label-attr"])


def test_to_with_bad_value(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", via_export([region(GOOD_SHAPE)]))
    out = tmp_path / "out.json"
    result = run("convert", src, out, "--to", "yolo")
    assert_clean_failure(result, tmp_path, out, ["--to", "yolo"], one_line=False)


# --------------------------------------------------------------------------- --strict


def _partly_outside() -> dict:
    return via_export([region(GOOD_SHAPE), region(polygon([40, 80, 80, 40], [10, 10, 30, 30]))])


def test_strict_refuses_clipping(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", _partly_outside())
    out = tmp_path / "out.json"
    result = run("convert", src, out, "--strict")
    err = assert_clean_failure(result, tmp_path, out, ["via.json", "--strict", "region 1"], exit_code=1)
    assert "clipped" in err


def test_without_strict_polygon_is_clipped_and_reported(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "via.json", _partly_outside())
    out = tmp_path / "out.json"
    result = run("convert", src, out)
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data["annotations"]) == 2
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= WIDTH and y + h <= HEIGHT
        for part in ann["segmentation"]:
            assert all(0 <= v <= WIDTH for v in part[0::2])
            assert all(0 <= v <= HEIGHT for v in part[1::2])
    report = json.loads((tmp_path / "out.report.json").read_text(encoding="utf-8"))
    clipped = [e for e in report["entries"] if e["action"] == "clipped"]
    assert len(clipped) == 1
    assert clipped[0]["image"] == "a.png" and clipped[0]["item"] == "region 1"
    assert report["totals"]["clipped"] == 1
    assert "clipped" in result.stdout
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- help and version


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["convert", "--help"], ["stats", "--help"]],
                         ids=["root", "root-short", "convert", "stats"])
def test_help(args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    if args[0] != "-h" and args[0] != "--help":
        assert "Examples" in result.stdout
    else:
        assert "convert" in result.stdout and "stats" in result.stdout


# --------------------------------------------------------------------------- stats


def _stats_input(tmp_path: Path) -> Path:
    """a.png exists, b.png is missing; annotation id 7 appears twice."""
    write_image(tmp_path)
    data = coco(images=[{"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT},
                        {"id": 2, "file_name": "b.png", "width": WIDTH, "height": HEIGHT}],
                annotations=[coco_ann(id=7), coco_ann(id=7), coco_ann(id=8, image_id=2)])
    return write_json(tmp_path / "coco.json", data)


def test_stats_reports_problems(tmp_path):
    src = _stats_input(tmp_path)
    result = run("stats", src)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "coco.json" in result.stdout
    assert "Problems" in result.stdout


def test_stats_json_lists_problems(tmp_path):
    src = _stats_input(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("stats", src, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    stats = json.loads(result.stdout)
    problems = stats["problems"]
    duplicate = [p for p in problems if "duplicate annotation id 7" in p["reason"]]
    assert len(duplicate) == 1 and duplicate[0]["action"] == "error"
    assert duplicate[0]["image"] == "a.png" and duplicate[0]["item"] == "annotation id 7"
    missing = [p for p in problems if p["action"] == "missing"]
    assert [p["image"] for p in missing] == ["b.png"]
    assert stats["images"] == 2 and stats["images_found"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # stats writes nothing


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_stats_check_exits_1(tmp_path, as_json):
    src = _stats_input(tmp_path)
    result = run("stats", src, "--check", *(["--json"] if as_json else []))
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if as_json:
        assert json.loads(result.stdout)["problems"]


def test_stats_check_clean_file_exits_0(tmp_path):
    write_image(tmp_path)
    src = write_json(tmp_path / "coco.json", coco())
    result = run("stats", src, "--check", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.stdout)["problems"] == []


def test_stats_on_malformed_json(tmp_path):
    src = tmp_path / "bad.json"
    src.write_bytes(b'{"images": [')
    result = run("stats", src)
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "bad.json" in result.stderr
    assert "Traceback" not in result.output

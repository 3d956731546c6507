"""Every file of the malformed-input corpus (tests/data/bad, see its README.md) through every
command that reads it: ``convert`` to each output format, ``stats``, ``eval --gt/--pred``,
``train`` and ``predict``.

A bad input must give exit code 2 and one ``error:`` line naming the file, no traceback, and leave
no output behind (the target does not exist, no temporary entry in its folder). ``stats`` lists
invalid entries as problems instead (exit 1 with ``--check``), and ``predict`` skips unreadable
images with a warning: those are their documented behaviours. Inputs that are bad because they
are huge (a million-point polygon, JSON nested 100,000 deep) are generated here at run time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from segcli.cli import app

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
WIDTH, HEIGHT = 64, 48

# How each annotation file fails. "parse": unreadable as a whole, every command (stats too) exits
# 2; "content": read, but an entry is invalid: convert, train and eval exit 2, stats lists it;
# "noimage": names an image no file system can hold (a NUL byte): refused wherever images are
# needed, kept as written in VIA output; "ok": tolerated (a malformed optional VIA setting or
# attribute value that changes no mask). The strings must appear in the error (or, for stats, in
# a problem).
ANNOTATIONS: dict[str, tuple[str, list[str]]] = {
    "json/empty.json": ("parse", ["file is empty"]),
    "json/whitespace.json": ("parse", ["invalid JSON"]),
    "json/truncated.json": ("parse", ["invalid JSON at line 1"]),
    "json/binary.json": ("parse", ["not UTF-8"]),
    "json/non_utf8.json": ("parse", ["not UTF-8"]),
    "json/utf16.json": ("parse", ["not UTF-8"]),
    "json/nested.json": ("parse", ["nested too deeply"]),
    "json/nested_object.json": ("parse", ["nested too deeply"]),
    "json/nan.json": ("parse", ["NaN is not a number"]),
    "json/infinity.json": ("parse", ["Infinity is not a number"]),
    "json/string.json": ("parse", ["unknown format"]),
    "json/number.json": ("parse", ["unknown format"]),
    "json/null.json": ("parse", ["unknown format"]),
    "json/list.json": ("parse", ["JSON list"]),
    "json/results_list.json": ("parse", ["COCO results", "segcli eval --pred"]),
    "json/empty_object.json": ("parse", ["empty JSON object"]),
    "json/unknown.json": ("parse", ["unknown format"]),
    "json/entry_not_object.json": ("parse", ["unknown format"]),
    "via/regions_string.json": ("content", ["image 'a.png'", "'regions' must be a list"]),
    "via/regions_number.json": ("content", ["image 'a.png'", "'regions' must be a list"]),
    "via/region_not_object.json": ("content", ["image 'a.png'", "region 1", "must be an object"]),
    "via/shape_string.json": ("content", ["region 0", "shape_attributes must be an object"]),
    "via/shape_missing.json": ("content", ["region 0", "shape_attributes must be an object"]),
    "via/points_dicts.json": ("content", ["region 1", "all_points_x holds a non-number"]),
    "via/points_string.json": ("content", ["region 1", "all_points_x must be a list"]),
    "via/points_lengths_differ.json": ("content", ["region 1", "all_points_x has 4 values"]),
    "via/points_null.json": ("content", ["region 1", "None"]),
    "via/coord_1e308.json": ("content", ["region 1", "1e+308"]),
    "via/coord_1e400.json": ("parse", ["1e400 is beyond float range"]),
    "via/coord_bool.json": ("content", ["region 1", "True"]),
    "via/rect_negative_width.json": ("content", ["region 1", "negative width"]),
    "via/rect_negative_height.json": ("content", ["region 1", "negative height"]),
    "via/circle_negative_r.json": ("content", ["region 1", "negative r"]),
    "via/ellipse_huge_r.json": ("content", ["region 1", "1e+308"]),
    "via/ellipse_theta_string.json": ("content", ["region 1", "'0.5'"]),
    "via/unknown_shape.json": ("content", ["region 1", "unknown shape 'triangle'"]),
    "via/shape_name_list.json": ("content", ["region 1", "unknown shape ['polygon']"]),
    "via/rect_missing_height.json": ("content", ["region 1", "missing 'height'"]),
    "via/filename_list.json": ("content", ["key 'a.png1234'", "filename"]),
    "via/filename_empty.json": ("content", ["key 'a.png1234'", "filename"]),
    "via/region_attributes_string.json": ("content", ["region 0", "region_attributes must be an object"]),
    "via/file_attributes_list.json": ("content", ["image 'a.png'", "file_attributes"]),
    "via/via1_regions_dict_bad.json": ("content", ["region 1", "must be an object"]),
    "via/project_metadata_list.json": ("content", ["_via_img_metadata must be an object"]),
    "via/project_attributes_string.json": ("content", ["_via_attributes must be"]),
    "via/project_attribute_def_list.json": ("content", ["_via_attributes must be"]),
    "via/project_settings_core_list.json": ("ok", []),
    "via/project_default_filepath_list.json": ("ok", []),
    "via/project_options_list.json": ("ok", []),
    "via/project_type_list.json": ("ok", []),
    "via3/xy_string.json": ("content", ["metadata 1_a", "xy must be a list"]),
    "via3/xy_dicts.json": ("content", ["metadata 1_a", "xy holds a non-number"]),
    "via3/xy_1e308.json": ("content", ["metadata 1_a", "1e+308"]),
    "via3/xy_odd.json": ("content", ["metadata 1_a", "x,y pairs"]),
    "via3/shape_code_unknown.json": ("content", ["metadata 1_a", "shape code 42"]),
    "via3/rect_negative_width.json": ("content", ["image 'a.png'", "negative width"]),
    "via3/vid_list.json": ("content", ["metadata 1_a", "known 'vid'"]),
    "via3/metadata_not_object.json": ("content", ["metadata 1_a", "must be an object"]),
    "via3/file_not_object.json": ("content", ["view 1", "one known file"]),
    "via3/fid_list_int.json": ("content", ["view 1", "one known file"]),
    "via3/fid_list_dict.json": ("content", ["view 1", "one known file"]),
    "via3/fid_list_unhashable.json": ("content", ["view 1", "one known file"]),
    "via3/fname_list.json": ("content", ["view 1", "one known file"]),
    "via3/attribute_type_list.json": ("ok", []),
    "via3/av_value_list.json": ("ok", []),
    "csv/empty.csv": ("content", ["not a VIA CSV export"]),
    "csv/binary.csv": ("parse", ["not UTF-8"]),
    "csv/non_utf8.csv": ("parse", ["not UTF-8"]),
    "csv/wrong_header.csv": ("content", ["not a VIA CSV export"]),
    "csv/broken_quoting.csv": ("content", ["line 2", "expected 7 columns"]),
    "csv/quote_in_field.csv": ("content", ["line 2", "not JSON"]),
    "csv/wrong_columns.csv": ("content", ["line 2", "expected 7 columns, found 3"]),
    "csv/field_not_json.csv": ("content", ["line 2", "not JSON"]),
    "csv/field_nested.csv": ("content", ["line 2", "nested too deeply"]),
    "csv/field_nan.csv": ("content", ["line 2", "NaN is not a number"]),
    "csv/shape_list.csv": ("content", ["region 0", "shape_attributes must be an object"]),
    "csv/nul_byte.csv": ("noimage", ["none of the 1 images"]),
    "coco/rle_wrong_length.json": ("content", ["annotation id 1", "RLE counts sum to 10, expected 48x64"]),
    "coco/rle_size_mismatch.json": ("content", ["annotation id 1", "RLE size [10, 10]"]),
    "coco/rle_corrupt_string.json": ("content", ["annotation id 1", "corrupt RLE"]),
    "coco/rle_string_too_long.json": ("content", ["annotation id 1", "RLE counts sum to 1, expected 48x64"]),
    "coco/rle_counts_negative.json": ("content", ["annotation id 1", "non-negative"]),
    "coco/rle_size_strings.json": ("content", ["annotation id 1", "RLE 'size'"]),
    "coco/image_id_list.json": ("content", ["image 0", "integer 'id'"]),
    "coco/annotation_image_id_list.json": ("content", ["annotation id 1", "unknown image_id [1]"]),
    "coco/image_zero_size.json": ("content", ["image 0", "got 0x0"]),
    "coco/image_negative_size.json": ("content", ["image 0", "got -64x48"]),
    "coco/file_name_number.json": ("content", ["image 0", "string 'file_name'"]),
    "coco/bbox_negative.json": ("content", ["annotation id 1", "width, height >= 0"]),
    "coco/bbox_1e308.json": ("content", ["annotation id 1", "1e+308"]),
    "coco/segmentation_points_dicts.json": ("content", ["annotation id 1", "non-number"]),
    "coco/segmentation_nested.json": ("content", ["annotation id 1", "non-number"]),
    "coco/segmentation_string.json": ("content", ["annotation id 1", "segmentation must be"]),
    "coco/segmentation_1e400.json": ("parse", ["1e400 is beyond float range"]),
    "coco/category_name_list.json": ("content", ["category 0", "string 'name'"]),
    "coco/annotations_string.json": ("content", ["'annotations' must be a list"]),
    "coco/categories_missing.json": ("content", ["missing key 'categories'"]),
    "coco/via_shape_bad.json": ("content", ["annotation id 1", "via_shape"]),
    "coco/nonarea_regions_number.json": ("content", ["image 0", "via_nonarea_regions must be a list"]),
    "coco/meta_via_attributes_list.json": ("content", ["segcli.via_attributes"]),
    "coco/meta_label_attr_list.json": ("content", ["segcli.label_attr"]),
    "coco/meta_via_settings_list.json": ("ok", []),
}
REFUSED = [name for name, (kind, _) in ANNOTATIONS.items() if kind != "ok"]
TOLERATED = [name for name, (kind, _) in ANNOTATIONS.items() if kind == "ok"]

# COCO results against a COCO ground truth with image 1 (a.png, 64x48) and category 1
PREDICTIONS: dict[str, list[str]] = {
    "predictions/image_id_string.json": ["prediction 0", "image_id must be an integer"],
    "predictions/category_id_list.json": ["prediction 0", "category_id must be an integer"],
    "predictions/score_string.json": ["prediction 0", "score"],
    "predictions/score_missing.json": ["prediction 0", "score"],
    "predictions/score_1e400.json": ["1e400 is beyond float range"],
    "predictions/not_objects.json": ["prediction 0", "must be an object"],
    "predictions/no_geometry.json": ["prediction 0", "segmentation or a bbox"],
    "predictions/bbox_three_numbers.json": ["prediction 0", "bbox"],
    "predictions/segmentation_number.json": ["prediction 0", "segmentation must be"],
    "predictions/polygon_points_dicts.json": ["prediction 0", "non-number"],
    "predictions/polygon_odd.json": ["prediction 0", "odd number"],
    "predictions/rle_wrong_length.json": ["prediction 0", "RLE counts sum to 10"],
    "predictions/rle_string_short.json": ["prediction 0", "RLE counts sum to 1,"],
    "predictions/rle_corrupt_string.json": ["prediction 0", "corrupt RLE"],
    "predictions/rle_size_differs.json": ["prediction 0", "mask size [10, 10]"],
    "predictions/rle_size_strings.json": ["prediction 0", "size [h, w]"],
    "predictions/dataset_not_annotations.json": ["not COCO predictions"],
}

# label-mask folders: (convert them to COCO refused?, semantic eval against masks/gt refused?, text)
MASKS: dict[str, tuple[bool, bool, str]] = {
    "masks/wrong_size": (False, True, "predicted mask is"),
    "masks/wrong_mode": (True, True, "got mode RGB"),
    "masks/not_png": (True, True, "unreadable label map"),
    "masks/zero_size": (True, True, "unreadable label map"),
    "masks/classes_non_utf8": (True, True, "not UTF-8"),
    "masks/classes_binary": (True, True, "not UTF-8"),
    "masks/value_out_of_range": (True, True, "value"),
}

# image files with an image suffix that are not (readable) images; truncated.png has a complete
# header, which is all convert and stats read (README: sizes come from headers)
IMAGES = ["images/text.png", "images/empty.jpg", "images/truncated.png", "images/truncated.jpg",
          "images/zero_size.png", "images/huge_header.png"]
HEADER_READABLE = {"images/truncated.png"}

GOOD_COCO = {"images": [{"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 400.0,
                              "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "bbox": [10, 10, 20, 20]}],
             "categories": [{"id": 1, "name": "cell"}]}
GOOD_PREDICTIONS = [{"image_id": 1, "category_id": 1, "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]],
                     "bbox": [10, 10, 20, 20], "score": 0.9}]


# --------------------------------------------------------------------------- helpers


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_image(path: Path, width: int = WIDTH, height: int = HEIGHT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), 40, dtype=np.uint8)
    pixels[10:30, 10:30] = 200
    assert cv2.imwrite(str(path), pixels)
    return path


def copy_bad(name: str, folder: Path, as_name: str | None = None) -> Path:
    """A corpus file copied into ``folder`` under its own base name (so messages must name it)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (as_name or Path(name).name)
    shutil.copyfile(BAD / name, target)
    return target


def no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def assert_refused(result, names: list[str], target: Path, exit_code: int = 2) -> str:
    """Exit code, no traceback, one ``error:`` line holding every name, ``target`` not written
    and no temporary entry (hidden name) beside it."""
    err = result.stderr
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    no_traceback(result)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), f"expected one error line, got {err!r}"
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    assert not target.exists(), f"{target.name} was written"
    if target.suffix == ".json":
        assert not target.with_name(target.stem + ".report.json").exists(), "a report was written"
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"temporary entries left: {leftovers}"
    return lines[0]


# --------------------------------------------------------------------------- the corpus itself


def test_every_corpus_file_has_an_expectation():
    """A file added to tests/data/bad without saying how it must fail is an error here."""
    listed = set(ANNOTATIONS) | set(PREDICTIONS) | set(IMAGES)
    listed |= {f"{folder}/{p.name}" for folder in MASKS for p in (BAD / folder).iterdir()}
    listed |= {f"masks/gt/{p.name}" for p in (BAD / "masks" / "gt").iterdir()}
    on_disk = {p.relative_to(BAD).as_posix() for p in BAD.rglob("*") if p.is_file()}
    on_disk -= {"README.md", "make_corpus.py"}
    assert on_disk == listed


def test_corpus_is_small_and_documented():
    files = [p for p in BAD.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 200_000
    readme = (BAD / "README.md").read_text(encoding="utf-8")
    for path in files:
        relative = path.relative_to(BAD).as_posix()
        if relative not in ("README.md", "make_corpus.py") and not relative.startswith("masks/"):
            assert f"`{relative}`" in readme, f"{relative} is not described in README.md"
    for folder in list(MASKS) + ["masks/gt"]:
        assert f"`{folder}/`" in readme, f"{folder} is not described in README.md"


# --------------------------------------------------------------------------- convert


@pytest.mark.parametrize("to", ["coco", "via", "masks"])
@pytest.mark.parametrize("name", REFUSED)
def test_convert_refuses(tmp_path, name, to):
    kind, fragments = ANNOTATIONS[name]
    write_image(tmp_path / "a.png")
    source = copy_bad(name, tmp_path)
    out = tmp_path / ("out" if to == "masks" else "out.json")
    result = run("convert", source, out, "--to", to)
    if kind == "noimage" and to == "via":  # VIA output needs no image
        no_traceback(result)
        assert result.exit_code == 0 and out.exists(), result.output
        return
    assert_refused(result, [source.name, *fragments], out)


@pytest.mark.parametrize("name", TOLERATED)
def test_convert_tolerates(tmp_path, name):
    write_image(tmp_path / "a.png")
    source = copy_bad(name, tmp_path)
    out = tmp_path / "out.json"
    result = run("convert", source, out, "--to", "coco")
    no_traceback(result)
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text(encoding="utf-8"))
    assert [img["file_name"] for img in written["images"]] == ["a.png"]
    assert len(written["annotations"]) == 1


# --------------------------------------------------------------------------- stats


@pytest.mark.parametrize("name", REFUSED)
def test_stats(tmp_path, name):
    """Unreadable files: exit 2. Invalid entries: listed as problems, --check exits 1."""
    kind, fragments = ANNOTATIONS[name]
    write_image(tmp_path / "a.png")
    source = copy_bad(name, tmp_path)
    result = run("stats", source, "--json", "--check")
    no_traceback(result)
    if kind == "parse":
        assert_refused(result, [source.name, *fragments], tmp_path / "nothing")
        return
    assert result.exit_code == 1, result.output
    problems = json.loads(result.stdout)["problems"]
    text = " ".join(" ".join((p["image"] and f"image '{p['image']}'", p["item"], p["reason"])) for p in problems)
    assert any(p["action"] == ("missing" if kind == "noimage" else "error") for p in problems), problems
    for fragment in fragments if kind == "content" else []:
        assert fragment in text, f"{fragment!r} not in {problems}"


# --------------------------------------------------------------------------- eval


@pytest.mark.parametrize("name", REFUSED)
def test_eval_refuses_bad_ground_truth(tmp_path, name):
    kind, fragments = ANNOTATIONS[name]
    write_image(tmp_path / "a.png")
    source = copy_bad(name, tmp_path)
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps(GOOD_PREDICTIONS), encoding="utf-8")
    out = tmp_path / "eval"
    result = run("eval", "--gt", source, "--pred", predictions, "--images", tmp_path, "--out", out)
    assert_refused(result, [source.name, *fragments], out)


@pytest.mark.parametrize("name", sorted(PREDICTIONS) + [n for n in REFUSED if n.startswith("json/")
                                                         and n != "json/results_list.json"])
def test_eval_refuses_bad_predictions(tmp_path, name):
    fragments = PREDICTIONS.get(name, [])
    write_image(tmp_path / "a.png")
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps(GOOD_COCO), encoding="utf-8")
    source = copy_bad(name, tmp_path / "pred")
    out = tmp_path / "eval"
    result = run("eval", "--gt", truth, "--pred", source, "--out", out)
    assert_refused(result, [source.name, *fragments], out)


@pytest.mark.parametrize("folder", sorted(MASKS))
@pytest.mark.parametrize("side", ["pred", "gt"])
def test_semantic_eval_refuses_bad_label_maps(tmp_path, folder, side):
    _, refused, fragment = MASKS[folder]
    bad = tmp_path / "bad"
    shutil.copytree(BAD / folder, bad)
    good = tmp_path / "good"
    shutil.copytree(BAD / "masks" / "gt", good)
    pred, gt = (bad, good) if side == "pred" else (good, bad)
    out = tmp_path / "eval"
    result = run("eval", "--pred", pred, "--gt", gt, "--out", out)
    assert refused
    line = assert_refused(result, [fragment], out)
    assert str(bad) in line or (folder == "masks/wrong_size" and str(good) in line)


@pytest.mark.parametrize("folder", sorted(MASKS))
def test_convert_label_maps(tmp_path, folder):
    refused, _, fragment = MASKS[folder]
    source = tmp_path / "maps"
    shutil.copytree(BAD / folder, source)
    out = tmp_path / "out.json"
    result = run("convert", source, out, "--images", tmp_path)
    if refused:
        assert_refused(result, ["maps", fragment], out)
    else:  # a label map of any size is a valid label map; only eval compares it with another
        no_traceback(result)
        assert result.exit_code == 0, result.output
        assert out.exists()


# --------------------------------------------------------------------------- train


def _train_args(data: Path, out: Path) -> list:
    return ["train", data, "--epochs", 1, "--batch", 1, "--workers", 0, "--device", "cpu", "--imgsz", 64,
            "--out", out]


@pytest.mark.parametrize("name", REFUSED)
def test_train_refuses_before_training(tmp_path, name):
    """A split folder holding the bad file: refused while reading, before any model exists."""
    kind, fragments = ANNOTATIONS[name]
    data = tmp_path / "data"
    for split in ("train", "val"):
        write_image(data / split / "a.png")
    source = copy_bad(name, data / "train")
    (data / "val" / "coco.json").write_text(json.dumps(GOOD_COCO), encoding="utf-8")
    out = tmp_path / "runs"
    result = run(*_train_args(data, out))
    assert_refused(result, [source.name, *fragments], out)


@pytest.mark.parametrize("image", [i for i in IMAGES if i not in HEADER_READABLE])
def test_train_refuses_split_of_unreadable_images(tmp_path, image):
    data = tmp_path / "data"
    name = "b" + Path(image).suffix
    copy_bad(image, data / "train", name)
    via = {f"{name}1": {"filename": name, "size": -1, "file_attributes": {}, "regions": [
        {"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5}, "region_attributes": {}}]}}
    (data / "train" / "via.json").write_text(json.dumps(via), encoding="utf-8")
    write_image(data / "val" / "a.png")
    (data / "val" / "coco.json").write_text(json.dumps(GOOD_COCO), encoding="utf-8")
    out = tmp_path / "runs"
    result = run(*_train_args(data, out))
    assert_refused(result, ["via.json", "none of the 1 images", "unreadable image", name], out)


# --------------------------------------------------------------------------- image files


def _via_naming(folder: Path, names: list[str]) -> Path:
    via = {f"{n}1": {"filename": n, "size": -1, "file_attributes": {}, "regions": [
        {"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5}, "region_attributes": {}}]}
        for n in names}
    path = folder / "via.json"
    path.write_text(json.dumps(via), encoding="utf-8")
    return path


@pytest.mark.parametrize("image", IMAGES)
def test_convert_skips_unreadable_image_and_reports_it(tmp_path, image):
    write_image(tmp_path / "a.png")
    name = "b" + Path(image).suffix
    copy_bad(image, tmp_path, name)
    out = tmp_path / "out.json"
    result = run("convert", _via_naming(tmp_path, ["a.png", name]), out)
    no_traceback(result)
    assert result.exit_code == 0, result.output
    written = [img["file_name"] for img in json.loads(out.read_text(encoding="utf-8"))["images"]]
    report = json.loads((tmp_path / "out.report.json").read_text(encoding="utf-8"))
    missing = [e for e in report["entries"] if e["action"] == "missing" and e["image"] == name]
    if image in HEADER_READABLE:
        assert written == ["a.png", name] and not missing
    else:
        assert written == ["a.png"]
        assert len(missing) == 1 and "unreadable image" in missing[0]["reason"], report["entries"]


@pytest.mark.parametrize("image", [i for i in IMAGES if i not in HEADER_READABLE])
def test_convert_refuses_when_no_image_is_readable(tmp_path, image):
    name = "b" + Path(image).suffix
    copy_bad(image, tmp_path, name)
    out = tmp_path / "out.json"
    result = run("convert", _via_naming(tmp_path, [name]), out)
    assert_refused(result, ["via.json", "none of the 1 images", "unreadable image", name], out)


@pytest.fixture(scope="module")
def predicted_bad_folder(tmp_path_factory):
    """``predict folder`` (the shipped Mask R-CNN, CPU) on every bad image and one good one."""
    root = tmp_path_factory.mktemp("predict")
    images = root / "images"
    write_image(images / "good.png")
    for image in IMAGES:
        copy_bad(image, images)
    out = root / "out"
    result = run("predict", "folder", images, "--device", "cpu", "--procs", 1, "--workers", 0, "--out", out)
    return result, out


def test_predict_skips_unreadable_images_with_a_warning(predicted_bad_folder):
    result, out = predicted_bad_folder
    no_traceback(result)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    skipped = sorted(item["image"] for item in summary["skipped"])
    assert skipped == sorted(Path(i).name for i in IMAGES)
    assert summary["done"] == 1
    for name in skipped:
        assert f"warning: skipped {name}" in result.output
    predictions = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    dataset = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert [img["file_name"] for img in dataset["images"]] == ["good.png"]
    assert all(p["image_id"] == dataset["images"][0]["id"] for p in predictions)
    assert (out / "overlays" / "good.jpg").is_file() and len(list((out / "overlays").iterdir())) == 1


# --------------------------------------------------------------------------- generated at run time


def _polygon_via(folder: Path, xs: np.ndarray, ys: np.ndarray) -> Path:
    via = {"a.png1": {"filename": "a.png", "size": -1, "file_attributes": {}, "regions": [
        {"shape_attributes": {"name": "polygon", "all_points_x": xs.round(2).tolist(),
                              "all_points_y": ys.round(2).tolist()}, "region_attributes": {}}]}}
    path = folder / "via.json"
    path.write_text(json.dumps(via), encoding="utf-8")
    return path


def test_million_point_scribble_is_refused_not_repaired_forever(tmp_path):
    """A polygon of a million random points crosses itself ~10^11 times; shapely's repair would
    never end (a 400-point one already takes a minute). It is refused, naming the region."""
    write_image(tmp_path / "a.png")
    rng = np.random.default_rng(0)
    source = _polygon_via(tmp_path, rng.uniform(0, WIDTH, 1_000_000), rng.uniform(0, HEIGHT, 1_000_000))
    out = tmp_path / "out.json"
    result = run("convert", source, out, "--to", "coco")
    assert_refused(result, ["via.json", "image 'a.png'", "region 0", "crosses itself more than 1000 times"], out)


def test_tangled_polygon_is_refused_for_label_maps_too(tmp_path):
    """Label maps are rasterised while they are written: an error found then still leaves nothing."""
    write_image(tmp_path / "a.png")
    rng = np.random.default_rng(1)
    source = _polygon_via(tmp_path, rng.uniform(0, WIDTH, 400), rng.uniform(0, HEIGHT, 400))
    out = tmp_path / "maps"
    result = run("convert", source, out, "--to", "masks")
    assert_refused(result, ["via.json", "region 0", "crosses itself"], out)


def test_million_point_outline_converts(tmp_path):
    """A million points that do not cross are a valid (if heavy) outline: converted as is."""
    write_image(tmp_path / "a.png")
    t = np.linspace(0, 2 * np.pi, 1_000_000, endpoint=False)
    source = _polygon_via(tmp_path, 32 + 20 * np.cos(t), 24 + 20 * np.sin(t))
    out = tmp_path / "out.json"
    result = run("convert", source, out, "--to", "coco")
    no_traceback(result)
    assert result.exit_code == 0, result.output
    annotation = json.loads(out.read_text(encoding="utf-8"))["annotations"][0]
    assert len(annotation["segmentation"][0]) == 2_000_000
    assert abs(annotation["area"] - np.pi * 20**2) < 0.02 * np.pi * 20**2


def test_strict_refuses_clipping_in_label_maps(tmp_path):
    """--strict also sees what is clipped while label maps are rasterised (after the first check)."""
    write_image(tmp_path / "a.png")
    source = _polygon_via(tmp_path, np.array([10.0, 90, 90, 10]), np.array([10.0, 10, 30, 30]))
    out = tmp_path / "maps"
    result = run("convert", source, out, "--to", "masks", "--strict")
    assert_refused(result, ["via.json", "--strict", "clipped"], out, exit_code=1)


@pytest.mark.parametrize("command", ["convert", "stats"])
def test_json_nested_100000_deep(tmp_path, command):
    source = tmp_path / "deep.json"
    source.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    out = tmp_path / "out.json"
    result = run(*(["convert", source, out] if command == "convert" else ["stats", source]))
    assert_refused(result, ["deep.json", "nested too deeply"], out)


def test_csv_field_beyond_csv_limit(tmp_path):
    """Python's csv module refuses fields over 128 KiB; that is an error line, not a traceback."""
    write_image(tmp_path / "a.png")
    source = tmp_path / "big.csv"
    header = "#filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes\n"
    source.write_text(header + f'a.png,1,"{{}}",1,0,"{"x" * 200_000}","{{}}"\n', encoding="utf-8")
    out = tmp_path / "out.json"
    result = run("convert", source, out)
    assert_refused(result, ["big.csv", "invalid CSV"], out)

"""Hostile inputs to ``convert`` and ``stats`` (issue 13): writers whose output segcli could not
read back, VIA's ``default_filepath`` leading out of the project, FIFOs named like images, file
names no file system holds, oversized label maps, duplicate JSON keys and huge category lists.

Each test runs the real CLI on files it makes in tmp_path. A refusal is one ``error:`` line with
exit code 2 and nothing written; a command that could block on a FIFO runs in a subprocess with a
timeout, so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import (
    assert_refused,
    region,
    run,
    via2_project,
    write_image,
    write_json,
)

WIDTH, HEIGHT = 64, 48
SQUARE = {"name": "polygon", "all_points_x": [10, 30, 30, 10], "all_points_y": [10, 10, 30, 30]}
HANG_TIMEOUT = 60  # seconds: a FIFO opened for reading blocks forever; a run that works takes ~3 s


def run_process(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; a hang (a FIFO opened) fails instead of blocking the suite."""
    try:
        return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], capture_output=True,
                              text=True, timeout=HANG_TIMEOUT, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"segcli {' '.join(map(str, args))} still running after {HANG_TIMEOUT} s (blocked on a FIFO?)")


def coco(file_names: list[str], names: list[str] | None = None) -> dict:
    """A COCO file: 64x48 images ``file_names``, one square each, categories ``names``."""
    names = names or ["cell"]
    return {"images": [{"id": i, "file_name": n, "width": WIDTH, "height": HEIGHT} for i, n in enumerate(file_names, 1)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1 + (i - 1) % len(names), "iscrowd": 0,
                             "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "area": 400.0, "bbox": [10, 10, 20, 20]}
                            for i in range(1, len(file_names) + 1)],
            "categories": [{"id": k, "name": name} for k, name in enumerate(names, start=1)]}


def label_maps(folder: Path, maps: dict[str, np.ndarray], classes: list[str]) -> Path:
    folder.mkdir(parents=True)
    for name, label_map in maps.items():
        assert cv2.imwrite(str(folder / name), label_map)
    (folder / "classes.txt").write_text("\n".join(["_background_", *classes]) + "\n", encoding="utf-8")
    return folder


def one_square_map() -> np.ndarray:
    label_map = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    label_map[5:15, 5:15] = 1
    return label_map


def stats_json(*args) -> dict:
    result = run("stats", *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- what segcli writes, segcli reads


def test_via_output_of_names_differing_only_in_spaces_is_refused(tmp_path):
    """'cat' and 'cat ' are two COCO categories (a classes.txt keeps spaces), but VIA labels are
    read stripped: the VIA project would merge them silently."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    source = write_json(tmp_path / "coco.json", coco(["a.png", "a.png"], ["cat", "cat "]))
    assert_refused(run("convert", source, tmp_path / "via.json", "--to", "via"), "'cat'", "'cat '")
    assert not (tmp_path / "via.json").exists() and not (tmp_path / "via.report.json").exists()


def test_via_output_of_two_images_with_one_name_keeps_both(tmp_path):
    """VIA keys are filename+size: two COCO images called a.png (no file on disk, size -1) gave
    one key, and the second entry replaced the first."""
    source = write_json(tmp_path / "coco.json", coco(["a.png", "a.png"]))
    assert run("convert", source, tmp_path / "via.json").exit_code == 0
    project = json.loads((tmp_path / "via.json").read_text(encoding="utf-8"))
    assert len(project["_via_img_metadata"]) == 2
    assert sorted(project["_via_image_id_list"]) == sorted(project["_via_img_metadata"])
    assert stats_json(tmp_path / "via.json")["objects"] == 2


def test_masks_to_coco_to_via_to_coco_reads_back_every_class(tmp_path):
    """Every writer's output reads back without problems, with the same classes and objects."""
    label_map = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    label_map[2:10, 2:10], label_map[20:30, 20:30], label_map[35:45, 40:60] = 1, 2, 3
    maps = label_maps(tmp_path / "maps", {"a.png": label_map}, ["cat", "dog", "bird"])
    write_image(tmp_path / "images" / "a.png", WIDTH, HEIGHT)
    assert run("convert", maps, tmp_path / "c.json", "--images", tmp_path / "images").exit_code == 0
    assert run("convert", tmp_path / "c.json", tmp_path / "v.json").exit_code == 0
    assert run("convert", tmp_path / "v.json", tmp_path / "c2.json", "--images", tmp_path / "images").exit_code == 0
    for name in ("c.json", "v.json", "c2.json"):
        result = stats_json(tmp_path / name, "--images", tmp_path / "images")
        assert result["problems"] == [], (name, result["problems"])
        assert {c["name"]: c["objects"] for c in result["categories"]} == {"cat": 1, "dog": 1, "bird": 1}


# --------------------------------------------------------------------------- default_filepath


def via_with_default_path(folder: Path, default_filepath: str, file_names: list[str]) -> Path:
    project = via2_project({name: [region(SQUARE, name="cell")] for name in file_names})
    project["_via_settings"]["core"]["default_filepath"] = default_filepath
    return write_json(folder / "via.json", project)


def test_default_filepath_to_a_system_folder_is_not_used(tmp_path):
    """default_filepath "/etc/" made stats open /etc/hostname as an image."""
    source = via_with_default_path(tmp_path, "/etc/", ["hostname"])
    result = stats_json(source)
    assert result["image_folder"] == str(tmp_path)
    assert not any("/etc" in p["reason"] and "unreadable" in p["reason"] for p in result["problems"]), result["problems"]
    assert any("default_filepath" in n["reason"] and "/etc/" in n["reason"] for n in result["notes"]), result["notes"]


def test_default_filepath_root_is_never_searched(tmp_path):
    """default_filepath "/" walked the whole file system looking for a missing image."""
    source = via_with_default_path(tmp_path, "/", ["nothere.png"])
    result = run_process("stats", source, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["image_folder"] == str(tmp_path)


def test_default_filepath_leading_out_of_the_project_is_not_used(tmp_path):
    write_image(tmp_path / "elsewhere" / "a.png", WIDTH, HEIGHT)
    source = via_with_default_path(tmp_path / "project", "../elsewhere/", ["a.png"])
    result = stats_json(source)
    assert result["image_folder"] == str(tmp_path / "project") and result["images_found"] == 0
    assert any("default_filepath" in n["reason"] for n in result["notes"]), result["notes"]


def test_default_filepath_absolute_folder_holding_the_images_is_used_and_said(tmp_path):
    """An absolute folder that holds the named images is used (directly, not searched below)."""
    write_image(tmp_path / "images" / "a.png", WIDTH, HEIGHT)
    write_image(tmp_path / "images" / "deeper" / "b.png", WIDTH, HEIGHT)
    source = via_with_default_path(tmp_path / "project", f"{tmp_path / 'images'}/", ["a.png", "b.png"])
    result = stats_json(source)
    assert result["image_folder"] == str(tmp_path / "images")
    assert result["images_found"] == 1  # b.png is not searched for in sub-folders
    assert any("default_filepath" in n["reason"] for n in result["notes"]), result["notes"]
    converted = run("convert", source, tmp_path / "out.json")
    assert converted.exit_code == 0, converted.output
    report = json.loads((tmp_path / "out.report.json").read_text(encoding="utf-8"))
    assert any("default_filepath" in e["reason"] for e in report["entries"]), report["entries"]


def test_default_filepath_relative_inside_the_project_is_used(tmp_path):
    write_image(tmp_path / "images" / "a.png", WIDTH, HEIGHT)
    source = via_with_default_path(tmp_path, "images/", ["a.png"])
    result = stats_json(source)
    assert result["image_folder"] == str(tmp_path / "images") and result["images_found"] == 1


# --------------------------------------------------------------------------- FIFOs never block


def test_fifo_named_like_an_image_is_unreadable_not_a_hang(tmp_path):
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    os.mkfifo(tmp_path / "b.png")
    source = write_json(tmp_path / "via.json", via2_project({"a.png": [region(SQUARE, name="cell")],
                                                             "b.png": [region(SQUARE, name="cell")]}))
    stats = run_process("stats", source, "--json")
    assert stats.returncode == 0, stats.stderr
    problems = json.loads(stats.stdout)["problems"]
    assert any(p["image"] == "b.png" and "not a regular file" in p["reason"] for p in problems), problems
    converted = run_process("convert", source, tmp_path / "out.json")
    assert converted.returncode == 0, converted.stderr
    assert [i["file_name"] for i in json.loads((tmp_path / "out.json").read_text())["images"]] == ["a.png"]


def test_fifo_in_a_mask_folder_is_refused_not_a_hang(tmp_path):
    """convert refuses the folder; stats lists the FIFO as an unreadable label map."""
    maps = label_maps(tmp_path / "maps", {"a.png": one_square_map()}, ["cat"])
    os.mkfifo(maps / "b.png")
    assert_refused(run_process("convert", maps, tmp_path / "out.json"), "b.png", "not a regular file")
    assert not (tmp_path / "out.json").exists()
    stats = run_process("stats", maps, "--json")
    assert stats.returncode == 0, stats.stderr
    problems = json.loads(stats.stdout)["problems"]
    assert [(p["image"], p["action"]) for p in problems] == [("b.png", "error")]
    assert "not a regular file (a FIFO)" in problems[0]["reason"]


def test_fifo_in_a_predicted_mask_folder_is_refused_by_eval_not_a_hang(tmp_path):
    """eval --pred MASKS reads label maps with the same reader (segcli.formats.masks)."""
    ground_truth = label_maps(tmp_path / "gt", {"a.png": one_square_map(), "b.png": one_square_map()}, ["cat"])
    predicted = label_maps(tmp_path / "pred", {"a.png": one_square_map()}, ["cat"])
    os.mkfifo(predicted / "b.png")
    result = run_process("eval", "--gt", ground_truth, "--pred", predicted, "--out", tmp_path / "eval")
    assert_refused(result, "b.png", "not a regular file (a FIFO)")


def test_fifo_as_the_annotation_file_is_refused_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "via.json")
    assert_refused(run_process("stats", tmp_path / "via.json"), "via.json", "not a regular file")


# --------------------------------------------------------------------------- names no file system holds


def test_nul_in_a_coco_file_name_to_masks_is_refused(tmp_path):
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    source = write_json(tmp_path / "coco.json", coco(["a.png", "b\x00.png"]))
    assert_refused(run("convert", source, tmp_path / "maps", "--to", "masks"), "coco.json", "NUL")
    assert not (tmp_path / "maps").exists() and not (tmp_path / "maps.report.json").exists()


def test_file_name_too_long_for_the_file_system(tmp_path):
    """A 300-character name: stats lists it, convert --to masks refuses it (ENAMETOOLONG tracebacks)."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    long_name = "x" * 300 + ".png"
    source = write_json(tmp_path / "coco.json", coco(["a.png", long_name]))
    problems = stats_json(source)["problems"]
    assert any(p["image"] == long_name and p["action"] == "missing" for p in problems), problems
    assert_refused(run("convert", source, tmp_path / "maps", "--to", "masks"), "coco.json", "too long")
    assert not (tmp_path / "maps").exists()


# --------------------------------------------------------------------------- oversized label maps


def zero_png(path: Path, width: int, height: int) -> Path:
    """A valid all-zero 8-bit grey PNG of any size, compressed to almost nothing (a bomb)."""
    compressor = zlib.compressobj(1)
    row = bytes(width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_label_map_over_the_pixel_limit_is_refused_naming_it(tmp_path):
    """A valid 400-megapixel PNG of 400 KB: PIL's DecompressionBombError escaped as a traceback
    from convert and stats of the mask folder."""
    maps = label_maps(tmp_path / "maps", {"a.png": one_square_map()}, ["cat"])
    zero_png(maps / "huge.png", 20000, 20000)
    line = assert_refused(run("convert", maps, tmp_path / "out.json"), "huge.png", "SEGCLI_MAX_MEGAPIXELS")
    assert "20000x20000 (400 megapixels), more than the 179 megapixel limit" in line
    assert not (tmp_path / "out.json").exists()
    problems = stats_json(maps)["problems"]
    assert [p["image"] for p in problems] == ["huge.png"] and "20000x20000" in problems[0]["reason"]


def test_label_map_over_a_lowered_pixel_limit_is_refused(tmp_path):
    maps = label_maps(tmp_path / "maps", {"a.png": one_square_map()}, ["cat"])
    env = {**os.environ, "SEGCLI_MAX_MEGAPIXELS": "0.001"}
    result = subprocess.run([sys.executable, "-m", "segcli", "convert", str(maps), str(tmp_path / "out.json")],
                            capture_output=True, text=True, timeout=HANG_TIMEOUT, env=env)
    assert_refused(result, "a.png", "64x48", "0.001 megapixel limit")


# --------------------------------------------------------------------------- many categories, big maps


def test_200000_categories_are_read(tmp_path):
    """The duplicate id/name check was quadratic: 200,000 categories did not finish in 300 s."""
    n = 200_000
    data = coco(["a.png"], [f"c{k}" for k in range(n)])
    source = write_json(tmp_path / "coco.json", data)
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    result = stats_json(source)
    assert len(result["categories"]) == n and result["problems"] == []


def test_more_coco_categories_than_masks_hold_is_refused_quickly(tmp_path):
    """70,000 COCO categories -> masks: refused once read (was an OverflowError after 161 s)."""
    source = write_json(tmp_path / "coco.json", coco(["a.png"], [f"c{k}" for k in range(70_000)]))
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    assert_refused(run("convert", source, tmp_path / "maps", "--to", "masks"), "70000 categories", "65535")
    assert not (tmp_path / "maps").exists()


def test_speckle_label_map_gives_one_instance_per_speck(tmp_path):
    """Isolated pixels (a lattice, 22,500 of them): one instance each, with the right pixel."""
    label_map = np.zeros((300, 300), dtype=np.uint8)
    label_map[::2, ::2] = 1
    label_map[1::4, 1::4] = 2  # between the class-1 specks: diagonal neighbours of another class
    maps = label_maps(tmp_path / "maps", {"a.png": label_map}, ["cat", "dog"])
    assert run("convert", maps, tmp_path / "out.json").exit_code == 0
    written = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    per_class = {1: 0, 2: 0}
    for annotation in written["annotations"]:
        per_class[annotation["category_id"]] += 1
        assert annotation["area"] == 1
    assert per_class == {1: 150 * 150, 2: 75 * 75}
    first = next(a for a in written["annotations"] if a["category_id"] == 2)
    assert first["bbox"] == [1.0, 1.0, 1.0, 1.0]


def test_label_map_with_60000_classes_reads_every_class(tmp_path):
    """300x300 pixels holding 60,000 classes (16-bit): one connected-components pass per class
    over the whole map took 22 s."""
    rng = np.random.default_rng(0)
    label_map = (rng.permutation(300 * 300) % 60000 + 1).reshape(300, 300).astype(np.uint16)
    label_map[label_map == 255] = 256  # 255 is the void label, in 16-bit maps too
    names = [f"c{k}" for k in range(1, 60001)]
    maps = label_maps(tmp_path / "maps", {"a.png": label_map}, names)
    result = stats_json(maps)
    objects = np.array([c["objects"] for c in result["categories"]])
    pixels = np.bincount(label_map.ravel(), minlength=60001)[1:]
    assert ((objects >= 1) == (pixels >= 1)).all() and (objects <= pixels).all()
    assert (objects >= 1).sum() == 59999


def test_components_of_one_class_touching_diagonally_are_one_instance(tmp_path):
    """8-connectivity: a diagonal staircase is one object; a 4-connected ring holds a hole."""
    label_map = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for k in range(20):
        label_map[5 + k, 5 + k] = 1
    label_map[30:40, 30:40] = 2
    label_map[33:37, 33:37] = 0
    label_map[34, 34] = 2  # an island inside the ring's hole: its own instance
    maps = label_maps(tmp_path / "maps", {"a.png": label_map}, ["line", "ring"])
    assert run("convert", maps, tmp_path / "out.json").exit_code == 0
    annotations = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))["annotations"]
    assert sorted((a["category_id"], a["area"]) for a in annotations) == [(1, 20), (2, 1), (2, 84)]


# --------------------------------------------------------------------------- silent or unclear


def test_duplicate_key_in_via_img_metadata_is_refused(tmp_path):
    """json keeps the last of two equal keys: the first entry's regions were dropped silently."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    project = via2_project({"a.png": [region(SQUARE, name="cell")]})
    text = json.dumps(project)
    entry = json.dumps(project["_via_img_metadata"]["a.png-1"])
    text = text.replace(f'"a.png-1": {entry}', f'"a.png-1": {entry}, "a.png-1": {entry}')
    (tmp_path / "via.json").write_text(text, encoding="utf-8")
    assert text.count('"a.png-1"') == 2
    assert_refused(run("convert", tmp_path / "via.json", tmp_path / "out.json"), "via.json", "'a.png-1'", "duplicate")
    assert not (tmp_path / "out.json").exists()


def test_duplicate_key_in_a_via_export_is_refused(tmp_path):
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    entry = json.dumps({"filename": "a.png", "size": -1, "regions": [region(SQUARE)], "file_attributes": {}})
    (tmp_path / "export.json").write_text(f'{{"a.png-1": {entry}, "a.png-1": {entry}}}', encoding="utf-8")
    assert_refused(run("stats", tmp_path / "export.json"), "export.json", "'a.png-1'")


def test_duplicate_keys_inside_a_region_are_left_to_json(tmp_path):
    """Only the top level and _via_img_metadata are checked (the cheap places)."""
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    entry = ('{"filename": "a.png", "size": -1, "file_attributes": {}, "regions": [{"shape_attributes": '
             '{"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5}, "region_attributes": {"a": "1", "a": "2"}}]}')
    (tmp_path / "export.json").write_text(f'{{"a.png-1": {entry}}}', encoding="utf-8")
    assert stats_json(tmp_path / "export.json")["objects"] == 1


def test_via_csv_nul_inside_a_json_field_names_the_real_reason(tmp_path):
    write_image(tmp_path / "a.png", WIDTH, HEIGHT)
    shape = json.dumps({"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5}).replace('"rect"', '"re\x00ct"')
    row = ["a.png", "100", "{}", "1", "0", shape, "{}"]
    lines = ["#filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes",
             ",".join('"' + v.replace('"', '""') + '"' for v in row)]
    (tmp_path / "via.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    line = assert_refused(run("convert", tmp_path / "via.csv", tmp_path / "out.json"), "via.csv", "line 2")
    assert "0.1b" not in line and "control character" in line

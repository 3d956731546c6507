"""Converted files find their images from another folder (issue 14, item 12).

``segcli stats OUT.json`` of a file converted into another folder reported every image as not
found. convert now records where the images are: a VIA 2 project in
``_via_settings.core.default_filepath`` (relative when the images lie inside the project's
folder, else absolute; with VIA's trailing slash), a COCO file in ``info.segcli_images_dir``
(relative to the file, and absolute as a fallback), which readers use when the file's own folder
holds none of the images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import region, run, via2_project, write_image, write_json

SQUARE = {"name": "polygon", "all_points_x": [10, 30, 30, 10], "all_points_y": [10, 10, 30, 30]}


def dataset(root: Path) -> Path:
    """root/data/via.json naming a.png and b.png, which lie in root/data/images/."""
    for number, name in enumerate(("a.png", "b.png")):
        write_image(root / "data" / "images" / name, 64, 48, seed=number)
    return write_json(root / "data" / "via.json",
                      via2_project({name: [region(SQUARE)] for name in ("a.png", "b.png")}))


def stats_json(path: Path, *options) -> dict:
    result = run("stats", path, "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_coco_written_into_another_folder_finds_its_images(tmp_path):
    source = dataset(tmp_path)
    converted = run("convert", source, tmp_path / "out" / "coco.json")
    assert converted.exit_code == 0, converted.output
    coco = json.loads((tmp_path / "out" / "coco.json").read_text())
    recorded = coco["info"]["segcli_images_dir"]
    assert recorded["relative"] == "../data/images"
    assert recorded["absolute"] == str((tmp_path / "data" / "images").resolve())
    result = stats_json(tmp_path / "out" / "coco.json")
    assert result["images_found"] == 2, result["problems"]
    assert result["image_folder"] == str(tmp_path / "out" / "../data/images")
    # both folders moved together: the relative location still holds
    shutil.copytree(tmp_path, tmp_path.parent / (tmp_path.name + "-moved"))
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.rmtree(tmp_path / "data")
    assert stats_json(moved / "out" / "coco.json")["images_found"] == 2
    # the original, its images gone: none found, and stats says how to point at them
    gone = stats_json(tmp_path / "out" / "coco.json")
    assert gone["images_found"] == 0 and "--images DIR" in gone["images_hint"]
    # images beside the file come first, the recorded folder second
    for name in ("a.png", "b.png"):
        shutil.copy(moved / "data" / "images" / name, moved / "out" / name)
    assert stats_json(moved / "out" / "coco.json")["image_folder"] == str(moved / "out")


def test_coco_moved_alone_falls_back_to_the_absolute_location(tmp_path):
    source = dataset(tmp_path)
    assert run("convert", source, tmp_path / "out" / "coco.json").exit_code == 0
    (tmp_path / "elsewhere").mkdir()
    shutil.move(tmp_path / "out" / "coco.json", tmp_path / "elsewhere" / "coco.json")
    assert stats_json(tmp_path / "elsewhere" / "coco.json")["images_found"] == 2


def test_via_project_written_elsewhere_records_default_filepath(tmp_path):
    source = dataset(tmp_path)
    assert run("convert", source, tmp_path / "out" / "coco.json").exit_code == 0
    assert run("convert", tmp_path / "out" / "coco.json", tmp_path / "other" / "via.json").exit_code == 0
    project = json.loads((tmp_path / "other" / "via.json").read_text())
    default = project["_via_settings"]["core"]["default_filepath"]
    assert default == str((tmp_path / "data" / "images").resolve()) + "/"  # outside the project: absolute
    assert stats_json(tmp_path / "other" / "via.json")["images_found"] == 2
    # inside the project's folder: relative, with VIA's trailing slash
    assert run("convert", source, tmp_path / "via_top.json", "--to", "via").exit_code == 0
    top = json.loads((tmp_path / "via_top.json").read_text())
    assert top["_via_settings"]["core"]["default_filepath"] == "data/images/"
    assert stats_json(tmp_path / "via_top.json")["images_found"] == 2


def test_images_not_found_says_how_to_pass_images(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}], "annotations": [],
            "categories": [{"id": 1, "name": "cell"}]}
    source = write_json(tmp_path / "coco.json", coco)
    result = run("stats", source)
    assert result.exit_code == 0
    assert "1 of 1 images not found" in result.stdout and "--images DIR" in result.stdout

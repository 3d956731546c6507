"""segcli split: one annotation set into train/val(/test) by image, stratified, reproducible, in
the input's format, usable by ``segcli train DIR`` as it is; bad inputs refused with nothing written."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from segcli.engine.train.data import resolve_splits
from segcli.formats.io import detect_format, read_annotations
from segcli.ledger import Ledger
from tests.helpers import (
    assert_refused,
    region,
    run,
    snapshot,
    via2_project,
    write_image,
    write_json,
)


def _square(x: float, y: float, side: float = 6) -> list[float]:
    return [x, y, x + side, y, x + side, y + side, x, y + side]


def class_plan(common: int = 16) -> dict[str, list[str]]:
    """Image name -> classes: 'common' in most images, 'rare' in 2, 'three' in 3, one empty
    image and 'single' in 1 (which can only go to train)."""
    plan = {f"img{i:02d}.png": ["common"] for i in range(common)}
    plan["img00.png"] = ["common", "rare"]
    plan["img01.png"] = ["rare"]
    for name in ("img02.png", "img03.png", "img04.png"):
        plan[name] = plan[name] + ["three"]
    plan["img05.png"] = ["common", "single"]
    plan["empty.png"] = []
    return plan


def coco_dataset(root: Path, plan: dict[str, list[str]]) -> Path:
    """COCO with images of 32x32 in root/images and a JSON in root; category ids 7, 3, 5, 9 (not
    sorted, so a part that renumbered or reordered them would show)."""
    category_ids = {"common": 7, "rare": 3, "three": 5, "single": 9}
    images, annotations = [], []
    for index, (name, classes) in enumerate(plan.items(), start=1):
        write_image(root / "images" / name, 32, 32, seed=index)
        images.append({"id": index * 10, "file_name": name, "width": 32, "height": 32})
        for k, cls in enumerate(classes):
            annotations.append({"id": len(annotations) + 1, "image_id": index * 10, "category_id": category_ids[cls],
                                "segmentation": [_square(2 + 8 * k, 4)], "area": 36.0, "bbox": [2 + 8 * k, 4, 6, 6],
                                "iscrowd": 0})
    categories = [{"id": i, "name": n, "supercategory": ""} for n, i in category_ids.items()]
    return write_json(root / "coco.json", {"info": {"description": "t"}, "images": images,
                                           "annotations": annotations, "categories": categories})


def via_regions(classes: list[str]) -> list[dict]:
    return [region({"name": "polygon", "all_points_x": [2 + 8 * k, 8 + 8 * k, 8 + 8 * k],
                    "all_points_y": [2, 2, 9]}, cls=cls) for k, cls in enumerate(classes)]


def via_project_dataset(root: Path, plan: dict[str, list[str]]) -> Path:
    for index, name in enumerate(plan, start=1):
        write_image(root / "pics" / name, 32, 32, seed=index)
    attributes = {"region": {"cls": {"type": "dropdown", "description": "", "default_options": {},
                                     "options": {n: n for n in ("common", "rare", "three", "single")}}}, "file": {}}
    project = via2_project({f"pics/{n}": via_regions(c) for n, c in plan.items()}, attributes)
    return write_json(root / "via_project.json", project)


def split_json(out: Path) -> dict:
    return json.loads((out / "split.json").read_text())


def part_names(out: Path, part: str) -> set[str]:
    return set(split_json(out)["parts"][part]["image_names"])


# ---------------------------------------------------------------- the split itself

def test_every_image_in_exactly_one_part_and_reproducible_with_the_seed(tmp_path):
    plan = class_plan()
    annotations = coco_dataset(tmp_path / "data", plan)
    first, again, other = tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"
    for out, seed in ((first, 0), (again, 0), (other, 1)):
        result = run("split", annotations, "--val", 0.25, "--seed", seed, "--out", out)
        assert result.exit_code == 0, result.output
    train, val = part_names(first, "train"), part_names(first, "val")
    assert train | val == set(plan) and not train & val
    assert snapshot(first) == snapshot(again)  # same seed: byte-identical outputs
    assert part_names(other, "val") != val  # another seed: another split
    record = split_json(first)
    assert record["seed"] == 0 and record["fractions"] == {"train": 0.75, "val": 0.25}
    assert len(val) == round(len(plan) * 0.25)
    # the parts are COCO files with the same categories (ids and order) and the images' own records
    source = json.loads(annotations.read_text())
    for part, names in (("train", train), ("val", val)):
        data = json.loads((first / part / f"{part}.json").read_text())
        assert data["categories"] == source["categories"] and data["info"] == source["info"]
        assert {im["file_name"] for im in data["images"]} == names
        ids = {im["id"] for im in data["images"]}
        assert data["annotations"] == [a for a in source["annotations"] if a["image_id"] in ids]
    assert "common" in result.output and "rare" in result.output  # the table


def test_stratified_each_class_with_two_images_reaches_val_and_three_reach_test(tmp_path):
    plan = class_plan(common=30)
    annotations = coco_dataset(tmp_path / "data", plan)
    for seed in range(5):
        out = tmp_path / f"s{seed}"
        result = run("split", annotations, "--val", 0.1, "--test", 0.1, "--seed", seed, "--out", out)
        assert result.exit_code == 0, result.output
        parts = {p: part_names(out, p) for p in ("train", "val", "test")}
        assert sum(map(len, parts.values())) == len(plan) == len(set().union(*parts.values()))
        classes_in = {p: {c for n in names for c in plan[n]} for p, names in parts.items()}
        assert classes_in["train"] == {"common", "rare", "three", "single"}
        assert classes_in["val"] >= {"common", "rare", "three"}  # every class with >= 2 images
        assert classes_in["test"] >= {"common", "three"}  # every class with >= 3 images
        record = split_json(out)
        rows = {row["name"]: row for row in record["classes"]}
        assert rows["rare"]["images"] == {"train": 1, "val": 1, "test": 0}
        assert rows["common"]["images"]["val"] == pytest.approx(31 * 0.1, abs=1)  # proportional
        assert record["classes_with_one_image"] == ["single"]
        assert (out / "test" / "test.json").is_file()


def test_a_class_whose_images_train_needs_is_named_when_val_cannot_have_it(tmp_path):
    # both 'rare' images hold a class seen once ('single', 'three'), which train must have
    plan = {f"c{i}.png": ["common"] for i in range(8)} | {"a.png": ["rare", "single"], "b.png": ["rare", "three"]}
    out = tmp_path / "split"
    result = run("split", coco_dataset(tmp_path / "data", plan), "--out", out)
    assert result.exit_code == 0, result.output
    assert split_json(out)["classes_missing_from_val"] == ["rare"]
    assert split_json(out)["classes_with_one_image"] == ["three", "single"]
    assert "warning: not in val (a rarer class needed each of their images in another part): rare" in " ".join(result.output.split())


def test_train_reads_the_split_and_finds_the_original_images(tmp_path):
    """`segcli train DIR` on the output: its loader (what `segcli train DIR` calls) finds both
    parts and every image, nothing copied: the images folder is recorded in split.json. (A real
    1-epoch run takes 20-35 s on 2 loaded cores: run by hand, not here.)"""
    plan = class_plan(common=6)
    annotations = via_project_dataset(tmp_path / "data", plan)
    out = tmp_path / "split"
    assert run("split", annotations, "--val", 0.3, "--out", out).exit_code == 0
    assert not list(out.rglob("*.png"))  # images are not copied
    train, val = resolve_splits(out, None, None, None, None, None, "object")
    assert train.dataset.source_format == val.dataset.source_format == "via2-project"
    for split, part in ((train, "train"), (val, "val")):
        assert all(image.path is not None for image in split.dataset.images), split.ledger.entries
        assert {image.file_name for image in split.dataset.images} == part_names(out, part)
    # a VIA 2 project records where its images are in default_filepath: stats finds them too
    stats = run("stats", out / "val" / "val.json", "--json")
    assert stats.exit_code == 0 and json.loads(stats.stdout)["images_found"] == len(part_names(out, "val"))


def test_stats_and_convert_find_the_images_of_a_coco_part(tmp_path):
    """COCO has no field for the images folder: a part of a split is known by DIR/split.json."""
    plan = class_plan(common=6)
    annotations = coco_dataset(tmp_path / "data", plan)
    out = tmp_path / "split"
    assert run("split", annotations, "--out", out).exit_code == 0
    for part in ("train", "val"):
        stats = run("stats", out / part / f"{part}.json", "--json")
        assert stats.exit_code == 0, stats.output
        assert json.loads(stats.stdout)["images_found"] == len(part_names(out, part))
    # a file copied elsewhere is not a part: its own folder is used, as for any file
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "val.json").write_bytes((out / "val" / "val.json").read_bytes())
    assert json.loads(run("stats", alone / "val.json", "--json").stdout)["images_found"] == 0


def test_entries_naming_one_image_stay_together_and_file_order_does_not_matter(tmp_path):
    plan = class_plan(common=10)
    root = tmp_path / "data"
    for index, name in enumerate(plan, start=1):
        write_image(root / name, 32, 32, seed=index)
    entries = [(f"{n}-1", {"filename": n, "size": -1, "file_attributes": {}, "regions": via_regions(c)})
               for n, c in plan.items()]
    entries.append(("img07.png-2", {"filename": "img07.png", "size": -1, "file_attributes": {},
                                    "regions": via_regions(["rare"])}))  # the same image listed twice
    forward = write_json(root / "forward.json", dict(entries))
    backward = write_json(root / "backward.json", dict(reversed(entries)))
    for source in (forward, backward):
        assert run("split", source, "--val", 0.3, "--out", tmp_path / source.stem).exit_code == 0
    assert part_names(tmp_path / "forward", "val") == part_names(tmp_path / "backward", "val")
    for part in ("train", "val"):
        data = json.loads((tmp_path / "forward" / part / f"{part}.json").read_text())
        keys = {k for k in data if k.startswith("img07.png")}
        assert keys in (set(), {"img07.png-1", "img07.png-2"})


def test_eval_takes_a_part_folder_as_ground_truth(tmp_path):
    """`segcli eval --gt DIR/val` (a split folder, as README's `segcli eval data/val`) finds the
    part's images through split.json: a VIA part needs them for its sizes."""
    annotations = via_project_dataset(tmp_path / "data", class_plan(common=6))
    out = tmp_path / "split"
    assert run("split", annotations, "--out", out).exit_code == 0
    predictions = write_json(tmp_path / "predictions.json", [])
    result = run("eval", "--gt", out / "val", "--pred", predictions, "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "eval" / "metrics.json").is_file()


def _via_export(root: Path, plan: dict[str, list[str]], version: int) -> Path:
    data = {}
    for index, (name, classes) in enumerate(plan.items(), start=1):
        write_image(root / name, 32, 32, seed=index)
        regions = via_regions(classes)
        size = (root / name).stat().st_size
        data[f"{name}{size}"] = {"filename": name, "size": size, "file_attributes": {},
                                 "regions": {str(k): r for k, r in enumerate(regions)} if version == 1 else regions}
    return write_json(root / "export.json", data)


def _via3_project(root: Path, plan: dict[str, list[str]]) -> Path:
    files, views, metadata = {}, {}, {}
    for index, (name, classes) in enumerate(plan.items(), start=1):
        write_image(root / name, 32, 32, seed=index)
        files[str(index)] = {"fid": str(index), "fname": name, "type": 2, "loc": 1, "src": name}
        views[str(index)] = {"fid_list": [str(index)]}
        for k, cls in enumerate(classes):
            metadata[f"{index}_{k}"] = {"vid": str(index), "flg": 0, "z": [],
                                        "xy": [7, 2 + 8 * k, 2, 8 + 8 * k, 2, 8 + 8 * k, 9], "av": {"1": cls}}
    return write_json(root / "via3.json", {
        "project": {"pid": "__VIA_PROJECT_ID__", "vid_list": list(views)},
        "config": {}, "attribute": {"1": {"aname": "cls", "anchor_id": "FILE1_Z0_XY1", "type": 4, "desc": "",
                                          "options": {}, "default_option_id": ""}},
        "file": files, "view": views, "metadata": metadata})


def _via_csv(root: Path, plan: dict[str, list[str]]) -> Path:
    rows = [["#filename", "file_size", "file_attributes", "region_count", "region_id",
             "region_shape_attributes", "region_attributes"]]
    for index, (name, classes) in enumerate(plan.items(), start=1):
        write_image(root / name, 32, 32, seed=index)
        regions = via_regions(classes)
        if not regions:
            rows.append([name, "1", "{}", "0", "0", "{}", "{}"])
        for k, r in enumerate(regions):
            rows.append([name, "1", "{}", str(len(regions)), str(k), json.dumps(r["shape_attributes"]),
                         json.dumps(r["region_attributes"])])
    path = root / "regions.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _mask_folder(root: Path, plan: dict[str, list[str]]) -> Path:
    import cv2
    import numpy as np

    names = ["common", "rare", "three", "single"]
    (root / "masks").mkdir(parents=True)
    (root / "masks" / "classes.txt").write_text("_background_\n" + "\n".join(names) + "\n")
    for name, classes in plan.items():
        label = np.zeros((32, 32), np.uint8)
        for k, cls in enumerate(classes):
            label[4:10, 2 + 8 * k:8 + 8 * k] = names.index(cls) + 1
        cv2.imwrite(str(root / "masks" / name), label)
    return root / "masks"


@pytest.mark.parametrize("kind, fmt", [("via1", "via1-export"), ("via2", "via2-export"), ("via3", "via3-project"),
                                       ("csv", "via-csv"), ("masks", "masks")])
def test_each_input_format_is_split_in_its_own_format(tmp_path, kind, fmt):
    plan = class_plan(common=8)
    root = tmp_path / "data"
    make = {"via1": lambda: _via_export(root, plan, 1), "via2": lambda: _via_export(root, plan, 2),
            "via3": lambda: _via3_project(root, plan), "csv": lambda: _via_csv(root, plan),
            "masks": lambda: _mask_folder(root, plan)}[kind]
    annotations = make()
    out = tmp_path / "split"
    result = run("split", annotations, "--val", 0.25, "--out", out)
    assert result.exit_code == 0, result.output
    source = read_annotations(annotations, Ledger("x"))
    objects = {}
    for part in ("train", "val"):
        path = out / part if kind == "masks" else out / part / f"{part}{annotations.suffix}"
        assert detect_format(path)[0] == (fmt if fmt in ("masks", "via-csv", "via3-project", "coco") else "via-export")
        dataset = read_annotations(path, Ledger(str(path)))
        assert dataset.source_format == fmt
        assert {image.file_name for image in dataset.images} == part_names(out, part)
        assert [c.name for c in dataset.categories] == [c.name for c in source.categories] or kind != "masks"
        objects.update({image.file_name: sorted(a.category for a in image.annotations) for image in dataset.images})
    assert objects == {image.file_name: sorted(a.category for a in image.annotations) for image in source.images}


def test_an_instance_id_mask_folder_is_split_with_its_instances_json(tmp_path):
    plan = class_plan(common=8)
    project = via_project_dataset(tmp_path / "data", plan)
    instances = tmp_path / "inst"
    assert run("convert", project, instances, "--to", "masks", "--instances").exit_code == 0
    out = tmp_path / "split"
    result = run("split", instances, "--val", 0.25, "--out", out)
    assert result.exit_code == 0, result.output
    source = read_annotations(instances, Ledger("x"))
    objects = {}
    for part in ("train", "val"):
        document = json.loads((out / part / "instances.json").read_text())
        assert document["categories"] == json.loads((instances / "instances.json").read_text())["categories"]
        dataset = read_annotations(out / part, Ledger(part))
        assert {image.file_name for image in dataset.images} == part_names(out, part)
        objects.update({image.file_name: sorted(a.category for a in image.annotations) for image in dataset.images})
    assert objects == {image.file_name: sorted(a.category for a in image.annotations) for image in source.images}


# ---------------------------------------------------------------- bad inputs

@pytest.fixture
def small(tmp_path):
    return coco_dataset(tmp_path / "data", {f"a{i}.png": ["common"] for i in range(4)})


@pytest.mark.parametrize("options, expected", [
    (["--val", 0], "--val 0: expected a fraction between 0 and 1"),
    (["--val", 1], "--val 1: expected a fraction between 0 and 1"),
    (["--val", -0.2], "--val -0.2"),
    (["--val", "nan"], "--val nan"),
    (["--val", 0.2, "--test", 1.5], "--test 1.5"),
    (["--val", 0.5, "--test", 0.5], "--val 0.5 + --test 0.5 = 1: leaves no image for train"),
    (["--val", 0.3, "--test", 0.3, "--seed", -1], "--seed -1"),
])
def test_bad_options_are_refused_before_anything_is_read(small, tmp_path, options, expected):
    out = tmp_path / "out"
    line = assert_refused(run("split", small, *options, "--out", out))
    assert expected in line, line
    assert not out.exists()


def test_bad_inputs_are_refused_and_nothing_is_written(small, tmp_path):
    root = small.parent
    before = snapshot(root)
    out = tmp_path / "out"
    two = coco_dataset(tmp_path / "two", {"a.png": ["common"], "b.png": ["common"]})
    assert_refused(run("split", two, "--val", 0.3, "--test", 0.3, "--out", out), str(two), "2 images", "3 parts")
    few = coco_dataset(tmp_path / "few", {"only.png": ["common"]})
    assert_refused(run("split", few, "--out", out), "1 image", "2 parts")
    full = tmp_path / "full"
    (full / "keep").mkdir(parents=True)
    assert_refused(run("split", small, "--out", full), str(full), "not empty")
    assert_refused(run("split", small, "--out", root), "input's folder")
    (tmp_path / "afile").write_text("x")
    assert_refused(run("split", small, "--out", tmp_path / "afile"), "not a folder")
    broken = tmp_path / "broken.json"
    broken.write_text(small.read_text()[:-40])
    assert_refused(run("split", broken, "--out", out), str(broken), "invalid JSON")
    assert_refused(run("split", tmp_path / "missing.json", "--out", out), "missing.json")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".segcli-")]
    assert snapshot(root) == before
    # an empty --out is fine, and filled whole
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("split", small, "--out", empty).exit_code == 0
    assert sorted(p.name for p in empty.iterdir()) == ["split.json", "train", "train.txt", "val", "val.txt"]


def test_a_full_disk_leaves_nothing_half_written(tmp_path):
    """The parts are built in a temporary folder beside --out: a disk filling up in the middle of
    the copies of label PNGs gives one error line and leaves nothing on the disk."""
    import shlex
    import subprocess
    import sys

    from tests.helpers import can_mount_tmpfs

    if not can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs in a private namespace here (needs root and unshare)")
    masks = _mask_folder(tmp_path / "data", class_plan(common=30))
    disk = tmp_path / "disk"
    disk.mkdir()
    split = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "segcli", "split", str(masks), "--out", str(disk / "parts")])
    script = (f"mount -t tmpfs -o size=40k tmpfs {shlex.quote(str(disk))} || exit 99; {split}; rc=$?; "
              f"find {shlex.quote(str(disk))} -mindepth 1 | sed 's/^/LEFT /' 1>&2; exit $rc")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], check=False, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    left = [line for line in done.stderr.splitlines() if line.startswith("LEFT ")]
    assert left == [], done.stderr
    assert_refused(subprocess.CompletedProcess([], done.returncode, done.stdout,
                                               "\n".join(line for line in done.stderr.splitlines() if line not in left)),
                   "No space left on device")


def test_every_malformed_corpus_file_is_one_error_line(tmp_path):
    """tests/data/bad (see test_bad_inputs.py): a file unreadable as a whole or with an invalid
    entry is refused naming the file and the item, nothing written; no file makes a traceback."""
    from tests.cli.test_bad_inputs import ANNOTATIONS, copy_bad
    from tests.cli.test_bad_inputs import write_image as write_corpus_image

    for number, (name, (kind, fragments)) in enumerate(ANNOTATIONS.items()):
        folder = tmp_path / str(number)
        write_corpus_image(folder / "a.png")
        source = copy_bad(name, folder)
        out = folder / "out"
        result = run("split", source, "--out", out)
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, repr(result.exception))
        if kind in ("parse", "content"):
            line = assert_refused(result, source.name, *fragments)
            assert not out.exists(), (name, line)


def test_out_inside_an_input_mask_folder_is_refused(tmp_path):
    masks = _mask_folder(tmp_path / "data", class_plan(common=6))
    assert_refused(run("split", masks, "--out", masks / "parts"), "inside the input folder")
    assert not (masks / "parts").exists()


def test_fractions_give_sizes_rounded_and_never_an_empty_part(tmp_path):
    data = coco_dataset(tmp_path / "data", {f"a{i}.png": [] for i in range(10)})
    for val, expected in ((0.2, 2), (0.01, 1), (0.25, 3), (0.95, 9)):
        out = tmp_path / f"v{val}"
        assert run("split", data, "--val", val, "--out", out).exit_code == 0
        assert len(part_names(out, "val")) == expected == max(1, min(9, math.floor(10 * val + 0.5)))

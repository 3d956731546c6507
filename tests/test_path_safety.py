"""Path safety: names in annotation files (``../../x.png``, absolute paths) and symlinks out of
the folders a user gave never make segcli read or write outside those folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from segcli.cli import app
from segcli.engine.eval.inputs import read_mask_maps
from segcli.engine.core.inference import list_images
from segcli.formats.images import resolve_images
from segcli.engine.predict.outputs import write_label_map
from segcli.formats.masks import read_mask_folder
from segcli.ledger import Ledger
from segcli.structures import Dataset, ImageRecord
from tests.helpers import write_image, write_json


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_annotation_names_never_resolve_outside_the_image_folder(tmp_path):
    root = tmp_path / "images"
    write_image(root / "inside.png", 20, 10)
    secret = write_image(tmp_path / "secret.png", 8, 8)
    os.symlink(secret, root / "link.png")
    names = ["../secret.png", str(secret), "sub/../../secret.png", "other/link.png", "link.png",
             "./../images/../secret.png", "..\\secret.png"]
    records = [ImageRecord(name) for name in names] + [ImageRecord("../images/inside.png")]
    ledger = Ledger()
    resolve_images(Dataset(records, [], tmp_path / "a.json", "via2-export"), root, ledger)
    assert all(r.path is None for r in records[:-1]), [(r.file_name, r.path) for r in records]
    assert records[-1].path is not None and records[-1].path.resolve().parent == root.resolve()
    # "other/link.png" falls back to the base name, which must not pick the symlink out either
    missing = {e.image for e in ledger.entries if e.action == "missing"}
    assert missing == set(names)


def test_predict_listing_and_mask_folders_skip_symlinks_out(tmp_path):
    folder = tmp_path / "in"
    kept = write_image(folder / "a.png", 16, 16)
    os.symlink(kept, folder / "alias.png")  # a link inside the folder is fine
    os.symlink(write_image(tmp_path / "secret.png", 16, 16), folder / "leak.png")
    assert [p.name for p in list_images(folder)] == ["a.png", "alias.png"]

    masks = tmp_path / "masks"
    write_label_map(np.ones((8, 8), np.uint8), masks / "a.png")
    write_label_map(np.ones((8, 8), np.uint8), tmp_path / "outside_mask.png")
    os.symlink(tmp_path / "outside_mask.png", masks / "b.png")
    (masks / "classes.txt").write_text("background\nthing\n")
    assert list(read_mask_maps(masks).maps) == ["a"]
    assert [r.file_name for r in read_mask_folder(masks, Ledger(), None).images] == ["a.png"]


def test_convert_to_masks_writes_only_inside_the_output_folder(tmp_path):
    images = tmp_path / "work" / "images"
    write_image(images / "evil.png", 40, 30)
    region = {"shape_attributes": {"name": "rect", "x": 5, "y": 5, "width": 10, "height": 10},
              "region_attributes": {"class": "box"}}
    names = ["../../evil.png", "/tmp/evil.png", "..\\..\\evil.png"]
    project = {f"{name}1": {"filename": name, "size": 1, "regions": [region], "file_attributes": {}}
               for name in names}
    source = write_json(tmp_path / "work" / "via.json", project)
    before = _files(tmp_path)
    out = tmp_path / "work" / "out" / "masks"
    result = CliRunner().invoke(app, ["convert", str(source), str(out), "--to", "masks", "--images", str(images)])
    assert result.exit_code == 0, result.output
    written = _files(tmp_path) - before
    assert written and all(out in p.parents or p.parent == out.parent for p in written), written
    assert (out / "evil.png").is_file()

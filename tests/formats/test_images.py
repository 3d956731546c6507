"""Image lookup and header sizes: EXIF rotation, name fallbacks, unreadable files, no escapes."""

from __future__ import annotations

import os

from PIL import Image

from segcli.formats.images import ImageFolder, read_image_size, resolve_images
from segcli.ledger import Ledger
from segcli.structures import Dataset, ImageRecord
from tests.helpers import write_image


def test_exif_rotated_photo_reports_the_size_a_user_sees(tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (64, 32), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    image.save(path, exif=exif)
    assert read_image_size(path) == (32, 64)
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (64, 32)).save(plain)
    assert read_image_size(plain) == (64, 32)


def test_lookup_by_prefix_and_size_and_refusals(tmp_path):
    root = tmp_path / "imgs"
    write_image(root / "sub" / "a.png", 20, 10)
    b = write_image(root / "b.png", 30, 10, seed=2)
    (root / "broken.png").write_bytes(b"not an image")
    outside = write_image(tmp_path / "secret.png", 8, 8)
    os.symlink(outside, root / "link.png")
    records = [ImageRecord("./images/a.png"), ImageRecord("renamed.png", size_bytes=b.stat().st_size),
               ImageRecord("broken.png"), ImageRecord("../secret.png"), ImageRecord("link.png"),
               ImageRecord("nothere.png")]
    ledger = Ledger()
    resolve_images(Dataset(records, [], tmp_path / "x.json", "via2-export"), root, ledger)
    assert (records[0].width, records[0].height) == (20, 10)
    assert (records[1].width, records[1].height) == (30, 10)
    assert [r.path is None for r in records] == [False, False, True, True, True, True]
    reasons = {e.image: e.reason for e in ledger.entries}
    assert "unreadable" in reasons["broken.png"]
    assert "outside the image folder" in reasons["../secret.png"]
    assert "outside the image folder" in reasons["link.png"]
    assert ImageFolder(root).inside(root / "sub" / "a.png")

"""Paths that are not UTF-8 (issue 13): Linux allows any bytes in a file name, and OpenCV's
path functions (``cv2.imread``/``cv2.imwrite``) crash the process with SIGSEGV on them. Each
case runs in a subprocess, so a crash fails the test instead of killing the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "shapes" / "val"
TIMEOUT = 120  # seconds: only so a hang fails; nothing is timed

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="file names of raw bytes are a Linux matter")


def non_utf8_folder(tmp_path: Path) -> Path:
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xffdata"))
    folder.mkdir()
    return folder


def test_label_masks_written_into_a_non_utf8_folder(tmp_path):
    """convert --to masks into such a folder: it crashed (exit -11) in cv2.imwrite, then the
    report's JSON could not encode the path."""
    out = non_utf8_folder(tmp_path) / "masks"
    done = subprocess.run([sys.executable, "-m", "segcli", "convert", str(EXAMPLE / "via_project.json"), str(out),
                           "--to", "masks"], capture_output=True, text=True, errors="surrogateescape",
                          timeout=TIMEOUT, cwd=ROOT)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert len(list(out.rglob("*.png"))) == 20
    report = json.loads(Path(f"{out}.report.json").read_text(encoding="utf-8"))
    assert report["output"] == str(out)  # the JSON escape \udcff reads back as the same path
    stats = subprocess.run([sys.executable, "-m", "segcli", "stats", str(out), "--check"], capture_output=True,
                           text=True, errors="surrogateescape", timeout=TIMEOUT, cwd=ROOT)
    assert stats.returncode == 0, stats.stderr[-2000:]


def test_training_images_read_from_a_non_utf8_folder(tmp_path):
    """The training reader decoded with cv2.imread, which crashed on such a path."""
    folder = non_utf8_folder(tmp_path)
    image = folder / "a.jpg"
    image.write_bytes((EXAMPLE / "images" / "000000.jpg").read_bytes())
    script = ("import sys; from pathlib import Path; from segcli.data.datasets import read_rgb; "
              "from segcli.structures import ImageRecord; "
              "pixels = read_rgb(ImageRecord('a.jpg', width=320, height=240, path=Path(sys.argv[1]))); "
              "print(None if pixels is None else pixels.shape)")
    done = subprocess.run([sys.executable, "-c", script, str(image)], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=ROOT)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "(240, 320, 3)", done.stdout

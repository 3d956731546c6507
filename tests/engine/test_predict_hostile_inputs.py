"""Hostile inputs to ``segcli predict`` (issue 13): images that used to hang or crash it, the pixel
limit, option ranges, and non-regular files.

A failing image (too thin for a resize, a 40 GB file named .jpg, a header over the pixel limit)
is skipped and named like a corrupt one; a failing decoding worker or model ends the run with one
``error:`` line and exit code 2. Before the fixes an exception in a DataLoader worker left the
process waiting for its workers forever, so every run here is a real subprocess with a timeout:
a hang fails the test instead of hanging the suite. The shipped model at a small ``--imgsz`` on
64x48 images keeps each run to a few seconds.
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
import pytest
from typer.testing import CliRunner

from segcli.cli import app
from tests.helpers import write_image

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
HANG_GUARD = 120  # seconds; only against hangs (each run takes a few seconds)
THIN = {"row.png": (2000, 1), "column.png": (1, 2000), "two_rows.png": (2000, 2), "dot.png": (1, 1),
        "normal.png": (64, 48)}


def segcli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=HANG_GUARD)


def segcli_patched(patch: str, *args) -> subprocess.CompletedProcess:
    """segcli run after ``patch`` (Python code) stands in for a failure no real input triggers
    on demand (a decoder crashing its process, a model failing); forked workers inherit it."""
    code = f"import sys\n{patch}\nsys.argv = ['segcli', *sys.argv[1:]]\nfrom segcli.cli import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=HANG_GUARD)


def assert_one_error(done: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2 and exactly one non-empty stderr line, ``error: ...`` holding ``words``."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr[-3000:]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def blank_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit PNG of zeros, built row by row (no pixel array): 20000x20000 is a file of 60 KB
    that decodes to 1.2 GB of RGB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(6)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def sparse_file(path: Path, size: int = 40 * 2**30) -> Path:
    """A file of ``size`` zero bytes that takes no disk space."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


# thin images are predicted ----------------------------------------------------------------------

@pytest.mark.parametrize("task, workers", [("instance", 2), ("semantic", 0)])
def test_thin_images_are_predicted(tmp_path, task, workers):
    images = tmp_path / "images"
    for name, (width, height) in THIN.items():
        write_image(images / name, width, height)
    out = tmp_path / "out"
    done = segcli("predict", "folder", images, "--task", task, "--out", out, "--workers", workers, "--procs", 1,
                  "--imgsz", 64)
    assert done.returncode == 0, done.stderr[-3000:]
    result = summary(out)
    assert result["done"] == len(THIN) and result["skipped"] == [], result
    dataset = json.loads((out / "dataset.json").read_text())
    assert {image["file_name"]: (image["width"], image["height"]) for image in dataset["images"]} == THIN
    for name, (width, height) in THIN.items():
        overlay = cv2.imread(str(out / "overlays" / Path(name).with_suffix(".jpg")))
        assert overlay is not None and overlay.shape[:2] == (height, width), name
        if task == "semantic":
            label_map = cv2.imread(str(out / "masks" / name), cv2.IMREAD_UNCHANGED)
            assert label_map.shape[:2] == (height, width), name


# images that cannot be decoded are skipped and named --------------------------------------------

def test_undecodable_images_are_skipped_and_named(tmp_path):
    images = tmp_path / "images"
    write_image(images / "good.png", 64, 48)
    sparse_file(images / "huge.jpg")  # 40 GB of zeros: np.fromfile raised MemoryError in a worker
    blank_png(images / "bomb.png", 20000, 20000)  # 400 megapixels: 4.7 GB and a 20000x20000 overlay
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    os.mkfifo(images / "pipe.png")  # never opened (it would block)
    out = tmp_path / "out"
    done = segcli("predict", "folder", images, "--out", out, "--workers", 2, "--imgsz", 64)
    assert done.returncode == 0, done.stderr[-3000:]
    result = summary(out)
    reasons = {item["image"]: item["reason"] for item in result["skipped"]}
    assert result["done"] == 1 and sorted(reasons) == ["bomb.png", "corrupt.jpg", "huge.jpg"], result
    assert "20000x20000" in reasons["bomb.png"] and "megapixel limit" in reasons["bomb.png"], reasons
    assert "GB" in reasons["huge.jpg"] and "megapixel limit" in reasons["huge.jpg"], reasons
    for name in reasons:
        assert f"skipped {name}:" in done.stdout
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["good.jpg"]


def test_pixel_limit_from_the_environment(tmp_path):
    """SEGCLI_MAX_MEGAPIXELS=0.01 (10,000 pixels): 64x48 passes, 200x200 is skipped, in `predict image`."""
    small, big = write_image(tmp_path / "small.png", 64, 48), write_image(tmp_path / "big.png", 200, 200)
    out = tmp_path / "out"
    done = segcli("predict", "image", small, big, "--out", out, env={"SEGCLI_MAX_MEGAPIXELS": "0.01"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = summary(out)
    assert result["done"] == 1 and [item["image"] for item in result["skipped"]] == ["big.png"], result
    assert "200x200" in result["skipped"][0]["reason"] and "0.01 megapixel limit" in result["skipped"][0]["reason"]


def test_failing_images_with_several_processes(tmp_path):
    """--procs 2 (each with a DataLoader worker): the failing images are skipped, the run exits."""
    from segcli.engine.predict.shards import MIN_IMAGES_PER_PROCESS

    images = tmp_path / "images"
    for k in range(2 * MIN_IMAGES_PER_PROCESS):
        write_image(images / f"{k:02d}.png", 64, 48, seed=k)
    write_image(images / "row.png", 2000, 1)
    sparse_file(images / "huge.jpg")
    out = tmp_path / "out"
    done = segcli("predict", "folder", images, "--out", out, "--procs", 2, "--workers", 1, "--imgsz", 32)
    assert done.returncode == 0, done.stderr[-3000:]
    result = summary(out)
    assert result["processes"] == 2 and result["done"] == 2 * MIN_IMAGES_PER_PROCESS + 1, result
    assert [item["image"] for item in result["skipped"]] == ["huge.jpg"], result


# a failing worker or model ends the run with one line ---------------------------------------------

KILL_DECODER = """
import os, signal
import segcli.engine.core.inference as predictor
decode = predictor.decode_image
def crashing_decoder(path):  # like a decoder's segfault: the worker process dies
    if path.name == "crash.png":
        os.kill(os.getpid(), signal.SIGKILL)
    return decode(path)
predictor.decode_image = crashing_decoder
"""

FAILING_MODEL = """
import segcli.engine.core.inference as predictor
def failing_forward(self, images):
    raise RuntimeError("simulated model failure\\nsecond line")
predictor.Predictor._forward = failing_forward
"""


def test_a_dying_decoding_worker_ends_the_run_with_one_line(tmp_path):
    images = tmp_path / "images"
    for name in ("a.png", "crash.png", "z.png"):
        write_image(images / name, 64, 48)
    done = segcli_patched(KILL_DECODER, "predict", "folder", images, "--out", tmp_path / "out", "--workers", 2,
                          "--procs", 1, "--imgsz", 32)
    assert_one_error(done, "decoding worker")


@pytest.mark.parametrize("procs, workers, count", [(1, 2, 3), (2, 1, 32)])
def test_a_failing_model_ends_the_run_with_one_line(tmp_path, procs, workers, count):
    images = tmp_path / "images"
    for k in range(count):
        write_image(images / f"{k:02d}.png", 64, 48, seed=k)
    done = segcli_patched(FAILING_MODEL, "predict", "folder", images, "--out", tmp_path / "out", "--workers",
                          workers, "--procs", procs, "--imgsz", 32)
    assert_one_error(done, "simulated model failure", ".png")


# option ranges: refused before the model is loaded or any folder made --------------------------------

BAD_OPTIONS = [("--imgsz", "100000"), ("--imgsz", "-5"), ("--imgsz", "31"), ("--batch", "0"), ("--workers", "-3"),
               ("--conf", "nan"), ("--conf", "-0.1"), ("--conf", "1.5"), ("--iou", "inf"), ("--iou", "2"),
               ("--max-det", "0"), ("--alpha", "-1"), ("--alpha", "nan"), ("--tile", "63"), ("--tile", "100000"),
               ("--procs", "-1")]


@pytest.mark.parametrize("option, value", BAD_OPTIONS)
def test_bad_option_values_are_refused(tmp_path, option, value):
    write_image(tmp_path / "images" / "a.png", 64, 48)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", "folder", str(tmp_path / "images"), "--out", str(out), option,
                                      value])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {option} "), result.output
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "-1", "1.01"])
def test_bad_conf_of_predict_image_is_refused(tmp_path, value):
    image, out = write_image(tmp_path / "a.png", 64, 48), tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", "image", str(image), "--out", str(out), "--conf", value])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: --conf "), result.output
    assert not out.exists()


# non-regular files ----------------------------------------------------------------------------------

def test_predict_image_of_a_fifo_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    out = tmp_path / "out"
    done = segcli("predict", "image", tmp_path / "pipe.jpg", "--out", out)
    assert_one_error(done, "pipe.jpg", "not a regular file")
    assert not out.exists()

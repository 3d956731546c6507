"""Resources: a full or read-only output disk gives one clear error line, exit code 2, inputs
untouched and nothing half-written; oversized annotation files are refused before they are read.

The full and read-only disks are real: each command runs in its own mount namespace
(``unshare -m``) with a small or read-only tmpfs over its output folder. Where the machine does
not allow that (not root, no unshare), those tests skip.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from segcli.errors import SegcliError
from segcli.fileio import read_json
from tests.helpers import can_mount_tmpfs

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_VAL = REPO / "examples" / "shapes" / "val"


def _run_on_tmpfs(tmp_path: Path, options: str, args: list[str]) -> tuple[int, str, list[str]]:
    """Run ``segcli ARGS`` with a tmpfs (mount ``options``) over tmp_path/disk; returns the exit
    code, stderr and what was left on the tmpfs (relative paths of files)."""
    if not can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs in a private namespace here (needs root and unshare)")
    disk = tmp_path / "disk"
    disk.mkdir()
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "segcli", *args])
    lister = shlex.quote(sys.executable) + " -c " + shlex.quote(
        "import os,sys; [print('LEFT', os.path.relpath(os.path.join(d, f), sys.argv[1])) "
        "for d, _, fs in os.walk(sys.argv[1]) for f in fs]")
    script = (f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(disk))} || exit 99; "
              f"{command} >/dev/null; rc=$?; {lister} {shlex.quote(str(disk))} 1>&2; exit $rc")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600,
                          cwd=REPO, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "SEGCLI_WEIGHTS_DIR": str(REPO / "weights")})
    assert done.returncode != 99, done.stderr
    left = [line[5:] for line in done.stderr.splitlines() if line.startswith("LEFT ")]
    message = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("LEFT "))
    return done.returncode, message, left


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_one_line_error(code: int, message: str, *words: str) -> None:
    assert code == 2, message
    assert "Traceback" not in message, message
    lines = [line for line in message.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), message
    assert all(word in lines[0] for word in words), message


@pytest.fixture(scope="module")
def example_digest():
    return _digest(EXAMPLE_VAL)


def test_convert_to_a_read_only_disk(tmp_path, example_digest):
    out = tmp_path / "disk" / "coco.json"
    code, message, left = _run_on_tmpfs(tmp_path, "ro,size=1m", [
        "convert", str(EXAMPLE_VAL / "via_project.json"), str(out), "--images", str(EXAMPLE_VAL / "images")])
    _assert_one_line_error(code, message, "cannot write", "Read-only file system")
    assert left == []
    assert _digest(EXAMPLE_VAL) == example_digest


def test_convert_to_a_full_disk_leaves_nothing(tmp_path, example_digest):
    out = tmp_path / "disk" / "coco.json"
    code, message, left = _run_on_tmpfs(tmp_path, "size=8k", [
        "convert", str(EXAMPLE_VAL / "via_project.json"), str(out), "--images", str(EXAMPLE_VAL / "images")])
    _assert_one_line_error(code, message, "cannot write", "No space left on device")
    assert left == []  # neither a truncated coco.json nor its temporary file
    assert _digest(EXAMPLE_VAL) == example_digest


def test_predict_onto_a_full_disk_stops_cleanly(tmp_path, example_digest):
    out = tmp_path / "disk" / "pred"
    code, message, left = _run_on_tmpfs(tmp_path, "size=96k", [
        "predict", "folder", str(EXAMPLE_VAL / "images"), "--out", str(out), "--procs", "1"])
    _assert_one_line_error(code, message, "No space left on device")
    assert _digest(EXAMPLE_VAL) == example_digest
    # what it had written before the disk filled up is whole: no final JSON is half-written
    assert not any(name.endswith(".json") and not name.endswith(".report.json") for name in left), left


def test_train_onto_a_read_only_disk_fails_before_training(tmp_path, example_digest):
    code, message, left = _run_on_tmpfs(tmp_path, "ro,size=1m", [
        "train", str(REPO / "examples" / "shapes"), "--epochs", "1", "--out", str(tmp_path / "disk" / "runs")])
    _assert_one_line_error(code, message, "Read-only file system")
    assert left == []


def test_oversized_annotation_files_are_refused_before_reading(tmp_path, monkeypatch):
    """A file above the limit (SEGCLI_MAX_JSON_MB, default in README) is refused from its size,
    without reading it; the message says how to raise the limit."""
    big = tmp_path / "big.json"
    with big.open("wb") as handle:  # sparse: 3 MB on paper, nothing on disk
        handle.seek(3 * 1024**2)
        handle.write(b"]")
    monkeypatch.setenv("SEGCLI_MAX_JSON_MB", "2")
    with pytest.raises(SegcliError, match="larger than the 2 MB limit.*SEGCLI_MAX_JSON_MB"):
        read_json(big)
    monkeypatch.setenv("SEGCLI_MAX_JSON_MB", "4")
    with pytest.raises(SegcliError, match="invalid JSON"):  # under the limit: read (and found broken)
        read_json(big)
    small = tmp_path / "ok.json"
    small.write_text(json.dumps({"a": 1}))
    monkeypatch.setenv("SEGCLI_MAX_JSON_MB", "not a number")
    with pytest.raises(SegcliError, match="SEGCLI_MAX_JSON_MB"):
        read_json(small)


def test_an_image_claiming_a_trillion_pixels_is_refused(tmp_path):
    """A COCO image of 10^6 x 10^6 px (no file on disk) would need a terabyte label map."""
    from typer.testing import CliRunner

    from segcli.cli import app

    coco = {"images": [{"id": 1, "file_name": "huge.png", "width": 1_000_000, "height": 1_000_000}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
                             "iscrowd": 0, "segmentation": [[0, 0, 10, 0, 10, 10]]}],
            "categories": [{"id": 1, "name": "thing"}]}
    source = tmp_path / "coco.json"
    source.write_text(json.dumps(coco))
    out = tmp_path / "masks"
    result = CliRunner().invoke(app, ["convert", str(source), str(out), "--to", "masks"])
    assert result.exit_code == 2 and "megapixel limit" in result.output, result.output
    assert not out.exists()

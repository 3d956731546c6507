"""``segcli predict`` outputs under hostile conditions (issue 13): an --out among the inputs, two
runs into one folder, colliding output names, long and non-UTF-8 file names, an --out that is a
file, JSON outputs written all-or-nothing, and progress that counts finished images.

Tiny 64x48 images and the shipped models (seen at --imgsz 64 where the command has the option)
keep every run to a few seconds. Refusals are one ``error:`` line with exit code 2, and the inputs
are byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segcli.engine.predict.run import PredictOptions, predict_folder, predict_images
from segcli.errors import SegcliError
from segcli.formats.masks import read_label_map
from segcli.models.defaults import default_weights
from tests.helpers import assert_refused, run, snapshot, write_image

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 64, 48
FAST = ("--imgsz", 64, "--workers", 0, "--procs", 1, "--device", "cpu")
HANG_GUARD = 120  # seconds: only so that a broken run cannot hang the suite; nothing is timed


def images(folder: Path, *names: str) -> Path:
    for seed, name in enumerate(names):
        write_image(folder / name, WIDTH, HEIGHT, seed=seed)
    return folder


def options(out: Path, **changes) -> PredictOptions:
    settings = dict(weights=default_weights("instance"), out=out, imgsz=64, workers=0, procs=1, device="cpu")
    settings.update(changes)
    return PredictOptions(**settings)


def journal_names(out: Path) -> list[str]:
    return [json.loads(line)["file_name"] for line in (out / "results.jsonl").read_text().splitlines()]


def outputs_name_every_image(out: Path, expected: set[str]) -> None:
    """dataset.json, predictions.json, via_project.json and the journal all hold ``expected``."""
    dataset = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert {image["file_name"] for image in dataset["images"]} == expected
    ids = {image["id"] for image in dataset["images"]}
    assert len(ids) == len(expected)
    assert {a["image_id"] for a in json.loads((out / "predictions.json").read_text())} <= ids
    via = json.loads((out / "via_project.json").read_text(encoding="utf-8"))
    assert {entry["filename"] for entry in via["_via_img_metadata"].values()} == expected
    assert sorted(journal_names(out)) == sorted(expected)


# --------------------------------------------------------------------------- 1. --out among the inputs


@pytest.mark.parametrize("case", ["resume-into-images", "recursive-inside-images", "holds-the-images"])
def test_out_among_the_inputs_is_refused_and_nothing_is_touched(tmp_path, case):
    """--resume --out IMAGES_DIR (with a results.jsonl there) deleted the user's .*.tmp files and
    wrote among the inputs; an --out inside a folder read with --recursive, or one holding the
    images, would read its outputs back or write beside the inputs."""
    folder = images(tmp_path / "photos", "a.png", "sub/b.png")
    (folder / "results.jsonl").write_text('{"file_name": "a.png", "skipped": "x"}\n')
    (folder / ".notes.tmp").write_text("the user's own hidden file")
    (folder / ".draft.tmp").mkdir()
    (folder / ".draft.tmp" / "keep.txt").write_text("the user's own hidden folder")
    (tmp_path / "results.jsonl").write_text("")
    out, extra = {"resume-into-images": (folder, ["--resume"]),
                  "recursive-inside-images": (folder / "sub" / "out", ["--recursive"]),
                  "holds-the-images": (tmp_path, ["--resume"])}[case]
    before = snapshot(tmp_path)
    result = run("predict", "folder", folder, "--out", out, *extra, *FAST)
    assert_refused(result, str(out))
    assert snapshot(tmp_path) == before
    assert not (folder / "sub" / "out").exists()


def test_images_given_one_by_one_refuse_an_out_that_is_the_folder_of_one_of_them(tmp_path):
    """As `predict image cam1/a.png cam2/b.png` does, resuming into cam2 (which holds a journal)."""
    first = images(tmp_path / "cam1", "a.png") / "a.png"
    second = images(tmp_path / "cam2", "b.png") / "b.png"
    (tmp_path / "cam2" / "results.jsonl").write_text("")
    before = snapshot(tmp_path)
    with pytest.raises(SegcliError, match="folder of the input images"):
        predict_images([first, second], tmp_path / "cam1", options(tmp_path / "cam2", resume=True))
    assert snapshot(tmp_path) == before


def test_resume_needs_a_folder_segcli_predict_wrote(tmp_path):
    """A folder holding some results.jsonl but never written by segcli predict is no output to
    resume (its hidden .tmp files are the user's)."""
    folder = images(tmp_path / "photos", "a.png")
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.jsonl").write_text("")
    (other / ".mine.tmp").write_text("keep")
    before = snapshot(tmp_path)
    assert_refused(run("predict", "folder", folder, "--out", other, "--resume", *FAST), "other")
    assert snapshot(tmp_path) == before


def test_resume_removes_only_segcli_temporaries(tmp_path):
    """What a kill -9 left of segcli's own atomic writes goes; a hidden .tmp of the user's stays."""
    folder = images(tmp_path / "photos", "a.png", "b.png")
    out = tmp_path / "out"
    predict_folder(folder, options(out))
    (out / ".user.tmp").write_text("mine")
    (out / "overlays" / ".user.jpg.tmp").write_text("mine")
    leftovers = [out / ".segcli-0123456789abcdef-1-2.tmp", out / "overlays" / ".segcli-fedcba9876543210-1-2.tmp"]
    for path in leftovers:
        path.write_text("half a write")
    summary = predict_folder(folder, options(out, resume=True))
    assert summary["done"] == 2 and summary["predicted_now"] == 0
    assert (out / ".user.tmp").read_text() == "mine" and (out / "overlays" / ".user.jpg.tmp").read_text() == "mine"
    assert not any(path.exists() for path in leftovers)


# --------------------------------------------------------------------------- 2. one run per folder


def _journalled(out: Path) -> int:
    journal = out / "results.jsonl"
    return len(journal.read_text().splitlines()) if journal.is_file() else 0


def _wait_until_stopped(pid: int, deadline: float) -> None:
    """Until /proc says every thread of ``pid`` is stopped (state T): the writer thread could
    otherwise still land an overlay after the snapshot."""
    tasks = Path(f"/proc/{pid}/task")
    while True:
        states = []
        for task in tasks.iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
        if all(state in "Tt" for state in states):
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.01)


def test_a_second_run_into_a_folder_in_use_is_refused_at_once(tmp_path):
    """Run A holds the output folder's lock (it is stopped with SIGSTOP once it has finished an
    image, so it cannot end meanwhile); run B into the same folder, even with --resume, is refused
    with one line naming the folder and changes nothing; A then completes normally."""
    folder = images(tmp_path / "photos", *(f"i{k:02d}.png" for k in range(12)))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "segcli", "predict", "folder", str(folder), "--out", str(out),
               *(str(a) for a in FAST)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while _journalled(out) < 1:  # A holds the lock before it writes its first journal line
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "run A never finished an image"
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGSTOP)
        _wait_until_stopped(first.pid, deadline)  # kill() returns before every thread has stopped
        before = snapshot(out)
        second = subprocess.run(command + ["--resume"], capture_output=True, text=True, cwd=ROOT, timeout=HANG_GUARD)
        assert second.returncode == 2, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and str(out) in lines[0], second.stderr
        assert "another segcli predict" in lines[0], lines[0]
        assert snapshot(out) == before
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=HANG_GUARD)
    assert first.returncode == 0, err[-3000:]
    assert len(json.loads((out / "dataset.json").read_text())["images"]) == 12


# --------------------------------------------------------------------------- 3. unique output names


def test_same_file_name_in_two_folders_gives_two_predictions(tmp_path):
    """`predict image cam1/frame.jpg cam2/frame.jpg` reported 2 images and wrote 1."""
    images(tmp_path / "cam1", "frame.jpg")
    images(tmp_path / "cam2", "frame.jpg")
    out = tmp_path / "out"
    result = run("predict", "image", tmp_path / "cam1" / "frame.jpg", tmp_path / "cam2" / "frame.jpg",
                 "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    outputs_name_every_image(out, {"cam1/frame.jpg", "cam2/frame.jpg"})
    assert (out / "overlays" / "cam1" / "frame.jpg").is_file() and (out / "overlays" / "cam2" / "frame.jpg").is_file()


def test_same_stem_with_two_extensions_gives_distinct_overlays_and_masks(tmp_path):
    """photo.jpg and photo.png gave one overlay and one masks/photo.png; the colliding ones keep
    their extension in the output name, the same on --resume."""
    folder = images(tmp_path / "photos", "photo.jpg", "photo.png", "other.png")
    out = tmp_path / "out"
    opts = options(out, weights=default_weights("semantic"), formats={"all"})
    summary = predict_folder(folder, opts)
    assert summary["done"] == 3
    outputs_name_every_image(out, {"photo.jpg", "photo.png", "other.png"})
    overlays = sorted(p.name for p in (out / "overlays").iterdir() if not p.name.startswith("."))
    assert overlays == ["other.jpg", "photo.jpg.jpg", "photo.png.jpg"]
    masks = sorted(p.name for p in (out / "masks").iterdir() if not p.name.startswith("."))
    assert masks == ["classes.txt", "other.png", "photo.jpg.png", "photo.png.png"]
    for name in ("photo.jpg", "photo.png"):  # each mask is its own image's prediction
        assert read_label_map(out / "masks" / f"{name}.png").shape == (HEIGHT, WIDTH)
    files = snapshot(out / "masks") | snapshot(out / "overlays")
    predict_folder(folder, replace_options(opts, resume=True))
    assert snapshot(out / "masks") | snapshot(out / "overlays") == files


def replace_options(opts: PredictOptions, **changes) -> PredictOptions:
    from dataclasses import replace

    return replace(opts, **changes)


def test_output_names_of_colliding_inputs_are_unique():
    from segcli.engine.predict.outputs import output_stems

    names = ["photo.jpg", "photo.jpg.png", "photo.png", "PHOTO.bmp", "a/x.png", "a/x.tif", "b/x.png"]
    stems = output_stems(names)
    assert stems["b/x.png"] == "b/x" and stems["a/x.png"] == "a/x.png" and stems["a/x.tif"] == "a/x.tif"
    assert len({s.casefold() for s in stems.values()}) == len(names)
    assert output_stems(list(reversed(names))) == stems  # the order given does not matter


# --------------------------------------------------------------------------- 4. awkward file names


def test_a_251_character_image_name_is_predicted(tmp_path):
    """The temporary name of the overlay write overflowed NAME_MAX (ENAMETOOLONG)."""
    name = "n" * 247 + ".png"
    folder = images(tmp_path / "photos", name)
    out = tmp_path / "out"
    summary = predict_folder(folder, options(out))
    assert summary["done"] == 1 and not summary["skipped"]
    assert (out / "overlays" / ("n" * 247 + ".jpg")).is_file()


def test_a_non_utf8_file_name_is_skipped_and_every_output_written(tmp_path):
    """b'\\xff.png' gave a UnicodeEncodeError after predicting, with predictions.json written
    and dataset.json and via_project.json not: such an image is skipped up front and listed."""
    folder = images(tmp_path / "photos", "good.png")
    bad = os.path.join(os.fsencode(folder), b"\xff.png")
    try:
        with open(bad, "wb") as fh:
            fh.write((folder / "good.png").read_bytes())
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    out = tmp_path / "out"
    result = run("predict", "folder", folder, "--out", out, *FAST)
    assert result.exit_code == 0, (result.output, result.exception)
    outputs_name_every_image(out, {"good.png"})
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["done"] == 1
    assert [item["image"] for item in summary["skipped"]] == ["\\xff.png"]
    assert "UTF-8" in summary["skipped"][0]["reason"]
    assert "\\xff.png" in result.output


def test_prediction_files_are_written_all_or_nothing(tmp_path):
    """via_project.json in the way (a folder): nothing of predictions.json / dataset.json is
    written either."""
    folder = images(tmp_path / "photos", "a.png")
    out = tmp_path / "out"
    predict_folder(folder, options(out))
    for name in ("predictions.json", "dataset.json", "via_project.json"):
        (out / name).unlink()
    (out / "via_project.json").mkdir()
    result = run("predict", "folder", folder, "--out", out, "--resume", *FAST)
    assert_refused(result, "via_project.json")
    assert not (out / "predictions.json").exists() and not (out / "dataset.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".segcli-") and p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- 6. --out a file


def test_out_an_existing_file_is_refused(tmp_path):
    folder = images(tmp_path / "photos", "a.png")
    (tmp_path / "taken").write_text("a file")
    before = snapshot(tmp_path)
    assert_refused(run("predict", "folder", folder, "--out", tmp_path / "taken", *FAST), "taken")
    assert_refused(run("predict", "folder", folder, "--out", tmp_path / "taken" / "sub", *FAST), "taken")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- 7. progress counts finished images


def test_progress_counts_images_written_and_journalled(tmp_path):
    """The bar jumped ahead of what was kept: every reported ``done`` is at most the number of
    journal lines at that moment, and the last one is all of them."""
    folder = images(tmp_path / "photos", *(f"i{k:02d}.png" for k in range(12)))
    out = tmp_path / "out"
    seen = []

    def on_event(kind, **data):
        if kind == "progress":
            seen.append((data["done"], _journalled(out)))

    predict_folder(folder, options(out, batch=4), on_event)
    assert seen and all(done <= journalled for done, journalled in seen), seen
    assert seen[-1][0] == 12


def test_a_non_utf8_images_folder_and_out_still_give_every_output(tmp_path):
    """The folder's own name (COCO's description) and --out (summary.json) may hold such bytes too."""
    base = os.fsencode(tmp_path)
    folder, out = Path(os.fsdecode(base + b"/\xfephotos")), Path(os.fsdecode(base + b"/\xfeout"))
    picture = images(tmp_path / "plain", "a.png") / "a.png"  # (cv2.imwrite crashes on such a path)
    try:
        folder.mkdir()
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    (folder / "a.png").write_bytes(picture.read_bytes())
    summary = predict_folder(folder, options(out))
    assert summary["done"] == 1
    outputs_name_every_image(out, {"a.png"})
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["out"].endswith("\\xfeout")


def test_default_output_folder_inside_a_recursively_read_folder_is_refused(tmp_path, monkeypatch):
    """Run from inside the images folder with --recursive: runs/predict/exp would be read back."""
    images(tmp_path, "a.png")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(SegcliError, match="read back"):
        predict_folder(Path("."), options(None, recursive=True))
    assert snapshot(tmp_path) == before and not (tmp_path / "runs").exists()

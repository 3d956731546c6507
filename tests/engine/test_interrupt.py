"""Interruptions: real SIGINT / SIGTERM / SIGKILL sent to running ``segcli train`` and ``segcli
predict folder`` processes, also under torchrun (and, for exact positions, to this process during a
training run).

Every wait has a timeout as a hang guard; nothing asserts on timing. Subprocesses run with one
thread (OMP_NUM_THREADS=1), so their numbers equal the in-process reference run's.
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
import torch

from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.core.interrupt import Interrupted
from segcli.engine.train.metrics_csv import read_metrics_csv
from segcli.engine.train.trainer import TrainConfig, Trainer
from segcli.models.checkpoint import read_checkpoint

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
HANG_GUARD = 240  # seconds; only against hangs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 training and 2 validation images of 128x96 (4 steps an epoch at --batch 2)."""
    root = tmp_path_factory.mktemp("interrupt_data")
    generate_shapes_dataset(root / "train", 8, seed=7, sizes=((128, 96),))
    generate_shapes_dataset(root / "val", 2, seed=8, sizes=((128, 96),))
    return root


def _config(data, out, name, **kwargs) -> TrainConfig:
    options = dict(data=str(data), task="semantic", model="pspnet_mobilenet_v3_large", epochs=3, batch=2, imgsz=96,
                   workers=0, out=str(out), name=name, seed=3)
    options.update(kwargs)
    return TrainConfig(**options)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run (one thread, like the subprocesses): its last.pt weights and rows."""
    out = tmp_path_factory.mktemp("interrupt_ref")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer.new(_config(data, out, "ref")).run()
    finally:
        torch.set_num_threads(threads)
    return (read_checkpoint(out / "ref" / "weights" / "last.pt")["state_dict"],
            read_metrics_csv(out / "ref" / "metrics.csv"))


def _same_as_reference(run: Path, reference) -> None:
    weights, rows = reference
    got = read_checkpoint(run / "weights" / "last.pt")["state_dict"]
    assert all(torch.equal(weights[k], got[k]) for k in weights)
    mine = read_metrics_csv(run / "metrics.csv")
    assert [(r["epoch"], r["loss"], r["mIoU"]) for r in mine] == [(r["epoch"], r["loss"], r["mIoU"]) for r in rows]


# in this process: a real signal at an exact step ------------------------------------------------

@pytest.mark.parametrize("signum, epoch, step, where", [
    (signal.SIGINT, 1, 2, "at epoch 2 step 2 of 4"),            # in the middle of an epoch
    (signal.SIGTERM, 0, 4, "in the validation after epoch 1"),  # after the last step: stops the validation
])
def test_signal_saves_the_position_and_resume_is_exact(data, tmp_path, reference, signum, epoch, step, where):
    def send(kind, **info):
        if kind == "epoch_start":
            send.epoch = info["epoch"]
        if kind == "step" and send.epoch == epoch and info["step"] == step:
            os.kill(os.getpid(), signum)

    before = signal.getsignal(signal.SIGTERM)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(Interrupted) as caught:
            Trainer.new(_config(data, tmp_path, "cut"), send).run()
        assert signal.getsignal(signal.SIGTERM) is before  # the handler is the run's only
        assert caught.value.exit_code == 128 + signum
        assert where in caught.value.message and "segcli train --resume" in caught.value.message
        run = tmp_path / "cut"
        saved = read_checkpoint(run / "weights" / "last.pt")["training"]["state"]
        assert (saved["epoch"], saved["step"]) == (epoch, step)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["interrupted"] == {"signal": signal.Signals(signum).name, "epoch": epoch + 1, "step": step,
                                          "steps": 4}
        assert len(read_metrics_csv(run / "metrics.csv")) == epoch  # finished epochs only
        assert Trainer.resume(run).run()["epochs_done"] == 3
    finally:
        torch.set_num_threads(threads)
    _same_as_reference(tmp_path / "cut", reference)


# subprocesses -----------------------------------------------------------------------------------

def _segcli(*args, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "segcli", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=new_session)


def _wait_for(condition, process: subprocess.Popen, what: str) -> None:
    """Poll until ``condition()`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"ended before {what}: {process.returncode}\n{process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} after {HANG_GUARD} s")
        time.sleep(0.05)


def _descendants(pid: int) -> set[int]:
    """Process ids below ``pid`` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _all_gone(pids: set[int]) -> bool:
    deadline = time.monotonic() + 30  # hang guard: DataLoader workers notice their parent within seconds
    while any(_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _interrupt(process: subprocess.Popen, signum: int) -> tuple[int, str, str]:
    """SIGINT to the whole process group (Ctrl-C in a terminal) or another signal to the main
    process only (a scheduler's SIGTERM); then wait for the end: (exit code, stdout, stderr)."""
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    return _finish(process)


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=HANG_GUARD)
    return process.returncode, out, err


def _json_files_parse(folder: Path) -> list[Path]:
    """Every visible .json file below ``folder`` parses; temporaries are hidden (.NAME...tmp)."""
    files = [p for p in folder.rglob("*.json") if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    for path in files:
        json.loads(path.read_text())
    return files


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_train_subprocess_stops_cleanly_and_resumes(data, tmp_path, reference, signum):
    """SIGINT to the whole process group (as Ctrl-C in a terminal: the DataLoader worker gets it
    too) or SIGTERM to the main process only: exit 130/143, one line, no traceback, last.pt loads,
    no process left; --resume finishes the run with the reference's weights."""
    process = _segcli("train", data, "--task", "semantic", "--model", "pspnet_mobilenet_v3_large", "--epochs", 3,
                      "--batch", 2, "--imgsz", 96, "--workers", 1, "--out", tmp_path, "--name", "cut", "--seed", 3,
                      new_session=True)
    run = tmp_path / "cut"
    _wait_for(lambda: (run / "metrics.csv").is_file(), process, "first epoch")
    children = _descendants(process.pid)
    code, out, err = _interrupt(process, signum)
    assert code == 128 + signum, err[-3000:]
    assert "Traceback" not in err + out
    assert f"({signal.Signals(signum).name}): saved {run / 'weights' / 'last.pt'}; continue with: segcli train " \
           f"--resume {run}" in " ".join(err.split()), err
    assert _all_gone(children), "DataLoader workers left running"
    payload = read_checkpoint(run / "weights" / "last.pt")
    assert payload["training"]["state"]["epoch"] >= 1
    assert json.loads((run / "summary.json").read_text())["interrupted"]["signal"] == signal.Signals(signum).name
    resumed = _segcli("train", "--resume", run)
    code, out, err = _finish(resumed)
    assert code == 0, err[-3000:]
    assert "resuming at epoch" in out
    _same_as_reference(run, reference)


def test_train_kill_9_leaves_whole_files(data, tmp_path, reference):
    process = _segcli("train", data, "--task", "semantic", "--model", "pspnet_mobilenet_v3_large", "--epochs", 3,
                      "--batch", 2, "--imgsz", 96, "--workers", 0, "--out", tmp_path, "--name", "cut", "--seed", 3)
    run = tmp_path / "cut"
    _wait_for(lambda: (run / "metrics.csv").is_file(), process, "first epoch")
    process.kill()
    assert _finish(process)[0] == -signal.SIGKILL
    assert {p.name for p in _json_files_parse(run)} >= {"args.json"}
    assert read_checkpoint(run / "weights" / "last.pt")["training"]["state"]["epoch"] >= 1
    assert {p.name for p in (run / "weights").iterdir() if not p.name.startswith(".")} <= {"last.pt", "best.pt"}
    assert read_metrics_csv(run / "metrics.csv")  # a whole CSV
    code, _, err = _finish(_segcli("train", "--resume", run))
    assert code == 0, err[-3000:]
    assert not list(run.glob(".*.tmp")) and not list((run / "weights").glob(".*.tmp"))
    _same_as_reference(run, reference)


# predict ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """32 images of 128x96: --procs 2 gives two processes of 16."""
    root = tmp_path_factory.mktemp("interrupt_images")
    generate_shapes_dataset(root, 32, seed=5, sizes=((128, 96),))
    return root / "images"


PREDICT = ("--procs", 2, "--workers", 1, "--batch", 2, "--device", "cpu")


@pytest.fixture(scope="module")
def predicted(images, tmp_path_factory):
    """An uninterrupted run's output files."""
    out = tmp_path_factory.mktemp("interrupt_pred") / "full"
    code, _, err = _finish(_segcli("predict", "folder", images, "--out", out, *PREDICT))
    assert code == 0, err[-3000:]
    return out


def _journalled(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in out.glob("results*.jsonl"))


def _check_partial_output(out: Path) -> set[str]:
    """Journal lines parse (a torn last line aside) and name images whose overlay is whole."""
    import cv2

    names = set()
    for journal in out.glob("results*.jsonl"):
        lines = journal.read_text().splitlines()
        for number, text in enumerate(lines):
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                assert number == len(lines) - 1, f"{journal.name}: line {number + 1} of {len(lines)} is torn"
                continue
            names.add(line["file_name"])
            overlay = cv2.imread(str((out / "overlays" / line["file_name"]).with_suffix(".jpg")))
            assert overlay is not None and overlay.shape == (96, 128, 3), line["file_name"]
    visible = [p for p in (out / "overlays").rglob("*") if not p.name.startswith(".")]
    assert all(p.suffix == ".jpg" for p in visible)
    _json_files_parse(out)
    return names


def _same_outputs(out: Path, full: Path) -> None:
    for name in ("dataset.json", "predictions.json", "via_project.json"):
        assert json.loads((out / name).read_text()) == json.loads((full / name).read_text()), name
    assert sorted(p.name for p in (out / "overlays").iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in (full / "overlays").iterdir())
    assert sorted(p.name for p in out.glob("results*.jsonl")) == ["results.jsonl"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_predict_interrupted_then_resumed_equals_an_uninterrupted_run(images, predicted, tmp_path, signum):
    """SIGTERM to the parent only (it stops its --procs process) or SIGINT to the whole group
    (Ctrl-C in a terminal): exit 143/130, the finished images kept whole, no process left;
    --resume then gives the files of a run never interrupted."""
    out = tmp_path / "out"
    process = _segcli("predict", "folder", images, "--out", out, *PREDICT, new_session=True)
    _wait_for(lambda: out.is_dir() and _journalled(out) >= 4, process, "4 finished images")
    children = _descendants(process.pid)
    code, out_text, err = _interrupt(process, signum)
    assert code == 128 + signum, err[-3000:]
    assert "Traceback" not in err + out_text
    message = " ".join(err.split())
    assert f"--out {out} --resume to finish" in message and "images done and kept" in message, err
    assert _all_gone(children), "prediction processes or DataLoader workers left running"
    done = _check_partial_output(out)
    assert 4 <= len(done) < 32
    assert not (out / "dataset.json").exists()
    code, out_text, err = _finish(_segcli("predict", "folder", images, "--out", out, "--resume", *PREDICT))
    assert code == 0, err[-3000:]
    assert f"resuming: {len(done)} image(s) already done" in out_text
    _same_outputs(out, predicted)


def test_predict_kill_9_then_resume(images, predicted, tmp_path):
    """kill -9 of the parent: its --procs process dies with it; every file left is whole (or a
    hidden temporary), and --resume completes the outputs."""
    out = tmp_path / "out"
    process = _segcli("predict", "folder", images, "--out", out, *PREDICT)
    _wait_for(lambda: out.is_dir() and _journalled(out) >= 4, process, "4 finished images")
    children = _descendants(process.pid)
    process.kill()
    assert _finish(process)[0] == -signal.SIGKILL
    assert _all_gone(children), "prediction processes left running after their parent was killed"
    done = _check_partial_output(out)
    assert len(done) < 32
    code, _, err = _finish(_segcli("predict", "folder", images, "--out", out, "--resume", *PREDICT))
    assert code == 0, err[-3000:]
    assert not [p for p in out.rglob(".*.tmp")]
    _same_outputs(out, predicted)


# torchrun ---------------------------------------------------------------------------------------

TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 2, "-m", "segcli")
TRAIN_DDP = ("--task", "semantic", "--model", "pspnet_mobilenet_v3_large", "--epochs", 3, "--batch", 2, "--imgsz", 96,
             "--workers", 0, "--device", "cpu", "--seed", 3)


def _torchrun(*args) -> subprocess.Popen:
    """``torchrun --nproc_per_node 2 -m segcli ...`` in a process group of its own (whose id is its pid)."""
    return subprocess.Popen([sys.executable, *map(str, TORCHRUN), *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _group_gone(pgid: int) -> bool:
    """No live process is left in process group ``pgid`` (a hang guard of 30 s; zombies do not count)."""
    def members() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == pgid and fields[0] != "Z":
                    found.append(int(entry.name))
        return found

    deadline = time.monotonic() + 30
    while members():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _only_torchrun_tracebacks(err: str) -> None:
    """torchrun itself ends with its own traceback (SignalException) when signalled; segcli's
    processes print none."""
    import segcli

    package = str(Path(segcli.__file__).parent)
    tracebacks = err.split("Traceback (most recent call last):")[1:]
    assert len(tracebacks) <= 1, err[-3000:]
    for text in tracebacks:
        assert "SignalException" in text and package not in text, err[-3000:]


@pytest.fixture(scope="module")
def reference_ddp(data, tmp_path_factory):
    """The uninterrupted torchrun run: its last.pt weights and rows."""
    out = tmp_path_factory.mktemp("interrupt_ref_ddp")
    code, _, err = _finish(_torchrun("train", data, *TRAIN_DDP, "--out", out, "--name", "ref"))
    assert code == 0, err[-3000:]
    return (read_checkpoint(out / "ref" / "weights" / "last.pt")["state_dict"],
            read_metrics_csv(out / "ref" / "metrics.csv"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_torchrun_train_stops_cleanly_and_resumes(data, tmp_path, reference_ddp, signum):
    """SIGTERM to torchrun (what a cluster scheduler sends; torchrun forwards it to every process)
    or SIGINT to the whole process group (Ctrl-C in a terminal: each process gets it twice, from
    the terminal and from torchrun): the processes stop at the same step, rank 0 saves last.pt and
    prints the one line, no process is left; --resume under torchrun ends with the weights of a
    run never stopped."""
    process = _torchrun("train", data, *TRAIN_DDP, "--out", tmp_path, "--name", "cut")
    run = tmp_path / "cut"
    _wait_for(lambda: (run / "metrics.csv").is_file(), process, "first epoch")
    code, out, err = _interrupt(process, signum)
    assert code != 0, err[-3000:]  # torchrun's own code for "stopped by a signal"
    assert _group_gone(process.pid), "torchrun's processes left running"
    _only_torchrun_tracebacks(err + out)
    message = " ".join(err.split())
    assert message.count("interrupted:") == 1, err[-3000:]  # rank 0 only
    assert f"({signal.Signals(signum).name}): saved {run / 'weights' / 'last.pt'}; continue with: segcli train " \
           f"--resume {run}" in message, err[-3000:]
    training = read_checkpoint(run / "weights" / "last.pt")["training"]
    assert training["state"]["epoch"] >= 1
    assert json.loads((run / "summary.json").read_text())["interrupted"]["signal"] == signal.Signals(signum).name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut"]  # rank 1 wrote nothing
    code, out, err = _finish(_torchrun("train", "--resume", run))
    assert code == 0, err[-3000:]
    assert "resuming at epoch" in out
    _same_as_reference(run, reference_ddp)


def test_torchrun_predict_interrupted_then_resumed_equals_an_uninterrupted_run(images, predicted, tmp_path):
    """SIGTERM to torchrun while both processes predict: each keeps the images it finished (its
    own journal, whole overlays), rank 0 prints the one line, no process is left; --resume under
    torchrun with as many processes completes the files of a run never interrupted."""
    out = tmp_path / "out"
    options = ("--out", out, "--workers", 0, "--batch", 2, "--device", "cpu")
    process = _torchrun("predict", "folder", images, *options)
    _wait_for(lambda: out.is_dir() and _journalled(out) >= 4, process, "4 finished images")
    process.send_signal(signal.SIGTERM)
    code, out_text, err = _finish(process)
    assert code != 0, err[-3000:]  # torchrun's own code for "stopped by a signal"
    assert _group_gone(process.pid), "torchrun's processes left running"
    _only_torchrun_tracebacks(err + out_text)
    message = " ".join(err.split())
    assert message.count("interrupted:") == 1, err[-3000:]  # rank 0 only
    assert f"--out {out} --resume to finish" in message and "images done and kept" in message, err[-3000:]
    done = _check_partial_output(out)
    assert 4 <= len(done) < 32
    assert not (out / "dataset.json").exists()
    code, out_text, err = _finish(_torchrun("predict", "folder", images, *options, "--resume"))
    assert code == 0, err[-3000:]
    assert f"resuming: {len(done)} image(s) already done" in out_text
    _same_outputs(out, predicted)


def test_torchrun_predict_signal_after_one_rank_is_done(tmp_path):
    """Rank 1 has finished its (small) images and waits for rank 0, still on its large ones, when
    torchrun is sent SIGTERM: rank 1 is not left waiting for a rank that stopped (no traceback,
    no process left), and --resume completes the outputs."""
    import shutil

    for size, count in (("large", 3), ("small", 2)):
        generate_shapes_dataset(tmp_path / size, count, seed=4, sizes=((1600, 1200) if size == "large" else (128, 96),))
    images = tmp_path / "images"
    images.mkdir()
    for number in range(5):  # sorted names alternate: rank 0 takes a0, a2, a4 (large), rank 1 a1, a3
        size, index = ("large", number // 2) if number % 2 == 0 else ("small", number // 2)
        shutil.copy(tmp_path / size / "images" / f"{index:06d}.png", images / f"a{number}.png")
    out = tmp_path / "out"
    # --tile 256: each large image is ~50 model passes, so rank 0 is still busy for seconds after
    # rank 1's two small images (one pass each): the signal lands in that window by a wide margin
    options = ("--out", out, "--workers", 0, "--batch", 1, "--device", "cpu", "--tile", 256)
    process = _torchrun("predict", "folder", images, *options)
    rank1 = out / "results.rank1.jsonl"
    _wait_for(lambda: rank1.is_file() and len(rank1.read_text().splitlines()) == 2, process, "rank 1's images")
    process.send_signal(signal.SIGTERM)
    _, out_text, err = _finish(process)
    assert _group_gone(process.pid), "torchrun's processes left running"
    _only_torchrun_tracebacks(err + out_text)
    code, out_text, err = _finish(_torchrun("predict", "folder", images, *options, "--resume"))
    assert code == 0, err[-3000:]
    assert [image["file_name"] for image in json.loads((out / "dataset.json").read_text())["images"]] == \
        [f"a{number}.png" for number in range(5)]

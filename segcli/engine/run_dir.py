"""Run folders of ``segcli train``: never overwritten, with args, a metrics table and curves;
and the lock that gives a ``segcli predict`` run its output folder to itself.

Layout: ``args.json``, ``metrics.csv`` (one row per epoch), ``results.png`` (loss and metric
curves), ``weights/last.pt`` (with the training state, for --resume) and ``weights/best.pt``.
Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (runs are then not protected from each other)
    fcntl = None

from segcli.errors import SegcliError
from segcli.fileio import atomic_path


def next_exp_dir(base: Path) -> Path:
    """The first of ``base``/exp, exp2, exp3, ... that does not exist yet (not created)."""
    number = 1
    while (folder := Path(base) / ("exp" if number == 1 else f"exp{number}")).exists():
        number += 1
    return folder


def create_next_exp_dir(base: Path) -> Path:
    """Create and return the first of ``base``/exp, exp2, ... that did not exist: two runs
    started at once get two folders (the mkdir that loses the race moves on to the next)."""
    number = 1
    while True:
        folder = Path(base) / ("exp" if number == 1 else f"exp{number}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            number += 1
        except OSError as exc:
            raise SegcliError(f"cannot create the output folder: {exc.strerror}", folder) from None


class FolderLock:
    """An exclusive lock on a folder, held through an open marker file inside it (``flock``):
    released when ``release`` is called or the process ends in any way, kill -9 included (the
    OS drops it). Processes forked while it is held share it."""

    def __init__(self, folder: Path, marker: str, text: str, busy: str, create: bool = True):
        path = Path(folder) / marker
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            self.fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise SegcliError(f"cannot open {marker}: {exc.strerror}", folder) from None
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(self.fd)
                raise SegcliError(busy, folder) from None
        if os.fstat(self.fd).st_size == 0:
            os.write(self.fd, text.encode())

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def new_run_dir(out: Path, name: str | None, task: str) -> Path:
    """A fresh folder under ``out`` (default ``runs/<task>``): ``name`` or exp, exp2, exp3, ...

    Raises:
        SegcliError: ``name`` was given and that folder exists (runs are never overwritten).
    """
    base = Path(out) if out is not None else Path("runs") / task
    if name is not None:
        folder = base / name
        if folder.exists():
            raise SegcliError("run folder exists; choose another --name, or --resume it", folder)
    else:
        folder = next_exp_dir(base)
    try:
        (folder / "weights").mkdir(parents=True)
    except OSError as exc:
        raise SegcliError(f"cannot create the run folder: {exc.strerror}", folder) from None
    return folder


def write_metrics_csv(path: Path, rows: list[dict]) -> None:
    """All epochs so far as CSV (columns: the union of keys, in first-seen order)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


def read_metrics_csv(path: Path) -> list[dict]:
    """Rows written by ``write_metrics_csv`` (numbers parsed back)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _cell(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def _parse(value: str):
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value or None


def plot_curves(rows: list[dict], metric: str, path: Path) -> None:
    """Training loss terms and the validation metric per epoch, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    terms = [k for k in rows[0] if k.startswith("loss_")] if rows else []
    loss_keys = ["loss"] + (terms if len(terms) > 1 else [])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in loss_keys:
        left.plot(epochs, [row.get(key) for row in rows], label=key, marker=".")
    left.set(title="training loss", xlabel="epoch")
    left.legend(fontsize=7)
    points = [(row["epoch"], row[metric]) for row in rows if isinstance(row.get(metric), (int, float))]
    if points:
        right.plot(*zip(*points), marker="o", color="tab:green")
    right.set(title=f"validation {metric}", xlabel="epoch", ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)

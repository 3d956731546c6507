"""Output folders of every command: the next free ``runs/<job>/exp``, ``exp2``, ... (created at
once, so two runs started together get two folders), a named training run folder (never
overwritten), and the lock that gives a run its output folder to itself. Training (args.json,
metrics.csv, results.png, weights/) and predict and eval put their files in such folders.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (runs are then not protected from each other)
    fcntl = None

from segcli.errors import SegcliError


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
        folder = create_next_exp_dir(base)
    try:
        (folder / "weights").mkdir(parents=(name is not None))
    except OSError as exc:
        raise SegcliError(f"cannot create the run folder: {exc.strerror}", folder) from None
    return folder

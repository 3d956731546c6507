"""The output folder of ``segcli eval``, written all or nothing.

Every file of a run (metrics.json, the plots, the overlays of worst/, and with a model its
predictions: predictions.json and dataset.json, or the label maps of masks/) is first written into a
hidden staging folder inside ``--out`` and moved into place only when the whole run has
succeeded, metrics.json last (its presence means the folder is complete). On any error, Ctrl-C
included, the staging folder is removed, and so is ``--out`` when this run created it: a failed
run leaves an existing folder as it was and no new folder at all. The paths are checked before
any work, so an ``--out`` that is a file, or a folder holding a folder where metrics.json goes,
is a one-line error up front.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from segcli.engine.core.run_folders import create_next_exp_dir
from segcli.errors import SegcliError

OUTPUT_FILES = ("metrics.json", "pr_curves_segm.png", "pr_curves_bbox.png", "confusion_matrix.png",
                "predictions.json", "dataset.json")
WORST = "worst"
LABEL_MAPS = "masks"
"""A semantic run's predicted label maps: replaced whole by the next run (no stale map stays)."""


def check_output_paths(out: Path | None, json_path: Path | None) -> None:
    """Refuse, before any work, output paths that cannot be written: ``--out`` a file or below
    one, an existing ``--out`` holding a folder where one of eval's files goes (or a file named
    worst), ``--json`` below a file."""
    if out is not None:
        out = Path(out)
        _refuse_file_in_the_way(out, "--out")
        if out.exists():
            for name in OUTPUT_FILES:
                if (out / name).is_dir():
                    raise SegcliError("is a folder where eval writes a file: move it or choose another --out",
                                      out / name)
            if (out / WORST).exists() and not (out / WORST).is_dir():
                raise SegcliError("is not a folder: eval writes its overlays there; move it or choose another --out",
                                  out / WORST)
            _check_label_map_folder(out / LABEL_MAPS)
    if json_path is not None:
        _refuse_file_in_the_way(Path(json_path).parent, "--json", Path(json_path))


def _check_label_map_folder(folder: Path) -> None:
    """masks/ of an earlier run is replaced whole; refuse one that holds anything else."""
    from segcli.formats.masks import foreign_content

    if not (folder.exists() or folder.is_symlink()):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise SegcliError("is not a folder: a semantic eval writes its label maps there; move it or choose "
                          "another --out", folder)
    foreign = foreign_content(folder)
    if foreign is not None:
        raise SegcliError(f"holds {foreign}: eval replaces this folder with its label maps; move it or choose "
                          "another --out", folder)


def _refuse_file_in_the_way(folder: Path, option: str, named: Path | None = None) -> None:
    """``folder`` (to be created if missing) must not be, nor lie below, something not a folder."""
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                where = "is" if path == folder and named is None else f"holds {named or folder} below it and is"
                raise SegcliError(f"{where} not a folder", path, option)
            return


class StagedOutput:
    """``--out`` (or runs/eval/expN) written all or nothing; use as a context manager.

    ``staging`` is where the run writes; ``final(path)`` gives the path a staged file will have
    once moved (for the paths written into metrics.json)."""

    def __init__(self, out: Path | None):
        self.requested = out

    def __enter__(self) -> StagedOutput:
        if self.requested is None:
            self.folder, self.created = create_next_exp_dir(Path("runs") / "eval"), True
        else:
            self.folder = Path(self.requested)
            self.created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=".eval.", suffix=".tmp", dir=self.folder))
        except OSError as exc:
            self._remove_if_created()
            raise SegcliError(f"cannot create the output folder: {exc.strerror or exc}", self.folder) from None
        return self

    def final(self, staged: Path) -> Path:
        return self.folder / Path(staged).relative_to(self.staging)

    def __exit__(self, kind, error, trace) -> None:
        failed = kind is not None
        try:
            if not failed:
                self._commit()
        except BaseException:
            failed = True
            raise
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            if failed:
                self._remove_if_created()

    def _commit(self) -> None:
        """Move every staged file into place, metrics.json last; masks/ is swapped in whole."""
        self._swap_in(LABEL_MAPS)
        staged = sorted((p for p in self.staging.rglob("*") if p.is_file()),
                        key=lambda p: (p.name == "metrics.json", str(p)))
        for path in staged:
            target = self.final(path)
            target.parent.mkdir(parents=True, exist_ok=True)  # worst/: one overlay at a time, a user's files stay
            os.replace(path, target)

    def _swap_in(self, name: str) -> None:
        """Replace folder ``name`` of the output by the staged one (checked up front to hold
        only what eval writes): the old one is renamed aside, then removed."""
        staged, target = self.staging / name, self.folder / name
        if not staged.is_dir():
            return
        old = None
        if target.is_dir():
            old = Path(tempfile.mkdtemp(prefix=".eval.old.", suffix=".tmp", dir=self.folder))
            os.replace(target, old / name)
        os.replace(staged, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _remove_if_created(self) -> None:
        """Remove the folder this run created, when nothing else was put in it meanwhile."""
        if self.created:
            try:
                self.folder.rmdir()
            except OSError:
                pass

"""Find the annotation file of a split folder (``DATA/train``, ``DATA/val``, an eval ground
truth given as a folder): exactly one ``.json`` or ``.csv`` beside the images, reports of earlier
conversions ignored."""

from __future__ import annotations

from pathlib import Path

from segcli.errors import SegcliError

ANNOTATION_SUFFIXES = (".json", ".csv")


def find_annotation_file(folder: Path) -> Path:
    """The one annotation file in ``folder`` (reports of earlier conversions are ignored)."""
    if not folder.is_dir():
        raise SegcliError("split folder not found", folder)
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES
                        and not p.name.endswith(".report.json"))
    if not candidates:
        raise SegcliError("no annotation file (.json or .csv) in this folder", folder)
    if len(candidates) > 1:
        raise SegcliError(f"{len(candidates)} annotation files ({', '.join(p.name for p in candidates)}): "
                          "keep one, or give the file itself", folder)
    return candidates[0]

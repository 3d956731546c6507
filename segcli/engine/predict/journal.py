"""The resume journal of ``segcli predict``: per-image results, one JSON line each, appended and
flushed as images finish: what --resume reads back, and why an interrupted run loses nothing it had
finished. A line torn by a kill is ignored when read and cut off before the journal is appended to
again. Each shard of a run (see ``shards``) keeps its own journal; rank 0's is ``results.jsonl``,
the others' are folded into it at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path

from segcli.formats import geometry
from segcli.structures import Annotation, ImageRecord

JOURNAL = "results.jsonl"


def journal_path(out: Path, rank: int) -> Path:
    """The journal of shard ``rank`` in output folder ``out``."""
    return Path(out) / (JOURNAL if rank == 0 else f"results.rank{rank}.jsonl")



def open_journal(path: Path):
    """``path`` opened for appending lines, after cutting off a last line torn by a kill (else
    the next line would be glued to it, and that image lost from the journal)."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb+") as fh:
            end = keep = fh.seek(0, os.SEEK_END)
            while keep > 0:  # back to the last newline
                start = max(0, keep - 65536)
                fh.seek(start)
                newline = fh.read(keep - start).rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                keep = start
            if keep != end:
                fh.truncate(keep)
    return open(path, "a", encoding="utf-8")


def record_to_line(record: ImageRecord) -> dict:
    return {"file_name": record.file_name, "width": record.width, "height": record.height,
            "annotations": [{"category": a.category, "rle": geometry.rle_to_json(a.rle), "score": a.score,
                             "attributes": a.attributes, **({"bbox": a.bbox_xywh} if a.bbox_xywh else {})}
                            for a in record.annotations]}


def line_to_record(line: dict, image_id: int, root: Path) -> ImageRecord:
    record = ImageRecord(file_name=line["file_name"], id=image_id, width=line["width"], height=line["height"],
                         path=root / line["file_name"])
    for k, item in enumerate(line["annotations"]):
        rle = geometry.rle_from_json(item["rle"], line["height"], line["width"])
        record.annotations.append(Annotation(category=item["category"], rle=rle, score=item["score"],
                                             bbox_xywh=item.get("bbox"),  # journals before the box: the mask's
                                             attributes=item["attributes"], source=f"detection {k}"))
    return record


def read_journal(out: Path) -> dict[str, dict]:
    """Finished images of an earlier run in output folder ``out`` by file name, from its journal
    and any per-process journals a distributed run left (a line torn by a kill is ignored)."""
    return _journal_lines(sorted(Path(out).glob("results*.jsonl")))


def _journal_lines(paths: list[Path]) -> dict[str, dict]:
    lines = {}
    for path in paths:
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
                lines[line["file_name"]] = line
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return lines


def merge_journals(out: Path) -> dict[str, dict]:
    """Fold the per-process journals of a distributed run into ``out``'s journal (then remove
    them); returns their lines by file name."""
    parts = sorted(Path(out).glob("results.rank*.jsonl"))
    lines = _journal_lines(parts)
    if parts:
        with open_journal(Path(out) / JOURNAL) as journal:
            journal.writelines(json.dumps(line) + "\n" for line in lines.values())
            journal.flush()
            os.fsync(journal.fileno())
        for part in parts:
            part.unlink()
    return lines

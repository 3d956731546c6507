"""``metrics.csv`` of a training run: one row per epoch (loss terms, learning rate, speed and the
validation figures), rewritten atomically after every epoch and read back by tests and tools."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from segcli.fileio import atomic_path


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

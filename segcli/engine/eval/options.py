"""The options of ``segcli eval``, in a module of their own that imports neither torch nor numpy:
the CLI takes its defaults from these fields (declared once) and ``segcli.engine.eval.run`` runs
with them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class EvalOptions:
    """Options of ``segcli eval`` (see its --help)."""

    gt: Path | None = None
    pred: Path | None = None
    weights: Path | None = None
    task: str = "instance"
    images: Path | None = None
    out: Path | None = None
    json_path: Path | None = None
    conf: float | None = None  # instance models; None: EVAL_CONF
    backend: str = "pycocotools"
    segm_area: str = "pycocotools"
    ignore_index: int = 255
    worst: int = 10
    label_attr: str | None = None
    classes: list[str] | None = None  # names of label values 1, 2, ... of mask folders without a classes file
    device: str = "auto"
    imgsz: int | None = None
    batch: int = 4
    workers: int = 2

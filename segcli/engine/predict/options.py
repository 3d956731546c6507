"""The options of ``segcli predict``, in a module of their own that imports neither torch nor
numpy: the CLI reads its defaults from these fields when it starts (so ``--help`` shows them and
they are declared once), and ``segcli.engine.predict.run`` runs with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from segcli.models.defaults import REVIEW_BELOW


@dataclass
class PredictOptions:
    """Options of ``segcli predict`` (see its --help)."""

    weights: Path
    out: Path | None = None
    conf: float | None = None  # instance models; None: PREDICT_CONF
    iou: float | None = None
    max_det: int = 100
    batch: int = 4
    workers: int = 2
    device: str = "auto"
    imgsz: int | None = None
    recursive: bool = False
    classes: list[str] | None = None
    overlays: bool = True
    alpha: float = 0.45
    formats: set[str] = field(default_factory=lambda: {"coco", "via", "masks"})
    polygons: bool = False
    review_below: float = REVIEW_BELOW
    resume: bool = False
    tile: int | None = None
    procs: int = 1

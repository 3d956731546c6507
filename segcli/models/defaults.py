"""The default weights segcli ships: which file serves each task when no ``--weights`` is given.

They live in the repository's ``weights/`` folder (see weights/README.md for how each was
trained and what it scores); ``SEGCLI_WEIGHTS_DIR`` points elsewhere, e.g. for a copy of segcli
installed without its repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from segcli.errors import SegcliError

IMAGE_SIZE_RANGE = (32, 8192)
"""The image sides, in pixels, a model may resize to: ``--imgsz`` of train, predict and eval and a
checkpoint's min/max size. Below 32 nothing is left to see; --imgsz 100000 asked for 160 GB."""

PREDICT_CONF = 0.5
"""Score threshold of ``segcli predict`` when --conf is not given (instance models)."""

EVAL_CONF = 0.05
"""Score threshold of validation during training and of ``segcli eval`` with a model: low, as COCO
evaluation expects (AP integrates precision over every score; a high cut truncates the curve)."""

REVIEW_BELOW = 0.7
"""Predicted instances scoring below this are marked ``needs_review`` for the person correcting them."""

DEFAULT_WEIGHTS = {"instance": "yolact_resnet18_shapes.pt", "semantic": "pspnet_resnet18_shapes.pt"}


def weights_dir() -> Path:
    """Where the default weights are looked for."""
    return Path(os.environ.get("SEGCLI_WEIGHTS_DIR") or Path(__file__).resolve().parents[2] / "weights")


def default_weights(task: str = "instance") -> Path:
    """The shipped checkpoint for ``task`` (SegcliError naming the file when it is missing)."""
    if task not in DEFAULT_WEIGHTS:
        raise SegcliError(f"unknown task {task!r}; choose instance or semantic")
    path = weights_dir() / DEFAULT_WEIGHTS[task]
    if not path.is_file():
        raise SegcliError(f"no --weights given and the default {task} weights are missing (set SEGCLI_WEIGHTS_DIR "
                          "or pass --weights runs/.../weights/best.pt)", path)
    return path

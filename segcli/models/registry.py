"""Models by name: which task each serves, its full argument set, and building it."""

from __future__ import annotations

from typing import Any

from torch import nn

from segcli.errors import SegcliError
from segcli.models.instance import INSTANCE_MODELS, build_instance_model, instance_args
from segcli.models.semantic import SEMANTIC_MODELS, build_semantic_model, semantic_args

MODEL_NAMES = INSTANCE_MODELS + SEMANTIC_MODELS
DEFAULT_MODELS = {"instance": "yolact_resnet18_fpn", "semantic": "pspnet_resnet18"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def task_of(name: str) -> str:
    """"instance" or "semantic" for a model name (SegcliError for an unknown name)."""
    if name in INSTANCE_MODELS:
        return "instance"
    if name in SEMANTIC_MODELS:
        return "semantic"
    raise SegcliError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def model_args(name: str, num_classes: int, **overrides: Any) -> dict[str, Any]:
    """Every argument of model ``name`` (JSON-able), defaults filled in.

    Args:
        num_classes: classes including background (categories + 1).
        overrides: e.g. ``min_size`` (instance) or ``input_size`` (semantic); None means default.
    """
    if num_classes < 2:
        raise SegcliError(f"a model needs at least one category besides background, got {num_classes - 1}")
    try:
        if task_of(name) == "instance":
            return instance_args(name, num_classes, **overrides)
        return semantic_args(name, num_classes, **overrides)
    except TypeError as exc:
        raise SegcliError(str(exc)) from None


def build_model(name: str, args: dict[str, Any], init: str = "scratch") -> nn.Module:
    """Build model ``name`` from its ``model_args``; ``init``: scratch, imagenet or coco."""
    if task_of(name) == "instance":
        return build_instance_model(name, args, init)
    return build_semantic_model(name, args, init)

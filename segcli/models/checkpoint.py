"""Self-describing checkpoints: one file holding the weights and everything needed to use them.

A checkpoint is a dict saved with ``torch.save`` and loaded with ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists and dicts only: a file that carries pickled code is refused):

    {"format": "segcli-checkpoint", "format_version": 1,
     "record": {"task", "model": {"name", "args"}, "categories": [{"id", "name"}, ...],
                "input_size", "normalization": {"mean", "std"}, "thresholds": {"score", "mask"},
                "train": {...}, "metrics": {...}, "segcli_version", "fp16"},
     "state_dict": {...},
     "training": {...}}        # optional: optimizer, scheduler, epoch, RNG states (resume)

``predict`` and ``eval`` need only this file. ``fp16=True`` stores floating tensors as half
(about half the size); they are loaded back as float32.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcli import __version__
from segcli.errors import SegcliError, with_article
from segcli.fileio import atomic_path
from segcli.models.defaults import IMAGE_SIZE_RANGE
from segcli.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODEL_NAMES, build_model, model_args, task_of

FORMAT = "segcli-checkpoint"
FORMAT_VERSION = 1


def make_record(name: str, args: dict[str, Any], categories: list[dict[str, Any]], *,
                score_thresh: float = 0.5, mask_thresh: float = 0.5, train: dict | None = None,
                metrics: dict | None = None) -> dict[str, Any]:
    """The JSON-able description stored beside the weights.

    Args:
        name, args: model name and its full arguments (``registry.model_args``).
        categories: ``[{"id": coco_id, "name": str}, ...]`` in label order (label k = item k-1).
    """
    if len(categories) != args["num_classes"] - 1:
        raise ValueError(f"{len(categories)} categories for a model of {args['num_classes']} classes")
    input_size = args.get("input_size") or [args.get("min_size"), args.get("max_size")]
    record = {"task": task_of(name), "model": {"name": name, "args": args},
              "categories": [{"id": int(c["id"]), "name": str(c["name"])} for c in categories],
              "input_size": input_size,
              "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
              "thresholds": {"score": score_thresh, "mask": mask_thresh},
              "train": train or {}, "metrics": metrics or {}, "segcli_version": __version__}
    json.dumps(record, allow_nan=False)  # fail now, not at load time, if it is not JSON-able
    return record


def save_checkpoint(path: Path, model: nn.Module, record: dict[str, Any], fp16: bool = False,
                    training: dict[str, Any] | None = None, overwrite: bool = True) -> None:
    """Write a checkpoint atomically (a crash never leaves half a file under ``path``)."""
    state = {k: (v.detach().half() if fp16 and v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "record": {**record, "fp16": fp16},
               "state_dict": state}
    if training is not None:
        payload["training"] = training
    with atomic_path(Path(path), overwrite=overwrite) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load and check a checkpoint file's dict (weights_only); SegcliError on anything wrong.

    The whole record is checked (types, ranges, categories against the class count) and every
    tensor against the architecture it claims (names and shapes from a model built on the meta
    device, which allocates nothing; values finite), so a malformed file is one line here and
    never a traceback, a 90 GB allocation or silent NaN predictions later."""
    path = Path(path)
    if not path.exists():
        raise SegcliError("checkpoint not found", path)
    if not path.is_file():  # is_file follows symlinks and is False for a FIFO, which would block a read
        raise SegcliError("not a regular file (a folder, FIFO or device), expected a checkpoint", path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise SegcliError("not a readable checkpoint: not a torch.save archive (corrupt, truncated "
                          "or another kind of file)", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise SegcliError("refused: the file holds pickled Python objects (possibly code), not only "
                              "weights; segcli loads weights_only checkpoints", path) from None
        raise SegcliError(f"not a readable checkpoint ({str(exc).splitlines()[0]})", path) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise SegcliError(f"not a readable checkpoint: corrupt or truncated ({str(exc).splitlines()[0][:120]})",
                          path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SegcliError("not a segcli checkpoint (a plain state dict or another tool's file?)", path)
    if payload.get("format_version") != FORMAT_VERSION:
        raise SegcliError(f"checkpoint format version {payload.get('format_version')} is not supported "
                          f"(this segcli reads {FORMAT_VERSION})", path)
    check_record(payload.get("record"), path)
    check_state_dict(payload.get("state_dict"), payload["record"], path)
    return payload


def load_checkpoint(path: Path, device: torch.device | str = "cpu",
                    expect_task: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights (float32), in eval mode.

    Returns:
        (model on ``device``, record).
    """
    payload = read_checkpoint(path)
    record = payload["record"]
    if expect_task is not None and record["task"] != expect_task:
        raise SegcliError(f"this is {with_article(record['task'])} model ({record['model']['name']}); "
                          f"{with_article(expect_task)} model is needed here", path)
    with skipped_weight_init():  # every tensor is overwritten below
        model = build_model(record["model"]["name"], record["model"]["args"], init="scratch")
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    model.load_state_dict(state)  # names and shapes were checked by read_checkpoint: every one is set
    return model.to(device).eval(), record


@contextlib.contextmanager
def skipped_weight_init() -> Iterator[None]:
    """Build models without their random initialisation (``torch.nn.init``'s in-place fills are
    no-ops inside), for a model whose whole state is loaded next, as transformers'
    ``no_init_weights`` does; it also leaves the global RNG untouched. Tensors that are not state
    (anchors, constants) are computed as usual."""
    names = [name for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")]
    saved = {name: getattr(nn.init, name) for name in names}
    try:
        for name in names:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def transfer_weights(model: nn.Module, path: Path, payload: dict[str, Any] | None = None) -> tuple[int, int]:
    """Initialise ``model`` from a segcli checkpoint of any architecture: every tensor whose name
    and shape fit is copied, the rest keep their initialisation (``--init PATH``).

    Names are tried as they are and with the backbone prefixes of the other task (torchvision's
    detectors keep the ResNet under ``backbone.body.``, segcli's PSPNet under ``backbone.``), so a
    Mask R-CNN's trained ResNet can start a PSPNet; a model of the same architecture with other
    classes gets everything but its class layers.

    Args:
        payload: ``read_checkpoint(path)`` when the caller has it already.

    Returns:
        (tensors copied, tensors in ``model``). SegcliError when nothing fits.
    """
    source = (payload or read_checkpoint(path))["state_dict"]
    target = model.state_dict()
    copied: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        for name in (key, key.replace("backbone.body.", "backbone.", 1), key.replace("backbone.", "backbone.body.", 1)):
            if name in target and name not in copied and target[name].shape == value.shape:
                copied[name] = value.to(target[name].dtype)
                break
    if not any(v.is_floating_point() and v.ndim > 1 for v in copied.values()):
        raise SegcliError("no weights of this checkpoint fit the model being trained (different backbone?)", path)
    model.load_state_dict(copied, strict=False)
    return len(copied), len(target)


# checking a record and its tensors ------------------------------------------------------------

SIZE_RANGE = IMAGE_SIZE_RANGE  # the short/long sides a model may resize to (as --imgsz)
MAX_CLASSES = 65_536  # classes including background: what a 16-bit label map can hold
RECORD_KEYS = {"task": str, "model": dict, "categories": list, "thresholds": dict}
OPTIONAL_RECORD_KEYS = {"input_size": (list, int, type(None)), "normalization": dict, "train": dict,
                        "metrics": dict, "segcli_version": str, "fp16": bool}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if _is_int(v) and low <= v <= high else f"an integer from {low} to {high}"


def _one_of(*choices: Any) -> Callable[[Any], str | None]:
    return lambda v: None if any(v == c and type(v) is type(c) for c in choices) else \
        "one of " + ", ".join(map(repr, choices))


def _fraction(value: Any) -> str | None:
    return None if _is_number(value) and 0 <= value <= 1 else "a number from 0 to 1"


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda v: None if v is None else (None if check(v) is None else f"null or {check(v)}")


def _int_list(low: int, high: int, nested: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        items = [x for item in value for x in (item if nested and isinstance(item, list) else [item])] \
            if isinstance(value, list) else None
        if items and len(items) <= 64 and all(_is_int(x) and low <= x <= high for x in items):
            return None
        return f"a non-empty list of at most 64 integers from {low} to {high}"
    return check


# every model argument a checkpoint may hold, with what it may be (a value outside these ranges
# would build a huge or broken model: min_size 100000 is a 90 GB input, num_classes 1e9 a 1 TB layer)
ARG_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "num_classes": _int_in(2, MAX_CLASSES),
    "min_size": _int_in(*SIZE_RANGE), "max_size": _int_in(*SIZE_RANGE), "input_size": _int_in(*SIZE_RANGE),
    "anchor_sizes": _optional(_int_list(1, SIZE_RANGE[1], nested=True)),
    "rpn_post_nms_top_n_test": _int_in(1, 100_000), "detections_per_img": _int_in(1, 10_000),
    "score_thresh": _fraction, "light_heads": _one_of(True, False), "fpn_layers": _one_of(3, 4),
    "aux": _one_of(True, False), "output_stride": _one_of(8, 16, 32), "bins": _int_list(1, 64),
    "ppm_channels": _optional(_int_in(1, 4096)), "backbone_layers": _one_of(3, 4),
    "fpn_channels": _int_in(8, 1024), "head_channels": _int_in(8, 1024), "prototypes": _int_in(1, 256),
    "pre_nms_top_n": _int_in(1, 100_000), "nms_thresh": _fraction,
}
# read with a default by the builders, so a checkpoint of an older segcli may lack them
OPTIONAL_ARGS = {"fpn_layers", "backbone_layers"}


def check_record(record: Any, path: Path) -> None:
    """SegcliError naming the first thing wrong in a checkpoint's record (see ``read_checkpoint``)."""
    if not isinstance(record, dict):
        raise SegcliError(f"record: expected a dict, got {type(record).__name__}", path)
    for key, kind in {**RECORD_KEYS, **OPTIONAL_RECORD_KEYS}.items():
        if key in RECORD_KEYS and key not in record:
            raise SegcliError(f"record: {key!r} is missing", path)
        if key in record and not isinstance(record[key], kind):
            raise SegcliError(f"record: {key!r} is {with_article(type(record[key]).__name__)}", path)
    name = record["model"].get("name")
    if name not in MODEL_NAMES:
        raise SegcliError(f"checkpoint is for an unknown architecture {name!r}", path)
    if record["task"] != task_of(name):
        raise SegcliError(f"record: task {record['task']!r}, but {name} is a model for the {task_of(name)} task", path)
    num_classes = _check_args(name, record["model"].get("args"), path)
    _check_categories(record["categories"], num_classes, path)
    for key in ("score", "mask"):
        if key in record["thresholds"] and _fraction(record["thresholds"][key]) is not None:
            raise SegcliError(f"record: thresholds {key!r} is {record['thresholds'][key]!r}: expected "
                              "a number from 0 to 1", path)
    if "normalization" in record:
        norm = record["normalization"]
        for key in ("mean", "std"):
            values = norm.get(key)
            if not (isinstance(values, list) and len(values) == 3 and all(_is_number(v) for v in values)
                    and (key == "mean" or all(v > 0 for v in values))):
                raise SegcliError(f"record: normalization {key!r} is {values!r}: expected 3 finite numbers"
                                  + (" above 0" if key == "std" else ""), path)


def _check_args(name: str, args: Any, path: Path) -> int:
    """Check a record's model arguments against the architecture's own; returns num_classes."""
    if not isinstance(args, dict):
        raise SegcliError(f"record: model 'args' of {name} is {with_article(type(args).__name__)}, not a dict", path)
    expected = set(model_args(name, 2))
    unknown = sorted(set(args) - expected, key=str)
    missing = sorted(expected - set(args) - OPTIONAL_ARGS)
    if unknown:
        raise SegcliError(f"record: model argument {unknown[0]!r} is not one of {name}'s", path)
    if missing:
        raise SegcliError(f"record: model argument {missing[0]!r} of {name} is missing", path)
    for key, value in args.items():
        problem = ARG_CHECKS[key](value) if key in ARG_CHECKS else None
        if problem is not None:
            raise SegcliError(f"record: model argument {key} is {value!r}: expected {problem}", path)
    return args["num_classes"]


def _check_categories(categories: list, num_classes: int, path: Path) -> None:
    """One category per class of the class layer (background aside), with unique ids and names."""
    if len(categories) != num_classes - 1:
        raise SegcliError(f"record: {len(categories)} categories for a model of {num_classes - 1} classes "
                          "(the class names must match the class layer)", path)
    for index, category in enumerate(categories):
        if not (isinstance(category, dict) and _is_int(category.get("id"))
                and isinstance(category.get("name"), str) and category["name"].strip()):
            raise SegcliError(f"record: categories item {index} is {category!r}: expected "
                              "{'id': integer, 'name': non-empty text}", path)
    for key in ("id", "name"):
        values = [c[key] for c in categories]
        if len(set(values)) != len(values):
            repeated = next(v for v in values if values.count(v) > 1)
            raise SegcliError(f"record: categories: {key} {repeated!r} appears twice", path)


def check_state_dict(state: Any, record: dict[str, Any], path: Path) -> None:
    """Every tensor the architecture has, of its shape, finite; nothing else (the first bad key is
    named). The model is built on the meta device: no memory, no weights initialised."""
    if not isinstance(state, dict):
        raise SegcliError(f"state_dict: expected a dict of tensors, got {type(state).__name__}", path)
    name = record["model"]["name"]
    with torch.device("meta"):
        expected = build_model(name, record["model"]["args"], init="scratch").state_dict()
    for key, value in state.items():
        if key not in expected:
            raise SegcliError(f"state_dict: {key!r} is not a tensor of {name}", path)
        if not isinstance(value, torch.Tensor):
            raise SegcliError(f"state_dict: {key} is {with_article(type(value).__name__)}, not a tensor", path)
        if value.shape != expected[key].shape:
            raise SegcliError(f"state_dict: {key} has shape {list(value.shape)}, {name} with this record "
                              f"needs {list(expected[key].shape)}", path)
        if value.is_floating_point() != expected[key].is_floating_point():
            raise SegcliError(f"state_dict: {key} is {value.dtype}, {name} needs {expected[key].dtype}", path)
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise SegcliError(f"state_dict: {key} holds NaN or infinite values (a diverged or damaged "
                              "model would give no detections)", path)
    missing = [key for key in expected if key not in state]
    if missing:
        raise SegcliError(f"weights do not fit {name}: {len(missing)} tensors missing (e.g. {missing[0]})", path)

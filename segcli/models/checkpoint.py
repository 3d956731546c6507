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

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcli import __version__
from segcli.errors import SegcliError
from segcli.fileio import atomic_path
from segcli.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODEL_NAMES, build_model, task_of

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
    """Load and check a checkpoint file's dict (weights_only); SegcliError on anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise SegcliError("checkpoint not found", path)
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
    record = payload.get("record")
    name = record.get("model", {}).get("name") if isinstance(record, dict) else None
    if name not in MODEL_NAMES:
        raise SegcliError(f"checkpoint is for an unknown architecture {name!r}", path)
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
        raise SegcliError(f"this is a {record['task']} model ({record['model']['name']}); "
                          f"a {expect_task} model is needed here", path)
    model = build_model(record["model"]["name"], record["model"]["args"], init="scratch")
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise SegcliError(f"weights do not fit {record['model']['name']}: {len(result.missing_keys)} missing, "
                          f"{len(result.unexpected_keys)} unexpected tensors "
                          f"(e.g. {(result.missing_keys + result.unexpected_keys)[0]})", path)
    return model.to(device).eval(), record


def transfer_weights(model: nn.Module, path: Path) -> tuple[int, int]:
    """Initialise ``model`` from a segcli checkpoint of any architecture: every tensor whose name
    and shape fit is copied, the rest keep their initialisation (``--init PATH``).

    Names are tried as they are and with the backbone prefixes of the other task (torchvision's
    detectors keep the ResNet under ``backbone.body.``, segcli's PSPNet under ``backbone.``), so a
    Mask R-CNN's trained ResNet can start a PSPNet; a model of the same architecture with other
    classes gets everything but its class layers.

    Returns:
        (tensors copied, tensors in ``model``). SegcliError when nothing fits.
    """
    source = read_checkpoint(path)["state_dict"]
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

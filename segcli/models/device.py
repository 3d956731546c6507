"""Devices: ``--device auto|cpu|cuda|cuda:N`` resolved to a torch.device with clear errors, and
the inference context (inference_mode, autocast on CUDA)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from segcli.errors import SegcliError


def select_device(spec: str = "auto") -> torch.device:
    """The torch.device for ``spec``: auto picks the first GPU when there is one, else the CPU."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?|(\d+)", spec)
    if not match:
        raise SegcliError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    index = int(match.group(1) or match.group(2) or 0)
    if not torch.cuda.is_available():
        raise SegcliError(f"device {spec!r} asked for, but no CUDA GPU is available here; use --device cpu")
    if index >= torch.cuda.device_count():
        raise SegcliError(f"device {spec!r}: only {torch.cuda.device_count()} GPU(s) here")
    return torch.device(f"cuda:{index}")


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """``torch.inference_mode`` everywhere, plus fp16 autocast on CUDA."""
    with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
        yield

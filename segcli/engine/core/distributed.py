"""Several processes with ``torchrun``: DistributedDataParallel on nccl (GPUs) or gloo (CPUs).

``torchrun --nproc_per_node N -m segcli train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK; each process
trains on its share of every global batch and gradients are averaged. Only rank 0 validates,
writes and prints; the others wait at barriers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_process_group(device: torch.device) -> ProcessGroup:
    """Join the process group torchrun described (nothing to do for a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessGroup()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def broadcast_flag(group: ProcessGroup, value: bool) -> bool:
    """Rank 0's ``value`` on every rank (e.g. "stop early")."""
    if not group.distributed:
        return value
    flag = torch.tensor([int(value)])
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def all_max(group: ProcessGroup, value: int) -> int:
    """The largest ``value`` over all ranks (e.g. "a signal arrived somewhere": every rank then
    stops at the same step)."""
    if not group.distributed:
        return value
    tensor = torch.tensor([int(value)])
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def all_gather(group: ProcessGroup, value) -> list:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    if not group.distributed:
        return [value]
    values = [None] * group.world_size
    dist.all_gather_object(values, value)
    return values


def destroy(group: ProcessGroup) -> None:
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()

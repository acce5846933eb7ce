"""Process-group set-up for runs launched by ``torchrun`` (NCCL on GPUs, gloo on CPU), and small helpers.

A run is distributed when ``WORLD_SIZE`` > 1 in the environment (torchrun sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). Every helper also works in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from wsolbench.errors import WsolbenchError


@dataclass(frozen=True)
class Processes:
    """This process's place in the run and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``; ``cuda`` without a GPU is an error."""
    if choice not in ("auto", "cpu", "cuda"):
        raise WsolbenchError(f"--device must be auto, cpu or cuda, got {choice!r}")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise WsolbenchError("--device cuda was asked for but torch sees no CUDA device")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def start(choice: str) -> Processes:
    """Join the process group if launched by torchrun, and choose this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(choice, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world_size, device)


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def sum_across(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """Element-wise sum of ``values`` over all processes (a copy; unchanged in a single process)."""
    values = values.clone()
    if processes.distributed:
        on_device = values.to(processes.device)
        dist.all_reduce(on_device)
        values = on_device.cpu()
    return values


def barrier(processes: Processes) -> None:
    if processes.distributed:
        dist.barrier()

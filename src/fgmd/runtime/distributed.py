"""Multi-process execution on PyTorch's own distributed engine (launched with ``torchrun``).

A single process is the world of size 1: every helper here is then a no-op, so the training
and evaluation code reads the same in both cases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the process group described by torchrun's environment, or stay single-process.

    Uses NCCL when the processes run on CUDA devices and gloo on CPU. Each process takes
    the GPU of its ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        from fgmd.runtime.device import resolve_device

        return DistContext(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        # The code bank and gathered codes live on the CPU: gloo carries them, NCCL the gradients.
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if use_cuda else "gloo")
    return DistContext(rank, world_size, local_rank), device


def barrier(context: DistContext) -> None:
    """Wait for every process (no-op in a single process)."""
    if context.is_distributed:
        dist.barrier()


def merge_bank_updates(bank: torch.Tensor, updated: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Combine the code-bank rows each process wrote this epoch into one bank, identical on all ranks.

    Args:
        bank: ``[N, K]`` int8 ±1 codes; the rows flagged in ``updated`` were written here.
        updated: ``[N]`` bool, rows this process wrote.

    A row written by several processes (DistributedSampler pads with duplicates) gets the
    sign of the sum of their codes (0 -> +1); rows nobody wrote keep their value.
    """
    if not context.is_distributed:
        return bank
    mask = updated.to(torch.int32)
    summed = bank.to(torch.int32) * mask[:, None]
    dist.all_reduce(summed)
    dist.all_reduce(mask)
    merged = torch.where(summed >= 0, 1, -1).to(torch.int8)
    return torch.where(mask[:, None] > 0, merged, bank)


def gather_rows(local: torch.Tensor, indices: torch.Tensor, total: int, context: DistContext) -> torch.Tensor:
    """Reassemble a ``[total, ...]`` tensor from the rows each process computed.

    Args:
        local: ``[n_r, ...]`` rows computed by this process.
        indices: ``[n_r]`` their positions in the full tensor (disjoint across processes).
        total: number of rows of the result.

    Every position must be covered exactly once over all processes (no padding, no gaps).
    """
    if not context.is_distributed:
        return local[torch.argsort(indices)]
    shape = (total, *local.shape[1:])
    out = torch.zeros(shape, dtype=local.dtype)
    covered = torch.zeros(total, dtype=torch.int32)
    out[indices] = local
    covered[indices] = 1
    dist.all_reduce(out)
    dist.all_reduce(covered)
    if not torch.all(covered == 1):
        raise RuntimeError("sharded rows do not cover every position exactly once")
    return out

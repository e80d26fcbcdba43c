"""Training across processes started by ``torchrun``: the process group and the DDP model.

``torchrun --nproc-per-node N -m bidsfusion BIDS_DIR OUTPUT_DIR group ...`` starts N
processes whose environment holds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address; :func:`process_group` joins them (NCCL when training on CUDA,
each process on GPU ``LOCAL_RANK``; gloo on the CPU). Without ``WORLD_SIZE`` (or
with 1) it does nothing and every helper answers for one process, whose training is
exactly the single-process code path.

Every collective waits at most the process group's timeout: a rank that dies
leaves the others to fail with an error after it, not to hang, and torchrun's
elastic agent ends every worker as soon as one exits non-zero. The contrastive
terms gather their negatives through :mod:`bidsfusion.objectives.gather`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bidsfusion.errors import UsageError


@contextmanager
def process_group(device: torch.device, timeout_minutes: float) -> Iterator[None]:
    """Join torchrun's processes for the duration (a no-op outside torchrun or when a
    group is already initialised): NCCL when ``device`` (``--device``) resolves to CUDA,
    gloo otherwise; the ranks other than 0 log errors only."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    timeout = timedelta(minutes=timeout_minutes)
    if device.type == "cuda":
        local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", timeout=timeout, device_id=local)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    logger = logging.getLogger("bidsfusion")
    level = logger.level
    if not is_main():
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank; 0 without a process group."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes; 1 without a process group."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files and logs progress."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if world_size() > 1:
        dist.barrier()


def local_batch_size(batch_size: int) -> int:
    """Each rank's share of the global ``batch_size``; UsageError (64) unless it divides
    into at least 2 samples per rank (a batch of one would break BatchNorm)."""
    n = world_size()
    if batch_size % n or batch_size // n < 2:
        raise UsageError(
            f"--batch-size {batch_size} is the global batch: it must split evenly into at "
            f"least 2 samples for each of the {n} processes"
        )
    return batch_size // n


def mean_over_ranks(values: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Each value averaged over the ranks (every rank passes the same keys in one order)."""
    if world_size() == 1:
        return dict(values)
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    return dict(zip(values, (stacked / world_size()).tolist(), strict=True))


def parallel(module: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """``module`` itself in one process, else wrapped in DistributedDataParallel (its
    batch norms made SyncBatchNorm, in place, with ``sync_bn``; CUDA only)."""
    if world_size() == 1:
        return module
    if sync_bn:
        if device.type != "cuda":
            raise UsageError("--sync-bn needs CUDA: SyncBatchNorm does not run on the CPU")
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedDataParallel(
        module,
        device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )

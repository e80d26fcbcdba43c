"""The global batch of a distributed training step: tensors gathered across ranks.

Under ``torchrun`` every rank holds ``B`` samples of a global batch of ``W * B``
(``W`` ranks). Inside :func:`global_batch` (the training step,
:mod:`bidsfusion.train.loop`), :func:`all_gather` returns every rank's rows in
rank order, with gradients flowing back to the rank that owns each row; outside it,
or without a process group of more than one rank, it returns its input. A term
whose loss sums over its anchors takes its negatives (or its batch statistics)
from the gathered rows and its anchors from :func:`local_rows`, so that the mean
over the ranks of its loss, and DDP's mean of their gradients, equal the loss and
gradient of one process over the global batch (``tests/test_distributed.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

_GLOBAL = ContextVar("bidsfusion_global_batch", default=False)


@contextmanager
def global_batch() -> Iterator[None]:
    """Within: :func:`all_gather` gathers across the ranks of the default process group."""
    token = _GLOBAL.set(True)
    try:
        yield
    finally:
        _GLOBAL.reset(token)


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the gathering in effect; ``(0, 1)`` outside
    :func:`global_batch` or without an initialised process group."""
    if not (_GLOBAL.get() and dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def all_gather(x: Tensor) -> Tensor:
    """``[B, ...] -> [W * B, ...]``: every rank's ``x`` in rank order (every rank's ``B``
    must be equal). The gradient of a row is the sum over the ranks of their gradients
    of it, delivered to the rank it came from. Boolean tensors are gathered without
    gradients. ``x`` itself when :func:`world` is one rank."""
    if world()[1] == 1:
        return x
    if x.dtype == torch.bool:
        return _gathered(x.to(torch.uint8)).bool()
    return _AllGather.apply(x)


def local_rows(n: int) -> slice:
    """This rank's rows of a gathered tensor of ``n`` rows per rank."""
    rank, _ = world()
    return slice(rank * n, (rank + 1) * n)


def _gathered(x: Tensor) -> Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _AllGather(torch.autograd.Function):
    """Forward: all-gather along dim 0; backward: all-reduce (sum) the gradient, keep
    this rank's rows (the sum of every rank's gradient of them)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.rows = local_rows(len(x))
        return _gathered(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        summed = grad.contiguous().clone()
        dist.all_reduce(summed)
        return summed[ctx.rows]

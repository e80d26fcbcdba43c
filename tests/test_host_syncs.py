"""A training step never waits on the host: no op whose result the host must read.

On a GPU, ``.item()``, ``bool(tensor)``, ``float(tensor)``, ``.tolist()``, ``.cpu()``
and data-dependent shapes (``nonzero``, boolean masks) make the host wait until the
device has finished every queued kernel. A CPU run cannot see that wait, but it runs
the same ops: a dispatch mode counts each one that would read a device value, over
whole training epochs of every built-in objective.
"""

from __future__ import annotations

import collections
import inspect
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import SETTINGS, build, random_data, registry
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from bidsfusion.data.sampling import ClassBalancedSampler
from bidsfusion.objectives.supervised import Supervised
from bidsfusion.train.loop import _Fold

READS_THE_DEVICE = {
    "_local_scalar_dense",  # .item(), bool(), float(), int() of a tensor
    "nonzero",
    "masked_select",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "equal",
    "is_nonzero",
    "repeat_interleave",
}
"""aten ops whose output the host must read (a value, or a shape that depends on values)."""

MAX_SYNCS_PER_STEP = 0
"""What a training step may cost in host waits, the optimizer's step counters aside."""

SPECS = [
    *(name for name, term in registry().items() if isinstance(term, str) or term.trains),
    "S-AE",
    "L-CL-CS-S",
]


class HostReads(TorchDispatchMode):
    """Counts every op that reads a device value, by op and the bidsfusion line that ran it;
    reads of ``exempt`` tensors (host-side in a CUDA run too) are not counted."""

    def __init__(self, exempt: set[int]) -> None:
        super().__init__()
        self.exempt = exempt
        self.reads: collections.Counter[tuple[str, str]] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        exempt = bool(args) and id(args[0]) in self.exempt
        if name in READS_THE_DEVICE and not exempt:
            self.reads[(name, _caller())] += 1
        return func(*args, **(kwargs or {}))


def _caller() -> str:
    """``file:line`` of the innermost frame of bidsfusion or of this test on the stack."""
    frames = [
        f
        for f in traceback.extract_stack()
        if "/bidsfusion/" in f.filename
        or (f.filename == __file__ and f.name not in {"method", "__torch_dispatch__", "_caller"})
    ]
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


@contextmanager
def python_reads(reads: collections.Counter[tuple[str, str]]) -> Iterator[None]:
    """Counts ``Tensor.tolist``, ``.cpu`` and ``.numpy`` calls (on the CPU they dispatch
    nothing, on a GPU each one copies to the host)."""
    originals = {name: getattr(Tensor, name) for name in ("tolist", "cpu", "numpy")}

    def counting(name: str) -> Any:
        def method(self: Tensor, *args: Any, **kwargs: Any) -> Any:
            reads[(name, _caller())] += 1
            return originals[name](self, *args, **kwargs)

        return method

    try:
        for name in originals:
            setattr(Tensor, name, counting(name))
        yield
    finally:
        for name, original in originals.items():
            setattr(Tensor, name, original)


def epoch_reads(fold: _Fold, data: Any, epoch: int, steps: int) -> collections.Counter:
    """The host reads of one training epoch of ``steps`` steps, by op and line."""
    fold.steps = steps
    sampler = ClassBalancedSampler(data.labels.tolist(), seed=0)
    exempt = {id(state["step"]) for state in fold.optimizer.state.values()}
    mode, reads = HostReads(exempt), collections.Counter[tuple[str, str]]()
    with mode, python_reads(reads):
        fold.train_epoch(data, sampler, epoch, lambda step: None)
    return mode.reads + reads


def reads_per_step(model: torch.nn.Module, objective: torch.nn.Module, tmp_path: Path) -> dict:
    """The host reads that each training step adds, by op and line: those of an epoch of
    3 steps less those of an epoch of 1 (what an epoch reads once, the sampler's order
    and the means at its end, cancels), after a first epoch that makes the optimizer's
    state."""
    data = random_data(24, 0)
    fold = _Fold(model, objective, SETTINGS, torch.device("cpu"), tmp_path / "fold-0", 3, {})
    epoch_reads(fold, data, 1, 1)
    added = epoch_reads(fold, data, 3, 3)
    added.subtract(epoch_reads(fold, data, 2, 1))
    return {key: n / 2 for key, n in added.items() if n}


@pytest.mark.parametrize("spec", SPECS)
def test_a_training_step_reads_nothing_from_the_device(spec: str, tmp_path: Path) -> None:
    model, objective = build(spec)
    reads = reads_per_step(model, objective, tmp_path)
    assert sum(reads.values()) <= MAX_SYNCS_PER_STEP, f"{spec}: host reads per step {reads}"


class _ReadingSupervised(Supervised):
    """Supervised with the host branch on the labels it once had."""

    def forward(self, outputs: Any, batch: Any) -> dict[str, Tensor]:
        terms = super().forward(outputs, batch)
        if bool((batch["label"] >= 0).any()):
            terms["loss"] = terms["loss"] + 0
        return terms


def test_a_host_branch_in_a_step_is_counted(tmp_path: Path) -> None:
    model, objective = build("Supervised")
    objective.terms["Supervised"].__class__ = _ReadingSupervised
    reads = reads_per_step(model, objective, tmp_path)
    source, start = inspect.getsourcelines(_ReadingSupervised.forward)
    line = start + next(i for i, text in enumerate(source) if "bool(" in text)
    assert reads == {("_local_scalar_dense", f"{Path(__file__).name}:{line}"): 1.0}


def test_a_host_copy_in_a_step_is_counted(tmp_path: Path, monkeypatch) -> None:
    model, objective = build("S")
    forward = type(objective).forward

    def copying(self: Any, outputs: Any, batch: Any) -> dict[str, Tensor]:
        terms = forward(self, outputs, batch)
        terms["loss"].detach().cpu()
        return terms

    monkeypatch.setattr(type(objective), "forward", copying)
    reads = reads_per_step(model, objective, tmp_path)
    assert [op for op, _ in reads] == ["cpu"] and sum(reads.values()) == 1.0

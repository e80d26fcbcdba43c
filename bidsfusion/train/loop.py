"""Train one (objective, fold): RAdam + OneCycleLR, class-balanced batches, augmentation.

Every epoch ``e`` (1-based) draws its randomness from ``(seed, e)`` only: the
global torch seed, the class-balanced sampler and the augmentation generator.
``last.pt`` written after each epoch therefore resumes an interrupted run to
results bit-identical to an uninterrupted one (on the CPU; CUDA kernels may
not be deterministic). Outputs in ``out_dir``: ``checkpoint.pt`` (best
validation loss), ``last.pt`` (resume state) and ``history.tsv``, each
written atomically.

Under torchrun (:mod:`~bidsfusion.train.distributed`) ``batch_size`` is the global
batch: each of the W ranks trains its share of it, the ranks' shards of one
class-balanced draw, under DistributedDataParallel, the contrastive terms seeing the
global batch (:mod:`~bidsfusion.objectives.gather`); the logged terms are averaged
over the ranks. Every rank validates and refreshes the batch norms on all the data
(the same result everywhere) and keeps the same state; only rank 0 writes files and
draws progress. Each rank draws its own random numbers and augmentation from
``(seed, epoch, rank)``, rank 0 those of one process. A run resumes under any number
of processes; bit-identical results need the same number (batch norms also see each
rank's share of a batch unless ``sync_bn``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import RAdam
from torch.optim.lr_scheduler import OneCycleLR

from bidsfusion.data.sampling import ClassBalancedSampler
from bidsfusion.data.transforms import augment
from bidsfusion.errors import InputDataError
from bidsfusion.layout import FoldFiles
from bidsfusion.objectives.base import Objective
from bidsfusion.objectives.gather import global_batch
from bidsfusion.timing import time_left
from bidsfusion.train.diagnostics import (
    augmentation_learners,
    critic_retrieval,
    diagnose,
    report_augmentation_learners,
    retrieval,
)
from bidsfusion.train.distributed import (
    is_main,
    local_batch_size,
    mean_over_ranks,
    parallel,
    rank,
    world_size,
)
from bidsfusion.train.history import TermMeans, epoch_summary, history_row, write_history
from bidsfusion.train.progress import ProgressBar, bar_status, is_milestone
from bidsfusion.train.resume import (
    FoldState,
    load_last,
    repair_outputs,
    save_best,
    save_last,
)
from bidsfusion.train.settings import TrainSettings

log = logging.getLogger(__name__)

TRAINING_REVISION = 3
"""Bumped whenever a change of bidsfusion changes what training computes (2: left-right
flips, translations in mm filled with the background, brain locations for the local
terms; 3: the located local head's maps scaled by LOCATED_SCALE); part of the resume
key, so a run trained by earlier code is retrained."""

_SEED_STRIDE = 100003
"""Epoch ``e`` runs under ``torch.manual_seed(seed * _SEED_STRIDE + e)``; validation under e = 0."""


@dataclass(frozen=True)
class FoldData:
    """One subset of a fold, on the CPU or the training device.

    ``volumes[m]``: float32 ``[N, 1, S, S, S]`` per modality, already normalised;
    ``labels``: LongTensor ``[N]`` (1 positive/AD, 0 negative/HC, -1 other).
    """

    volumes: dict[str, Tensor]
    labels: Tensor

    def __post_init__(self) -> None:
        sizes = {m: len(x) for m, x in self.volumes.items()}
        if "label" in sizes or len({*sizes.values(), len(self.labels)}) != 1:
            raise ValueError(
                f"volumes {sizes} and labels ({len(self.labels)}) must have the same length "
                "and no modality may be called 'label'"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        """Bytes of the volumes and labels."""
        tensors = [*self.volumes.values(), self.labels]
        return sum(x.element_size() * x.nelement() for x in tensors)

    def to(self, device: torch.device) -> FoldData:
        """This subset held on ``device``."""
        return FoldData({m: x.to(device) for m, x in self.volumes.items()}, self.labels.to(device))

    def pinned(self) -> FoldData:
        """This subset in page-locked host memory, which a CUDA copy reads without blocking."""
        return FoldData({m: x.pin_memory() for m, x in self.volumes.items()}, self.labels)

    def batch(self, index: Tensor, device: torch.device) -> dict[str, Tensor]:
        """Samples ``index`` on ``device``: each modality ``[B, 1, *S]``, ``"label"`` ``[B]``.

        Held on ``device``, the batch is gathered there. Held in pinned host memory, it is
        gathered into a pinned buffer and copied without the host waiting, so the host
        prepares the next batch while the device computes."""
        out = {m: _gathered(x, index, device) for m, x in self.volumes.items()}
        out["label"] = _gathered(self.labels, index, device)
        return out


def _gathered(x: Tensor, index: Tensor, device: torch.device) -> Tensor:
    """Rows ``index`` of ``x`` on ``device``."""
    if x.device == device or not x.is_pinned():
        return x[index.to(x.device)].to(device, non_blocking=True)
    buffer = torch.empty((len(index), *x.shape[1:]), dtype=x.dtype, pin_memory=True)
    torch.index_select(x, 0, index.to(x.device), out=buffer)
    return buffer.to(device, non_blocking=True)


DEVICE_SHARE = 0.5
"""Largest share of a CUDA device's free memory that the training data may take there
(the rest is for the activations, gradients and optimizer state)."""


def held_on_device(nbytes: int, free: int) -> bool:
    """Whether ``nbytes`` of training data are held on a device with ``free`` bytes free."""
    return nbytes <= DEVICE_SHARE * free


def placed(subsets: tuple[FoldData, FoldData], device: torch.device) -> tuple[FoldData, ...]:
    """``subsets`` where training reads them fastest: on a CUDA device where they fit
    (:func:`held_on_device`), else in pinned host memory; on the CPU as they are."""
    if device.type != "cuda":
        return subsets
    nbytes = sum(subset.nbytes for subset in subsets)
    free, _ = torch.cuda.mem_get_info(device)
    if held_on_device(nbytes, free):
        return tuple(subset.to(device) for subset in subsets)
    log.info(
        "training data (%.1f GB) kept in pinned host memory: more than %d %% of the "
        "device's %.1f GB free", nbytes / 1e9, DEVICE_SHARE * 100, free / 1e9,
    )  # fmt: skip
    return tuple(subset.pinned() for subset in subsets)


@dataclass
class FoldResult:
    """Outcome of :func:`train_fold`.

    ``epochs_run`` counts every completed epoch, resumed ones included;
    ``seconds`` is the wall time of this call (about 0 for a finished run);
    ``history`` holds the rows of ``history.tsv``; ``unlearned`` the terms whose
    best-epoch validation value is not below its chance level (value, chance);
    ``probe`` the shortcut probe's retrieval with a shared and with independent
    augmentation draws; ``augmentation`` the terms that learned the augmentation
    (augmented value, its chance, un-augmented value, its chance; both
    :mod:`~bidsfusion.train.diagnostics`).
    """

    best_epoch: int
    best_validation_loss: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]]
    unlearned: dict[str, tuple[float, float]] = field(default_factory=dict)
    probe: tuple[float, float] = (0.0, 0.0)
    augmentation: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    @property
    def best_row(self) -> dict[str, float]:
        """The history row of the best epoch."""
        return self.history[self.best_epoch - 1]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps per epoch over ``n`` samples: full batches, or one when ``n < batch_size``.

    Zero when ``n < 2`` (a batch of one would break BatchNorm).
    """
    if n >= batch_size:
        return n // batch_size
    return 1 if n >= 2 else 0


def train_fold(
    model: nn.Module,
    objective: Objective,
    train: FoldData,
    validation: FoldData,
    settings: TrainSettings,
    out_dir: Path,
    on_epoch_end: Callable[[int], None] | None = None,
    data_key: str = "",
) -> FoldResult:
    """Train ``model`` and ``objective`` on ``train``, select by ``validation`` loss.

    Resumes from ``out_dir/last.pt`` written with the same settings, numbers of
    pairs, ``data_key`` (the caller's fingerprint of the data and model: a
    run on other subjects must not resume), :data:`TRAINING_REVISION` and parameter
    shapes, returns a finished run's result
    without training, and ends with
    the best epoch's states loaded into ``model`` and ``objective`` (both left
    on the device, in eval mode). ``on_epoch_end(epoch)`` runs after each
    epoch's files are written.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    steps = steps_per_epoch(len(train), settings.batch_size)
    if len(train) < 2 * world_size() or len(validation) < 2:
        raise InputDataError(
            f"{out_dir}: training needs at least 2 training pairs per process and 2 "
            f"validation pairs, got {len(train)} training pairs for {world_size()} "
            f"process(es) and {len(validation)} validation pairs"
        )
    device = torch.device(settings.device)
    key = {
        **settings.resume_key(),
        "pairs": [len(train), len(validation)],
        "data": data_key,
        "revision": TRAINING_REVISION,
        "parameters": parameter_shapes(model, objective),
    }
    fold = _Fold(model, objective, settings, device, out_dir, steps, key)
    state = fold.resume()
    train, validation = placed((train, validation), device)
    sampler = ClassBalancedSampler(
        train.labels.tolist(), seed=settings.seed, rank=rank(), world_size=world_size()
    )
    first, loop_started = state.epoch + 1, time.perf_counter()
    shown = sys.stderr.isatty() if settings.progress is None else settings.progress
    bar, status = ProgressBar(shown and is_main()), ""
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        epoch_started = time.perf_counter()
        lr = fold.optimizer.param_groups[0]["lr"]
        progress = bar.reporter(f"{fold.name}: epoch {epoch}/{settings.epochs}", steps, status)
        trained = fold.train_epoch(train, sampler, epoch, progress)
        fold.refresh_batch_norm(train)
        validated = fold.validate(validation)
        bar.clear()
        row = history_row(epoch, trained, validated, lr, time.perf_counter() - epoch_started)
        fold.finish_epoch(state, row)
        level = logging.INFO if is_milestone(epoch, settings.epochs) else logging.DEBUG
        left = time_left(loop_started, epoch - first + 1, settings.epochs - epoch)
        log.log(level, "%s: epoch %d/%d %s; %s", fold.name, epoch, settings.epochs,
                epoch_summary(row), left)  # fmt: skip
        status = bar_status(row, left)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    plain = fold.validate(train) if is_main() and state.history else {}
    fold.load_best(state)
    result = FoldResult(
        state.best_epoch,
        state.best_validation_loss,
        state.epoch,
        time.perf_counter() - started,
        state.history,
    )
    if is_main():
        result.unlearned, result.probe = diagnose(
            result.best_row, fold.model, train.volumes, settings, fold.name, steps * state.epoch
        )
        result.augmentation = augmentation_learners(state.history[-1], plain)
        report_augmentation_learners(result.augmentation, fold.name)
    return result


def parameter_shapes(*modules: nn.Module) -> list[list[object]]:
    """``[name, shape]`` of every state entry of ``modules``: a resume key part that
    changes with the architecture."""
    return [
        [f"{i}.{name}", list(value.shape)]
        for i, module in enumerate(modules)
        for name, value in module.state_dict().items()
    ]


def _parameters(*modules: nn.Module) -> list[nn.Parameter]:
    """Every distinct parameter of ``modules`` (shared ones once), in a stable order."""
    return list(dict.fromkeys(p for module in modules for p in module.parameters()))


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * _SEED_STRIDE + epoch


def _training_seeds(seed: int, epoch: int) -> tuple[int, int]:
    """Epoch ``epoch``'s seeds of torch's generator (CS locations, MMVAE noise) and of
    the augmentation draws on this rank: rank 0's are those of one process, every
    other rank's its own, so that no two samples of a global batch share a draw."""
    if rank() == 0:
        entropy = np.random.SeedSequence([seed, epoch, 1]).generate_state(1)[0]
        return _epoch_seed(seed, epoch), int(entropy)
    torch_seed, entropy = np.random.SeedSequence([seed, epoch, 1, rank()]).generate_state(2)
    return int(torch_seed), int(entropy)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA, nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _batches(order: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Full batches of ``order`` (the rest dropped), or all of it when shorter; never size < 2."""
    if len(order) < batch_size:
        if len(order) >= 2:
            yield order
        return
    yield from order[: len(order) - len(order) % batch_size].split(batch_size)


def _augment(
    batch: dict[str, Tensor], generator: torch.Generator, settings: TrainSettings
) -> dict[str, Tensor]:
    """Random left-right flips and translation of every modality (independent draws unless
    ``settings.paired_augmentation``); labels untouched."""
    volumes = {m: x for m, x in batch.items() if m != "label"}
    volumes = augment(
        volumes,
        generator,
        settings.flip_p,
        settings.crop_pad,
        settings.paired_augmentation,
        settings.flip_axes,
    )
    return {**volumes, "label": batch["label"]}


def _formatted(batch: dict[str, Tensor], channels_last: bool) -> dict[str, Tensor]:
    """``batch`` with its volumes in ``channels_last_3d`` when ``channels_last``."""
    if not channels_last:
        return batch
    return {
        k: x.contiguous(memory_format=torch.channels_last_3d) if x.ndim == 5 else x
        for k, x in batch.items()
    }


def compiled(module: nn.Module, compile: bool) -> nn.Module:
    """``module`` under ``torch.compile`` when ``compile`` (random ops as in eager mode,
    so a compiled step draws what an eager one draws), else itself."""
    if not compile:
        return module
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    return torch.compile(module)  # type: ignore[return-value]


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {
        k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for k, v in module.state_dict().items()
    }


class ModelWithObjective(nn.Module):
    """The model and its objective as one module (what DDP wraps): batch -> terms."""

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The objective's terms of ``batch`` (each modality ``[B, 1, *S]``, ``"label"``)."""
        return self.objective(self.model(batch), batch)


class _Fold:
    """The modules, optimizer and scheduler of one fold and the files in ``out_dir``."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        settings: TrainSettings,
        device: torch.device,
        out_dir: Path,
        steps: int,
        key: dict[str, Any],
    ) -> None:
        self.model, self.objective = model.to(device), objective.to(device)
        self.joint = ModelWithObjective(self.model, self.objective)
        if settings.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)
        self.trained = compiled(parallel(self.joint, device, settings.sync_bn), settings.compile)
        """What a training step runs: ``joint``, under DDP in a distributed run, compiled
        with ``compile``."""
        self.settings, self.device, self.files = settings, device, FoldFiles(out_dir)
        self.steps, self.local_batch = steps, local_batch_size(settings.batch_size)
        self.name = "/".join(out_dir.parts[-2:])
        self.key = key
        """What ``last.pt`` must match to be resumed: settings, numbers of pairs, data key."""
        self.optimizer = RAdam(_parameters(model, objective), lr=settings.lr)
        self.scheduler = OneCycleLR(
            self.optimizer,
            max_lr=settings.max_lr,
            total_steps=settings.epochs * steps,
            div_factor=settings.max_lr / settings.lr,
        )

    def _mode(self, training: bool) -> None:
        self.model.train(training)
        self.objective.train(training)

    def _terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        with _autocast(self.device):
            return self.joint(batch)

    def train_epoch(
        self,
        data: FoldData,
        sampler: ClassBalancedSampler,
        epoch: int,
        progress: Callable[[int], None],
    ) -> dict[str, float]:
        """One pass over class-balanced, augmented batches (this rank's share of each);
        the mean of every term over the ranks."""
        self._mode(True)
        torch_seed, entropy = _training_seeds(self.settings.seed, epoch)
        torch.manual_seed(torch_seed)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long, device=data.labels.device)
        generator = torch.Generator(device=self.device).manual_seed(entropy)
        means = TermMeans()
        batches = islice(_batches(order, self.local_batch), self.steps)
        for step, index in enumerate(batches, start=1):
            batch = _augment(data.batch(index, self.device), generator, self.settings)
            batch = _formatted(batch, self.settings.channels_last)
            with _autocast(self.device), global_batch():
                terms = self.trained(batch)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            self.scheduler.step()
            means.add(terms, len(index))
            progress(step)
        return mean_over_ranks(means.means(), self.device)

    @torch.no_grad()
    def refresh_batch_norm(self, data: FoldData) -> None:
        """Recompute every batch norm's running statistics as the plain average over the
        un-augmented training data (precise BN), for evaluation.

        With momentum 0.1 the running statistics trail the weights by tens of steps,
        and start at variance 1 where the DCGAN's first normalised activations have
        variance ~0.01: after 12 steps eval-mode latents were 10x too small, every
        score ~0, and every validation DIM term sat exactly at its chance level.
        """
        norms = [
            m
            for module in (self.model, self.objective)
            for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average
        self._mode(True)
        torch.manual_seed(_epoch_seed(self.settings.seed, 0))
        n = len(data)
        for index in torch.arange(n).tensor_split(max(1, n // self.settings.batch_size)):
            self._terms(data.batch(index, self.device))
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum

    @torch.no_grad()
    def validate(self, data: FoldData) -> dict[str, float]:
        """Every term's mean over ``data`` (eval mode, no augmentation, a fixed seed),
        the pair retrieval of its latents (``retrieval_<a>_<b>``) and by the objective's
        critic (``critic_<term>_<a>_<b>``), chance 1/N."""
        self._mode(False)
        torch.manual_seed(_epoch_seed(self.settings.seed, 0))
        means = TermMeans()
        latents: dict[str, list[Tensor]] = {m: [] for m in data.volumes}
        pairs: dict[str, list[tuple[Tensor, Tensor]]] = {}
        n = len(data)
        # chunks of at least batch_size (the rest joins the last): a one-sample batch
        # would make InfoNCE return 0 and CCA's Cholesky fail
        for index in torch.arange(n).tensor_split(max(1, n // self.settings.batch_size)):
            batch = data.batch(index, self.device)
            with _autocast(self.device):
                outputs = self.model(batch)
            means.add(self.objective(outputs, batch), len(index))
            for m, output in outputs.items():
                latents[m].append(output.latent.float())
            for edge, xy in self.objective.pair_embeddings(outputs, batch).items():
                pairs.setdefault(edge, []).append(xy)
        values = means.means()
        found = retrieval({m: torch.cat(parts) for m, parts in latents.items()})
        values.update({f"retrieval_{pair}": accuracy for pair, accuracy in found.items()})
        critic = critic_retrieval(
            {
                edge: (torch.cat([x for x, _ in xy]), torch.cat([y for _, y in xy]))
                for edge, xy in pairs.items()
            }
        )
        values.update({f"critic_{edge}": accuracy for edge, accuracy in critic.items()})
        if found or critic:
            values["retrieval_chance"] = 1 / n
        return values

    def finish_epoch(self, state: FoldState, row: dict[str, float]) -> None:
        """Record ``row``; rank 0 writes checkpoint.pt on a new best, then history.tsv
        and last.pt."""
        state.epoch = int(row["epoch"])
        state.history.append(row)
        loss = row["val_loss"] if math.isfinite(row["val_loss"]) else math.inf
        best = state.best_model is None or loss < state.best_validation_loss
        if best:
            state.best_epoch, state.best_validation_loss = state.epoch, loss
            state.best_model = _cpu_state(self.model)
            state.best_objective = _cpu_state(self.objective)
        if not is_main():
            return
        if best:
            save_best(self.files, state)
        write_history(self.files.history, state.history)
        save_last(self.files, self.key, self.parts(), state)

    def parts(self) -> dict[str, Any]:
        """What ``last.pt`` holds the state of, by name."""
        return {
            "model": self.model,
            "objective": self.objective,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
        }

    def resume(self) -> FoldState:
        """The progress of a matching ``last.pt`` (loaded into the parts), else a fresh state;
        checkpoint.pt and history.tsv are repaired from it where needed (by rank 0)."""
        state = load_last(self.files, self.key, self.parts())
        done, total = state.epoch, self.settings.epochs
        if done >= total:
            log.info("%s: finished run (%d epochs) found; not retraining", self.name, done)
        elif done:
            log.info(
                "%s: resuming from %s after epoch %d/%d",
                self.name,
                self.files.last.name,
                done,
                total,
            )
        if is_main():
            repair_outputs(self.files, state)
        return state

    def load_best(self, state: FoldState) -> None:
        """Load the best states into the model and objective (eval mode, the model's
        weights in torch's contiguous format whatever ``channels_last``)."""
        self.model.to(memory_format=torch.contiguous_format)
        self.model.load_state_dict(state.best_model)
        self.objective.load_state_dict(state.best_objective)
        self._mode(False)

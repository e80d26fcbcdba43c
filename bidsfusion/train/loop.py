"""Train one (objective, fold): RAdam + OneCycleLR, class-balanced batches, paired augmentation.

Every epoch ``e`` (1-based) draws its randomness from ``(seed, e)`` only: the
global torch seed, the class-balanced sampler and the augmentation generator.
``last.pt`` written after each epoch therefore resumes an interrupted run to
results bit-identical to an uninterrupted one (on the CPU; CUDA kernels may
not be deterministic). Outputs in ``out_dir``: ``checkpoint.pt`` (best
validation loss), ``last.pt`` (resume state) and ``history.tsv``, each
written atomically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import RAdam
from torch.optim.lr_scheduler import OneCycleLR

from bidsfusion.atomic import write_text
from bidsfusion.data.transforms import ClassBalancedSampler, random_crop, random_flip
from bidsfusion.errors import InputDataError, UsageError
from bidsfusion.train.checkpoint import load_checkpoint, save_checkpoint
from bidsfusion.train.progress import ProgressBar

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT = "checkpoint.pt"
LAST = "last.pt"
HISTORY = "history.tsv"
_SEED_STRIDE = 100003
"""Epoch ``e`` runs under ``torch.manual_seed(seed * _SEED_STRIDE + e)``; validation under e = 0."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (paper 3.2). ``lr`` is OneCycle's initial and ``max_lr`` its peak.

    ``crop_pad``: maximal random translation in voxels; ``flip_p``: flip
    probability per axis; ``progress``: an in-place progress bar on stderr
    (None: only when stderr is a TTY).
    """

    epochs: int = 200
    batch_size: int = 64
    lr: float = 4e-4
    max_lr: float = 0.01
    seed: int = 0
    device: str = "auto"
    crop_pad: int = 4
    flip_p: float = 0.5
    progress: bool | None = None

    def __post_init__(self) -> None:
        checks = {
            f"epochs must be >= 1, got {self.epochs}": self.epochs >= 1,
            f"batch size must be >= 2, got {self.batch_size}": self.batch_size >= 2,
            f"need 0 < lr <= max_lr, got lr {self.lr}, max_lr {self.max_lr}": (
                0 < self.lr <= self.max_lr
            ),
            f"seed must be >= 0, got {self.seed}": self.seed >= 0,
            f"device must be one of {', '.join(DEVICES)}, got {self.device!r}": (
                self.device in DEVICES
            ),
            f"crop padding must be >= 0, got {self.crop_pad}": self.crop_pad >= 0,
            f"flip probability must be in [0, 1], got {self.flip_p}": 0 <= self.flip_p <= 1,
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise UsageError("; ".join(problems))

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the interrupted one (not device, progress)."""
        key = asdict(self)
        del key["device"], key["progress"]
        return key


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

    def batch(self, index: Tensor, device: torch.device) -> dict[str, Tensor]:
        """Samples ``index`` on ``device``: each modality ``[B, 1, *S]``, ``"label"`` ``[B]``."""
        out = {
            m: x[index.to(x.device)].to(device, non_blocking=True) for m, x in self.volumes.items()
        }
        out["label"] = self.labels[index.to(self.labels.device)].to(device, non_blocking=True)
        return out


@dataclass
class FoldResult:
    """Outcome of :func:`train_fold`.

    ``epochs_run`` counts every completed epoch, resumed ones included;
    ``seconds`` is the wall time of this call (about 0 for a finished run);
    ``history`` holds the rows of ``history.tsv``.
    """

    best_epoch: int
    best_validation_loss: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]]


@dataclass
class _State:
    """What ``last.pt`` carries besides the module, optimizer and scheduler states."""

    epoch: int = 0
    best_epoch: int = 0
    best_validation_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    best_model: dict[str, Tensor] | None = None
    best_objective: dict[str, Tensor] | None = None


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"device 'cuda' requested but no CUDA GPU is available to torch {torch.__version__}"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps per epoch over ``n`` samples: full batches, or one when ``n < batch_size``.

    Zero when ``n < 2`` (a batch of one would break BatchNorm).
    """
    if n >= batch_size:
        return n // batch_size
    return 1 if n >= 2 else 0


def train_fold(
    model: nn.Module,
    objective: nn.Module,
    train: FoldData,
    validation: FoldData,
    settings: TrainSettings,
    out_dir: Path,
    on_epoch_end: Callable[[int], None] | None = None,
    data_key: str = "",
) -> FoldResult:
    """Train ``model`` and ``objective`` on ``train``, select by ``validation`` loss.

    Resumes from ``out_dir/last.pt`` written with the same settings, numbers of
    pairs and ``data_key`` (the caller's fingerprint of the data and model: a
    run on other subjects must not resume), returns a finished run's result
    without training, and ends with
    the best epoch's states loaded into ``model`` and ``objective`` (both left
    on the device, in eval mode). ``on_epoch_end(epoch)`` runs after each
    epoch's files are written.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    steps = steps_per_epoch(len(train), settings.batch_size)
    if steps == 0 or len(validation) == 0:
        raise InputDataError(
            f"{out_dir}: training needs at least 2 training and 1 validation pairs, "
            f"got {len(train)} and {len(validation)}"
        )
    device = resolve_device(settings.device)
    key = {**settings.resume_key(), "pairs": [len(train), len(validation)], "data": data_key}
    fold = _Fold(model, objective, settings, device, out_dir, steps, key)
    state = fold.resume()
    sampler = ClassBalancedSampler(train.labels.tolist(), seed=settings.seed)
    bar = ProgressBar(sys.stderr.isatty() if settings.progress is None else settings.progress)
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        epoch_started = time.perf_counter()
        lr = fold.optimizer.param_groups[0]["lr"]
        progress = bar.reporter(f"{fold.name}: epoch {epoch}/{settings.epochs}", steps)
        trained = fold.train_epoch(train, sampler, epoch, progress)
        validated = fold.validate(validation)
        bar.clear()
        row = _row(epoch, trained, validated, lr, time.perf_counter() - epoch_started)
        fold.finish_epoch(state, row)
        log.info(
            "%s: epoch %d/%d loss %.4g val %.4g %.1f s",
            fold.name, epoch, settings.epochs, row["train_loss"], row["val_loss"], row["seconds"],
        )  # fmt: skip
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    fold.load_best(state)
    return FoldResult(
        state.best_epoch,
        state.best_validation_loss,
        state.epoch,
        time.perf_counter() - started,
        state.history,
    )


def _parameters(*modules: nn.Module) -> list[nn.Parameter]:
    """Every distinct parameter of ``modules`` (shared ones once), in a stable order."""
    return list(dict.fromkeys(p for module in modules for p in module.parameters()))


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * _SEED_STRIDE + epoch


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
    """The same random flips and translation for every modality of a pair; labels untouched."""
    volumes = {m: x for m, x in batch.items() if m != "label"}
    if settings.flip_p > 0:
        volumes = random_flip(volumes, generator, settings.flip_p)
    if settings.crop_pad > 0:
        volumes = random_crop(volumes, generator, settings.crop_pad)
    return {**volumes, "label": batch["label"]}


class _Means:
    """Batch-size-weighted means of the scalar terms, accumulated on the device."""

    def __init__(self) -> None:
        self.totals: dict[str, Tensor] = {}
        self.count = 0

    def add(self, terms: Mapping[str, Tensor], size: int) -> None:
        for key, value in terms.items():
            weighted = value.detach().float() * size
            self.totals[key] = self.totals[key] + weighted if key in self.totals else weighted
        self.count += size

    def means(self) -> dict[str, float]:
        """Term -> mean, ``"loss"`` first then sorted by name (one device sync)."""
        keys = ["loss", *sorted(k for k in self.totals if k != "loss")]
        values = (torch.stack([self.totals[k] for k in keys]) / self.count).tolist()
        return dict(zip(keys, values, strict=True))


def _row(
    epoch: int, trained: dict[str, float], validated: dict[str, float], lr: float, seconds: float
) -> dict[str, float]:
    """One history row: epoch, train_<term>..., val_<term>..., lr (the epoch's first), seconds."""
    return {
        "epoch": epoch,
        **{f"train_{k}": v for k, v in trained.items()},
        **{f"val_{k}": v for k, v in validated.items()},
        "lr": lr,
        "seconds": seconds,
    }


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """Tab-separated rows; floats in their shortest exact form."""
    lines = ["\t".join(rows[0])] + ["\t".join(repr(v) for v in row.values()) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


class _Fold:
    """The modules, optimizer and scheduler of one fold and the files in ``out_dir``."""

    def __init__(
        self,
        model: nn.Module,
        objective: nn.Module,
        settings: TrainSettings,
        device: torch.device,
        out_dir: Path,
        steps: int,
        key: dict[str, Any],
    ) -> None:
        self.model, self.objective = model.to(device), objective.to(device)
        self.settings, self.device, self.out_dir = settings, device, out_dir
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
            return self.objective(self.model(batch), batch)

    def train_epoch(
        self,
        data: FoldData,
        sampler: ClassBalancedSampler,
        epoch: int,
        progress: Callable[[int], None],
    ) -> dict[str, float]:
        """One pass over class-balanced, augmented batches; the mean of every term."""
        seed = self.settings.seed
        self._mode(True)
        torch.manual_seed(_epoch_seed(seed, epoch))
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)
        entropy = np.random.SeedSequence([seed, epoch, 1]).generate_state(1)[0]
        generator = torch.Generator(device=self.device).manual_seed(int(entropy))
        means = _Means()
        for step, index in enumerate(_batches(order, self.settings.batch_size), start=1):
            batch = _augment(data.batch(index, self.device), generator, self.settings)
            terms = self._terms(batch)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            self.scheduler.step()
            means.add(terms, len(index))
            progress(step)
        return means.means()

    @torch.no_grad()
    def validate(self, data: FoldData) -> dict[str, float]:
        """Every term's mean over ``data``: eval mode, no augmentation, a fixed seed."""
        self._mode(False)
        torch.manual_seed(_epoch_seed(self.settings.seed, 0))
        means = _Means()
        n = len(data)
        for index in torch.arange(n).tensor_split(math.ceil(n / self.settings.batch_size)):
            means.add(self._terms(data.batch(index, self.device)), len(index))
        return means.means()

    def finish_epoch(self, state: _State, row: dict[str, float]) -> None:
        """Record ``row``; write checkpoint.pt on a new best, then history.tsv and last.pt."""
        state.epoch = int(row["epoch"])
        state.history.append(row)
        loss = row["val_loss"] if math.isfinite(row["val_loss"]) else math.inf
        if state.best_model is None or loss < state.best_validation_loss:
            state.best_epoch, state.best_validation_loss = state.epoch, loss
            state.best_model = _cpu_state(self.model)
            state.best_objective = _cpu_state(self.objective)
            self._write_best(state)
        _write_history(self.out_dir / HISTORY, state.history)
        save_checkpoint(
            self.out_dir / LAST,
            {
                "settings": self.key,
                "model": self.model.state_dict(),
                "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                **vars(state),
            },
        )

    def _write_best(self, state: _State) -> None:
        save_checkpoint(
            self.out_dir / CHECKPOINT,
            {
                "model": state.best_model,
                "objective": state.best_objective,
                "epoch": state.best_epoch,
                "validation_loss": state.best_validation_loss,
            },
        )

    def resume(self) -> _State:
        """Load ``last.pt`` into the modules, optimizer, scheduler when its settings match.

        Returns its progress, or a fresh state when there is none or its settings or
        numbers of pairs differ.
        """
        path = self.out_dir / LAST
        if not path.exists():
            return _State()
        saved = load_checkpoint(path)
        if saved.get("settings") != self.key:
            log.warning("%s was written with other settings or data; training from scratch", path)
            return _State()
        try:
            self.model.load_state_dict(saved["model"])
            self.objective.load_state_dict(saved["objective"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            state = _State(**{k: saved[k] for k in _State.__dataclass_fields__})
        except (KeyError, RuntimeError, ValueError) as exc:
            raise InputDataError(
                f"{path} does not match this model and objective ({exc}); remove it to retrain"
            ) from exc
        done, total = state.epoch, self.settings.epochs
        if done >= total:
            log.info("%s: finished run (%d epochs) found; not retraining", self.name, done)
        else:
            log.info("%s: resuming from %s after epoch %d/%d", self.name, LAST, done, total)
        return state

    def load_best(self, state: _State) -> None:
        """Load the best states (eval mode); rewrite checkpoint.pt if a finished run lost it."""
        self.model.load_state_dict(state.best_model)
        self.objective.load_state_dict(state.best_objective)
        self._mode(False)
        if not (self.out_dir / CHECKPOINT).exists():
            self._write_best(state)

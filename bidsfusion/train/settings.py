"""Optimisation settings of one fold's training and the device they run on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from bidsfusion.config import DEVICES, Train, check_learning_rates
from bidsfusion.errors import UsageError

_DEFAULT = Train()
"""The defaults of the user's training settings, written once in :class:`Train`."""


@dataclass(frozen=True)
class TrainSettings:
    """What :func:`~bidsfusion.train.loop.train_fold` needs: the run's :class:`Train` settings
    in the loop's units (:meth:`of`), the seed and the device (resolved once, at construction).

    Optimisation settings (paper 3.2). ``lr`` is OneCycle's initial and ``max_lr`` its peak
    learning rate: the paper's peak, 0.01, sends the DIM terms far above their chance
    level at the peak (CL on planted data: 18.1 before it, 26 at it); at 2e-3 the peak
    still undid what S had learned on the synthetic benchmark, and every self-supervised
    objective evaluated better with 5e-4 (docs/usage.md, "Augmentation and optimisation").

    ``crop_pad``: maximal random translation in voxels of the 64^3 grid (4: 12 mm,
    scaled to the input size; 0, the default: none, since L, whose two sides are one
    image and so share its translation, learned the shift instead of the brain);
    ``flip_p``: flip probability per axis of
    ``flip_axes`` (0: left-right, torchio's default; flips along the other axes turn
    a brain upside down or back to front, which no scan shows);
    ``paired_augmentation``: one draw for both views of a pair (the reference
    implementation) instead of one per modality;
    ``progress``: an in-place progress bar on stderr (None: only when stderr is a TTY);
    ``sync_bn``: batch norms over the global batch in a distributed run (SyncBatchNorm,
    CUDA only; without it each rank normalises its share of the batch);
    ``channels_last``: the model's convolutions and the batches in ``channels_last_3d``;
    ``compile``: the training step (model and objective) under ``torch.compile``.
    The last three change how a step runs, not what it computes (to rounding).
    """

    epochs: int = _DEFAULT.epochs
    batch_size: int = _DEFAULT.batch_size
    lr: float = _DEFAULT.lr
    max_lr: float = _DEFAULT.max_lr
    seed: int = 0
    device: str | torch.device = "auto"
    """``auto``, ``cpu``, ``cuda`` or a ``torch.device``; a ``torch.device`` once made."""
    crop_pad: int = _DEFAULT.crop_pad
    flip_p: float = 0.5
    flip_axes: tuple[int, ...] = _DEFAULT.flipped_axes
    paired_augmentation: bool = _DEFAULT.paired_augmentation
    progress: bool | None = None
    sync_bn: bool = _DEFAULT.sync_bn
    channels_last: bool = _DEFAULT.channels_last
    compile: bool = _DEFAULT.compile

    @classmethod
    def of(cls, train: Train, seed: int, device: torch.device) -> TrainSettings:
        """The settings of a run's :class:`Train` section (``--max-shift`` in mm becomes
        voxels of the 3 mm grid, ``--flip-axes`` the axes it names)."""
        return cls(
            epochs=train.epochs,
            batch_size=train.batch_size,
            lr=train.lr,
            max_lr=train.max_lr,
            seed=seed,
            device=device,
            crop_pad=train.crop_pad,
            flip_axes=train.flipped_axes,
            paired_augmentation=train.paired_augmentation,
            sync_bn=train.sync_bn,
            channels_last=train.channels_last,
            compile=train.compile,
        )

    def __post_init__(self) -> None:
        check_learning_rates(self.lr, self.max_lr)
        checks = {
            f"epochs must be >= 1, got {self.epochs}": self.epochs >= 1,
            f"batch size must be >= 2, got {self.batch_size}": self.batch_size >= 2,
            f"seed must be >= 0, got {self.seed}": self.seed >= 0,
            f"crop padding must be >= 0, got {self.crop_pad}": self.crop_pad >= 0,
            f"flip probability must be in [0, 1], got {self.flip_p}": 0 <= self.flip_p <= 1,
            f"flip axes must be among 0, 1, 2, got {self.flip_axes}": (
                set(self.flip_axes) <= {0, 1, 2}
            ),
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise UsageError("; ".join(problems))
        object.__setattr__(self, "device", resolve_device(self.device))

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the interrupted one (not device,
        progress, sync_bn, channels_last, compile: like the number of processes, how the
        run is spread)."""
        key = asdict(self)
        for how in ("device", "progress", "sync_bn", "channels_last", "compile"):
            del key[how]
        return key


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``; a
    ``torch.device`` as it is."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"device 'cuda' requested but no CUDA GPU is available to torch {torch.__version__}"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)

"""Optimisation settings of one fold's training and the device they run on."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bidsfusion.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (paper 3.2). ``lr`` is OneCycle's initial and ``max_lr`` its peak
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
    CUDA only; without it each rank normalises its share of the batch).
    """

    epochs: int = 200
    batch_size: int = 64
    lr: float = 4e-4
    max_lr: float = 5e-4
    seed: int = 0
    device: str = "auto"
    crop_pad: int = 0
    flip_p: float = 0.5
    flip_axes: tuple[int, ...] = (0,)
    paired_augmentation: bool = False
    progress: bool | None = None
    sync_bn: bool = False

    def __post_init__(self) -> None:
        checks = {
            f"epochs must be >= 1, got {self.epochs}": self.epochs >= 1,
            f"batch size must be >= 2, got {self.batch_size}": self.batch_size >= 2,
            f"need 0 < lr <= max_lr, both finite, got lr {self.lr}, max_lr {self.max_lr}": (
                0 < self.lr <= self.max_lr and math.isfinite(self.max_lr)
            ),
            f"seed must be >= 0, got {self.seed}": self.seed >= 0,
            f"device must be one of {', '.join(DEVICES)}, got {self.device!r}": (
                self.device in DEVICES
            ),
            f"crop padding must be >= 0, got {self.crop_pad}": self.crop_pad >= 0,
            f"flip probability must be in [0, 1], got {self.flip_p}": 0 <= self.flip_p <= 1,
            f"flip axes must be among 0, 1, 2, got {self.flip_axes}": (
                set(self.flip_axes) <= {0, 1, 2}
            ),
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise UsageError("; ".join(problems))

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the interrupted one (not device,
        progress, sync_bn: like the number of processes, how the run is spread)."""
        key = asdict(self)
        del key["device"], key["progress"], key["sync_bn"]
        return key


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

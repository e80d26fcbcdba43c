"""The run configuration: one frozen dataclass, built from the CLI's values, saved as TOML.

Precedence: built-in defaults < ``--config FILE.toml`` < command-line options;
the CLI reads the file (:func:`read_toml`) into click's defaults, so what
:func:`make_config` receives is already merged and type-checked. Checks that
involve several settings live in :meth:`RunConfig.__post_init__`. The effective
configuration is written next to the outputs so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from bidsfusion.errors import InputMissingError, UsageError
from bidsfusion.modality import BUILTIN_MODALITIES, FALFF_BAND

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FLIP_AXES = {"lr": (0,), "all": (0, 1, 2), "none": ()}
"""``--flip-axes`` names -> the volume axes flipped (0: left-right)."""
GRID_MM = 3
"""Voxel size of the participant-level grid, the unit of ``--max-shift``."""
MAX_SHIFT = 48


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one ``bidsfusion`` run needs; paths are absolute."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    skip_bids_validation: bool = False
    work_dir: Path | None = None
    nprocs: int = max(1, os.cpu_count() or 1)
    omp_nthreads: int | None = None
    """Threads per process; None: 1 at the participant level, ``nprocs`` at the group level."""
    mem_gb: float | None = None
    seed: int = 0
    verbose: int = 0
    # participant level
    task: str = "rest"
    falff_band: tuple[float, float] = FALFF_BAND
    skull_strip: str = "template"
    backend: str = "simpleitk"
    nipype_plugin: str = "MultiProc"
    nipype_plugin_args: Path | None = None
    # group level
    modality: tuple[str, ...] = BUILTIN_MODALITIES
    """The registered modalities the group level fuses, at least two, in this order."""
    objective: tuple[str, ...] = ()
    encoder: str = "dcgan"
    latent_dim: int = 64
    epochs: int = 200
    lr: float = 4e-4
    max_lr: float = 5e-4
    batch_size: int = 64
    input_size: int = 64
    folds: int = 5
    holdout: int | float = 0.15
    """0 (none), a fraction in (0, 1) as a float, or a count >= 1 as an int."""
    include_flagged: bool = False
    label_column: str = "diagnosis"
    positive: str = "AD"
    negative: str = "HC"
    device: str = "auto"
    objective_option: tuple[str, ...] = ()
    analysis: tuple[str, ...] = ()
    """Analyses to run (empty: all registered; ``("none",)``: none)."""
    paired_augmentation: bool = False
    flip_axes: str = "lr"
    """``lr``, ``all`` or ``none`` (:data:`FLIP_AXES`)."""
    max_shift: int = 0
    """Largest random translation in mm, a multiple of :data:`GRID_MM` (0: none; a shared
    translation let L match a location with its own image's latent by where the brain
    sits in the field of view, see docs/usage.md)."""
    n_trials: int = 500
    optuna_storage: str | None = None
    eval_only: bool = False
    fold: tuple[int, ...] = ()
    """Folds to train and evaluate (empty: every fold)."""
    sync_bn: bool = False
    dist_timeout: float = 30.0
    """Minutes a process of a distributed (torchrun) run waits for the others."""

    def __post_init__(self) -> None:
        """Check what involves several settings, wherever they came from (exit 64)."""
        if not (0 < self.lr <= self.max_lr and math.isfinite(self.max_lr)):
            raise UsageError(
                f"--lr {self.lr} and --max-lr {self.max_lr}: need 0 < lr <= max lr, both finite"
            )
        if self.flip_axes not in FLIP_AXES:
            raise UsageError(
                f"--flip-axes {self.flip_axes!r}: choose one of {', '.join(FLIP_AXES)}"
            )
        if not 0 <= self.max_shift <= MAX_SHIFT or self.max_shift % GRID_MM:
            raise UsageError(
                f"--max-shift {self.max_shift}: give a multiple of {GRID_MM} mm (the grid's "
                f"voxel) between 0 and {MAX_SHIFT}"
            )
        if self.positive == self.negative:
            raise UsageError(
                f"--positive and --negative are both {self.positive!r}; the two classes must differ"
            )

    @property
    def work(self) -> Path:
        """The work directory: ``--work-dir``, else the hidden ``OUTPUT_DIR/.bidsfusion-work``."""
        return self.work_dir or self.output_dir / ".bidsfusion-work"

    def to_toml(self) -> str:
        """The configuration as TOML text (paths as strings, ``None`` omitted)."""
        return tomli_w.dumps(
            {k: _to_toml_value(v) for k, v in dataclasses.asdict(self).items() if v is not None}
        )


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _to_toml_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def read_toml(path: Path) -> dict[str, Any]:
    """The top-level table of a TOML file; raises InputMissingError (66) or UsageError (64)."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputMissingError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputMissingError(f"config file {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc


def make_config(options: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from the CLI's values; ``None`` and ``()`` mean "not given" (the default)."""
    settings = {k: _coerce(k, v) for k, v in options.items() if v is not None and v != ()}
    try:
        return RunConfig(**settings)
    except TypeError as exc:
        raise UsageError(f"incomplete configuration: {exc}") from exc


def _coerce(name: str, value: Any) -> Any:
    kind = str(FIELDS[name].type)
    if "Path" in kind:
        return Path(value).expanduser().absolute()
    if kind.startswith("tuple"):
        return tuple(value) if isinstance(value, list | tuple) else (value,)
    return value

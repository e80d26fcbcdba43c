"""The options of the two analysis levels and the click types that check their values.

``--config FILE.toml`` is an eager option whose values become click's defaults
(:mod:`bidsfusion.config_file`), so a file's values pass the same types, ranges
and callbacks as command-line values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from bidsfusion.config_file import load_config_file

SEED = click.IntRange(0, 2**32 - 1)
"""Every ``--seed``: what numpy, torch and Optuna all accept."""


def level_options(fn: Any) -> Any:
    """Decorate a click command with every option of the two analysis levels."""
    options = [
        click.option(
            "--participant-label",
            "--participant_label",
            "participant_label",
            multiple=True,
            metavar="LABEL...",
            help="Subjects to process (01 or sub-01); several allowed. Default: all.",
        ),
        click.option(
            "--session-label",
            "--session_label",
            "session_label",
            multiple=True,
            metavar="LABEL...",
            help="Sessions to process (01 or ses-01).",
        ),
        click.option(
            "--skip-bids-validation",
            "--skip_bids_validation",
            "skip_bids_validation",
            is_flag=True,
            default=None,
            help="Do not check file names against BIDS.",
        ),
        click.option(
            "-w",
            "--work-dir",
            type=click.Path(path_type=Path),
            help="Intermediate files (nipype cache, volume cache); never inside BIDS_DIR.",
        ),
        click.option(
            "--nprocs",
            "--n_cpus",
            "nprocs",
            type=click.IntRange(min=1),
            help="Processes for nipype MultiProc and data loading.",
        ),
        click.option(
            "--omp-nthreads",
            type=click.IntRange(min=1),
            help="Threads per process (SimpleITK, numpy; torch at the group level). "
            "Default: 1 at the participant level, --nprocs at the group level.",
        ),
        click.option(
            "--mem",
            "mem_gb",
            type=Memory(),
            metavar="GB",
            help="Memory limit for nipype scheduling, e.g. 8 or 8GB.",
        ),
        click.option(
            "--seed",
            type=SEED,
            help="Seed for every random choice (recorded), 0 to 2^32 - 1. Default: 0.",
        ),
        click.option(
            "--config",
            type=click.Path(path_type=Path),
            is_eager=True,
            expose_value=False,
            callback=load_config_file,
            help="TOML file with default settings (option names as keys); "
            "command-line options override it.",
        ),
        click.option(
            "-v", "--verbose", count=True, help="More log output; with -v, tracebacks on errors."
        ),
        click.option("--task", help="[participant] BOLD task label to use. Default: rest."),
        click.option(
            "--falff-band",
            type=Band(),
            metavar="LOW HIGH",
            help="[participant] fALFF band in Hz, 0 < LOW < HIGH. Default: 0.01 0.1.",
        ),
        click.option(
            "--skull-strip",
            type=click.Choice(["template", "none"]),
            help="[participant] 'template' brain mask, or 'none' for inputs "
            "already skull-stripped.",
        ),
        click.option(
            "--backend",
            help="[participant] preprocessing backend (see "
            "'bidsfusion plugins'). Default: simpleitk.",
        ),
        click.option(
            "--nipype-plugin",
            help="[participant] nipype execution plugin (MultiProc, Linear, SLURM, SGE, ...).",
        ),
        click.option(
            "--nipype-plugin-args",
            type=click.Path(path_type=Path),
            help="[participant] YAML file of arguments for --nipype-plugin.",
        ),
        click.option(
            "--modality",
            multiple=True,
            metavar="NAME...",
            help="[group] registered modalities to fuse, at least two (repeatable; see "
            "'bidsfusion plugins'). Default: T1w falff.",
        ),
        click.option(
            "--objective",
            multiple=True,
            metavar="SPEC...",
            help="[group] objective spec(s), e.g. L-CL S-AE; all-dim (the 15 DIM "
            "combinations); Random (untrained encoders, the control); paper (the paper's "
            "whole grid with Random).",
        ),
        click.option(
            "--analysis",
            multiple=True,
            metavar="NAME...",
            help="[group] analyses to run after the evaluation (registered names, see "
            "'bidsfusion plugins'); none to skip them. Default: all.",
        ),
        click.option(
            "--objective-option",
            multiple=True,
            metavar="TERM.KEY=VALUE",
            help="[group] an objective term's option, e.g. CCA.ridge=1e-3 (repeatable; "
            "'bidsfusion plugins' lists each term's options).",
        ),
        click.option("--encoder", help="[group] encoder name. Default: dcgan."),
        click.option(
            "--latent-dim", type=click.IntRange(min=1), help="[group] latent size. Default: 64."
        ),
        click.option("--epochs", type=click.IntRange(min=1), help="[group] Default: 200."),
        click.option(
            "--lr",
            type=click.FloatRange(min=0, min_open=True),
            help="[group] OneCycle's initial learning rate. Default: 4e-4 (the paper).",
        ),
        click.option(
            "--max-lr",
            type=click.FloatRange(min=0, min_open=True),
            help="[group] OneCycle's peak learning rate, >= --lr. Default: 5e-4 "
            "(the paper's 0.01 makes the DIM terms diverge at the peak).",
        ),
        click.option("--batch-size", type=click.IntRange(min=2), help="[group] Default: 64."),
        click.option(
            "--input-size",
            type=IntChoice([64, 32, 16]),
            help="[group] volume size the model sees. Default: 64 (the paper).",
        ),
        click.option("--folds", type=click.IntRange(min=2), help="[group] CV folds. Default: 5."),
        click.option(
            "--holdout",
            type=Holdout(),
            metavar="N",
            help="[group] hold-out subjects: 0 for none, a fraction in (0, 1), "
            "or a whole count >= 1. Default: 0.15.",
        ),
        click.option(
            "--include-flagged",
            is_flag=True,
            default=None,
            help="[group] also train on scans whose registration QC flagged them",
        ),
        click.option(
            "--label-column",
            help="[group] participants.tsv column with the group. Default: diagnosis.",
        ),
        click.option("--positive", help="[group] positive class value. Default: AD."),
        click.option("--negative", help="[group] negative class value. Default: HC."),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            help="[group] training device. Default: auto.",
        ),
        click.option(
            "--paired-augmentation",
            is_flag=True,
            default=None,
            help="[group] one flip/translation draw for both views of a pair, as the "
            "reference implementation (default: one draw per modality).",
        ),
        click.option(
            "--flip-axes",
            type=click.Choice(["lr", "all", "none"]),
            help="[group] random flips: lr (left-right, as torchio), all (the three axes, "
            "as the reference implementation) or none. Default: lr.",
        ),
        click.option(
            "--max-shift",
            type=click.IntRange(0, 48),
            metavar="MM",
            help="[group] largest random translation in mm, a multiple of the grid's 3 mm "
            "(the reference implementation: 12 at 64^3). Default: 0 (none: with a "
            "translation, L learns the shift instead of the brain).",
        ),
        click.option(
            "--n-trials",
            type=click.IntRange(min=1),
            help="[group] Optuna trials per (objective, modality, fold) evaluation. "
            "Default: 500 (the paper).",
        ),
        click.option(
            "--optuna-storage",
            metavar="URL",
            help="[group] Optuna RDB URL shared by evaluation jobs (sqlite:///..., "
            "postgresql://...). Default: a journal file WORK_DIR/optuna.journal.",
        ),
        click.option(
            "--eval-only",
            is_flag=True,
            default=None,
            help="[group] evaluate existing representations without training.",
        ),
        click.option(
            "--fold",
            multiple=True,
            type=click.IntRange(min=0),
            metavar="K...",
            help="[group] train and evaluate only fold K (0-based; repeatable), e.g. one "
            "fold per cluster job; the analyses then wait for a run without --fold. "
            "Default: every fold.",
        ),
        click.option(
            "--sync-bn",
            is_flag=True,
            default=None,
            help="[group] under torchrun, batch norms over the global batch (SyncBatchNorm; "
            "CUDA only). Default: each process normalises its share of the batch.",
        ),
        click.option(
            "--dist-timeout",
            type=click.FloatRange(min=0, min_open=True),
            metavar="MINUTES",
            help="[group] under torchrun, how long a process waits for the others before "
            "failing (a dead process ends the run instead of hanging it). Default: 30.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


class Holdout(click.ParamType):
    """``--holdout``: 0 (none), a fraction in (0, 1), or a whole count >= 1.

    Converts to an ``int`` for 0 and counts, a ``float`` for fractions.
    """

    name = "holdout"
    rule = "0 (none), a fraction in (0, 1), or a whole count >= 1"
    toml_kinds = (int, float)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = _finite_number(value)
        if number is None or number < 0 or (number >= 1 and not number.is_integer()):
            self.fail(f"{value!r}: expected {self.rule}", param, ctx)
        return int(number) if number.is_integer() else number


class Band(click.Tuple):
    """``--falff-band LOW HIGH``: two finite frequencies in Hz with 0 < LOW < HIGH."""

    rule = "two finite numbers LOW HIGH (Hz) with 0 < LOW < HIGH"

    def __init__(self) -> None:
        super().__init__([float, float])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        low, high = super().convert(value, param, ctx)
        if not (math.isfinite(high) and 0 < low < high):
            self.fail(f"{' '.join(map(str, value))}: expected {self.rule}", param, ctx)
        return low, high


class Memory(click.ParamType):
    """``--mem``: a size in GB, as a number or text such as 8, 8GB or 512MB."""

    name = "memory"
    rule = "a memory size above 0, such as 8, 8GB or 512MB"
    toml_kinds = (int, float, str)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        size = _gigabytes(value)
        if size is None or size <= 0:
            self.fail(f"{value!r}: expected {self.rule}", param, ctx)
        return size


class IntChoice(click.Choice):
    """One of a few integers, as a TOML integer or its command-line text."""

    toml_kinds = (int, str)

    def __init__(self, choices: Sequence[int]) -> None:
        super().__init__([str(choice) for choice in choices])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return int(super().convert(str(value), param, ctx))


def _gigabytes(value: Any) -> float | None:
    """A memory size in GB from a number (GB) or text such as 8GB or 512MB, else None."""
    if not isinstance(value, str):
        number = _finite_number(value)
        return number if number is not None and number >= 0 else None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(g|gb|m|mb)?\s*", value, re.IGNORECASE)
    if not match:
        return None
    amount, unit = float(match.group(1)), (match.group(2) or "g").lower()
    return amount / 1024 if unit.startswith("m") else amount


def _finite_number(value: Any) -> float | None:
    """``value`` (a number or its text) as a finite float, else None; booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None

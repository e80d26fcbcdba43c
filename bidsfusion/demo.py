"""``bidsfusion demo OUT_DIR``: the whole App on calibrated synthetic data, in one command.

Three steps, each through the same code paths as the command line:

1. ``bidsfusion synth OUT_DIR/bids`` with :data:`DATASET` (one session per subject,
   60 BOLD volumes, 40 % AD, individual anatomy and function, the shared factors and
   the AD effect tripled as in ``benchmarks/learning.py``, so that cross-modal
   objectives have something to find);
2. ``bidsfusion OUT_DIR/bids OUT_DIR/derivatives participant``;
3. ``bidsfusion OUT_DIR/bids OUT_DIR/derivatives group`` with :data:`GROUP_ARGS`
   (``Random``, ``S`` and ``L-CL`` at 16^3, 16 latent dimensions, 150 epochs), which
   ends with ``OUT_DIR/derivatives/group/report.html``.

A rerun reuses what is complete: the dataset when it was made with the same
settings by the same version (else exit 73, asking for another OUT_DIR), and the two
levels skip or resume what they finished.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bidsfusion import __version__
from bidsfusion.errors import OutputError
from bidsfusion.layout import GroupLayout

log = logging.getLogger("bidsfusion.demo")

DATASET = {
    "n_volumes": 60,
    "max_sessions": 1,
    "ad_fraction": 0.4,
    "coupling": 3.0,
    "effect_strength": 3.0,
}
"""Synthesis settings beside ``--subjects`` and ``--seed``."""

SUBJECTS = 64
"""The default of ``--subjects``."""
OBJECTIVES = ("Random", "S", "L-CL")
INPUT_SIZE = 16
EPOCHS = 150
GROUP_ARGS = (
    *(arg for spec in OBJECTIVES for arg in ("--objective", spec)),
    "--input-size", str(INPUT_SIZE), "--latent-dim", "16", "--epochs", str(EPOCHS),
    "--batch-size", "8", "--folds", "3", "--holdout", "0.5", "--n-trials", "20",
    "--max-lr", "0.002",
)  # fmt: skip
"""The group level's options beside ``--seed``, ``--nprocs`` and the work folder.

16^3 inputs: an epoch of S costs 0.05 s there, so 150 epochs fit (at 32^3 the demo
afforded 30, in which L-CL's CL term did not learn); with 64 subjects S's validation
loss still fell at epoch 100. Half the subjects are the hold-out (32 of 64): the
evaluation's noise, not the training, limits what the demo can show (docs/usage.md,
"The demo"). 16 latent dimensions keep the saliency analysis short. The peak learning
rate is 2e-3: the default 5e-4 suits 200 epochs of larger batches."""


SUMMARY = (
    f"objectives {', '.join(OBJECTIVES[:-1])} and {OBJECTIVES[-1]} at {INPUT_SIZE}^3, "
    f"{EPOCHS} epochs"
)
"""What the group level of the demo trains, in words (``bidsfusion demo --help``)."""


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo writes: the raw dataset, the derivatives, the work folder."""

    root: Path

    @property
    def bids(self) -> Path:
        return self.root / "bids"

    @property
    def derivatives(self) -> Path:
        return self.root / "derivatives"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def report(self) -> Path:
        return GroupLayout.of(self.derivatives).report


def run_demo(out_dir: Path, subjects: int, seed: int, nprocs: int) -> Path:
    """Synthesise, run both levels, and return the report's path (see the module doc)."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise OutputError(f"OUT_DIR {out_dir} is a file, not a folder; give the demo a folder")
    paths = DemoPaths(Path(out_dir))
    started = time.monotonic()
    _step(1, f"synthetic dataset of {subjects} subjects: {paths.bids}")
    _synthesise(paths.bids, subjects, seed)
    _step(2, f"participant level ({nprocs} processes): {paths.derivatives}")
    common = ["-w", str(paths.work), "--nprocs", str(nprocs), "--seed", str(seed)]
    _run_level(paths, "participant", common)
    _step(3, "group level: pretraining, evaluation, analyses, report")
    _run_level(paths, "group", [*common, *GROUP_ARGS])
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    log.info("demo finished in %d min %02d s", minutes, seconds)
    return paths.report


def _step(number: int, what: str) -> None:
    log.info("demo step %d/3: %s", number, what)


def _synthesise(bids: Path, subjects: int, seed: int) -> None:
    """Write the dataset, or reuse the one a previous demo wrote with the same settings."""
    from bidsfusion.synth.dataset import make_dataset

    description = bids / "dataset_description.json"
    if not description.exists():
        make_dataset(bids, n_subjects=subjects, seed=seed, **DATASET)
        return
    if _generated_by(description) != _expected_generator(subjects, seed):
        raise OutputError(
            f"{bids} holds a dataset the demo did not make with --subjects {subjects} "
            f"--seed {seed} (bidsfusion {__version__}); give the demo another OUT_DIR"
        )
    log.info("reusing %s", bids)


def _generated_by(description: Path) -> dict | None:
    """The first GeneratedBy entry of a dataset_description.json (None if unreadable)."""
    try:
        generated = json.loads(description.read_text(encoding="utf-8"))["GeneratedBy"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return generated if isinstance(generated, dict) else None


def _expected_generator(subjects: int, seed: int) -> dict:
    """The GeneratedBy entry ``make_dataset`` writes for the demo's settings."""
    from bidsfusion.synth.dataset import generator_entry, synth_settings

    return generator_entry(synth_settings(n_subjects=subjects, seed=seed, **DATASET))


def _run_level(paths: DemoPaths, level: str, options: Sequence[str]) -> None:
    """One analysis level, parsed and validated exactly as on the command line."""
    from bidsfusion.levels import run_level
    from bidsfusion.options import parse_level

    run_level(parse_level([str(paths.bids), str(paths.derivatives), level, *options]))

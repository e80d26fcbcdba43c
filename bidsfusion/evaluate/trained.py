"""What ``--eval-only`` evaluates: the splits, representations and model settings a group
run trained.

The model settings (encoder, input size, latent size) and the modalities are those its
model folders record (:func:`trained_settings`): a flag that contradicts them is refused.

The splits are those of ``splits.json`` (a differing ``--folds`` or ``--holdout`` is named
in a warning, not applied), every selected (spec, fold) must hold its
``representations.npz`` (else exit 66 naming the folder), and a derivative of
``pairs.tsv`` that changed after the representations were written is named in a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from bidsfusion.config import Data, RunConfig, Train
from bidsfusion.data.splits import Splits, selected_folds
from bidsfusion.errors import BidsFusionError, InputDataError, InputMissingError
from bidsfusion.layout import GroupLayout
from bidsfusion.locations import is_bidsfusion_dataset
from bidsfusion.models.folder import read_record, settings_for
from bidsfusion.tsv import read_tsv

log = logging.getLogger("bidsfusion.group")


def trained_splits(
    layout: GroupLayout,
    output_dir: Path,
    specs: Sequence[str],
    fold: Sequence[int],
    data: Data,
) -> Splits:
    """The splits of ``splits.json`` once every spec's representations of the folds of
    ``fold`` (``--fold``; empty: all) are found (66 naming what is missing, 65 for an
    unreadable ``splits.json``)."""
    if not is_bidsfusion_dataset(output_dir) or not layout.splits.exists():
        raise InputMissingError(
            f"{layout.splits} is missing: --eval-only evaluates representations "
            "a group run wrote; run the group level without --eval-only first"
        )
    try:
        splits = Splits.from_json(layout.splits)
    except InputDataError as error:
        raise InputDataError(
            f"{error}; the group level without --eval-only, with the options it was trained "
            "with, writes it again"
        ) from None
    differing = unused_split_options(data, splits)
    if differing:
        log.warning(
            "--eval-only evaluates the trained splits of splits.json (%d folds, %d hold-out "
            "subjects), not %s: retrain without --eval-only for other splits",
            splits.n_folds,
            len(splits.holdout),
            " and ".join(differing),
        )
    found = []
    for spec in specs:
        for k in selected_folds(fold, splits.n_folds):
            path = layout.fold(spec, k).representations
            if not path.is_file():
                raise InputMissingError(
                    f"{path.parent} holds no {path.name}: train {spec} first (the group "
                    "level without --eval-only)"
                )
            found.append(path)
    _warn_changed_derivatives(layout, found)
    return splits


def _warn_changed_derivatives(layout: GroupLayout, representations: Sequence[Path]) -> None:
    """Warn when a derivative of ``pairs.tsv`` changed after the oldest of
    ``representations`` was written (they encode the earlier data)."""
    try:
        columns, rows = read_tsv(layout.pairs)
    except BidsFusionError:
        return
    paths = {Path(r[c]) for r in rows for c in columns if c.startswith("path_") and r[c]}
    stamps = {p: p.stat().st_mtime_ns for p in paths if p.is_file()}
    written, oldest = min((p.stat().st_mtime_ns, p) for p in representations)
    changed = [p for p, t in stamps.items() if t > written]
    if changed:
        log.warning(
            "%d derivative(s) changed after %s was trained (e.g. %s): --eval-only evaluates "
            "representations of the earlier data; rerun without --eval-only to retrain",
            len(changed),
            oldest.parent.relative_to(layout.root),
            max(changed, key=stamps.__getitem__),
        )


def unused_split_options(data: Data, splits: Splits) -> list[str]:
    """The split options (``--folds N``, ``--holdout X``) whose values differ from the
    trained ``splits``, which ``--eval-only`` keeps: ``--folds``, or the hold-out size of
    ``--holdout`` (a count, or a fraction of the subjects)."""
    differing = []
    if data.folds != splits.n_folds:
        differing.append(f"--folds {data.folds}")
    first = splits.folds[0]
    n_subjects = len(splits.holdout) + len(first.train) + len(first.validation)
    size = data.holdout
    if isinstance(size, float):
        size = math.ceil(size * n_subjects)
    if size != len(splits.holdout):
        differing.append(f"--holdout {data.holdout}")
    return differing


TRAINING_ONLY = (*(f.name for f in fields(Train)), "objective_option")
"""Settings that matter only to training: ``--eval-only`` ignores them, with a note."""


def trained_settings(config: RunConfig, layout: GroupLayout, specs: Sequence[str]) -> RunConfig:
    """``config`` with the model settings and the modalities of the trained model folders of
    ``specs`` (``--eval-only`` reads a model as it was trained, not as today's command line
    would build it): a flag given that contradicts them is a UsageError (64) naming both
    values (flags that only matter to training: :func:`note_ignored_flags`). Folders
    written before model folders existed leave ``config`` as it is."""
    records = {
        files.metadata: read_record(files.path)
        for spec in specs
        for files in layout.folds(spec).values()
        if files.metadata.is_file()
    }
    return settings_for(config, records, "--eval-only reads it from the model folders")


def note_ignored_flags(config: RunConfig) -> None:
    """Log the flags given to ``--eval-only`` that only matter to training (it ignores them)."""
    ignored = ["--" + name.replace("_", "-") for name in TRAINING_ONLY if name in config.explicit]
    if ignored:
        log.info("--eval-only evaluates the models as trained; it ignores %s", ", ".join(ignored))

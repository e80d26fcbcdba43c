"""``group/training_summary.tsv``: the learning diagnostics of every trained (objective, fold).

One row per trained (objective, fold) (:mod:`~bidsfusion.train.diagnostics`): the best
epoch, the terms that did not beat their chance level, validation pair retrieval, the
shortcut probe and the terms that learned the augmentation. Rows of other objectives and
folds already in the table are kept (concurrent jobs train into one OUTPUT_DIR).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bidsfusion.atomic import locked
from bidsfusion.errors import BidsFusionError
from bidsfusion.layout import GroupLayout
from bidsfusion.train.diagnostics import SHORTCUT_GAP
from bidsfusion.train.loop import FoldResult
from bidsfusion.tsv import read_tsv, write_tsv

log = logging.getLogger("bidsfusion.group")

SUMMARY_COLUMNS = (
    "objective",
    "fold",
    "epochs",
    "best_epoch",
    "best_validation_loss",
    "unlearned",
    "validation_retrieval",
    "retrieval_chance",
    "critic_retrieval",
    "probe_shared",
    "probe_independent",
    "shortcut",
    "augmentation",
)
"""Columns of ``group/training_summary.tsv``, one row per trained (objective, fold)."""


def summary_row(spec: str, fold: int, result: FoldResult) -> list[object]:
    """A ``training_summary.tsv`` row: the best epoch, the terms that did not beat their
    chance level, validation retrieval (latents, and the critic's: each the mean over its
    pairs) at the best epoch, the shortcut probe, the terms that learned the augmentation."""
    row = result.best_row
    retrieval = [v for k, v in row.items() if k.startswith("val_retrieval_") and "chance" not in k]
    critic = [v for k, v in row.items() if k.startswith("val_critic_")]
    shared, independent = result.probe
    return [
        spec,
        fold,
        result.epochs_run,
        result.best_epoch,
        result.best_validation_loss,
        " ".join(sorted(result.unlearned)) or None,
        sum(retrieval) / len(retrieval) if retrieval else None,
        row.get("val_retrieval_chance"),
        sum(critic) / len(critic) if critic else None,
        shared,
        independent,
        shared - independent > SHORTCUT_GAP,
        " ".join(sorted(result.augmentation)) or None,
    ]


def write_training_summary(rows: Sequence[list[object]], layout: GroupLayout) -> None:
    """Write ``group/training_summary.tsv``, keeping other objectives' rows (under a lock:
    concurrent jobs may train other objectives into the same OUTPUT_DIR)."""
    path = layout.training_summary
    mine = {(str(r[0]), str(r[1])) for r in rows}
    with locked(layout.lock(path)):
        kept = []
        if path.exists():
            try:
                _, earlier = read_tsv(path)
                kept = [
                    [r.get(c) for c in SUMMARY_COLUMNS]
                    for r in earlier
                    if (r["objective"], r["fold"]) not in mine
                ]
            except (BidsFusionError, KeyError):
                log.warning("%s is unreadable; rewritten with this run's rows only", path)
        write_tsv(path, SUMMARY_COLUMNS, [*kept, *rows])

"""The evaluation stage of the group level: every (objective, modality, fold) scored, the
tables merged with those of earlier jobs, DeLong's comparison with the control.

Jobs that evaluate other objectives or folds into the same OUTPUT_DIR (a SLURM array,
objectives added later) keep each other's rows: :func:`run_evaluation` replaces the rows of
what it evaluated and keeps the others, under a lock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bidsfusion.atomic import locked
from bidsfusion.errors import BidsFusionError
from bidsfusion.evaluate.logreg import EvaluationRow, evaluate_representations, holdout_scores
from bidsfusion.evaluate.logreg import modalities as representation_modalities
from bidsfusion.evaluate.summary import Scores, read_evaluation, write_evaluation
from bidsfusion.layout import GroupLayout
from bidsfusion.objectives.untrained import CONTROL

log = logging.getLogger("bidsfusion.group")


@dataclass(frozen=True)
class Evaluation:
    """The rows of ``evaluation.tsv`` (this run's and earlier jobs') and the hold-out decision
    scores of every row with a control row to compare with."""

    rows: tuple[EvaluationRow, ...]
    scores: Scores


def run_evaluation(
    layout: GroupLayout,
    specs: Sequence[str],
    folds: Sequence[int],
    n_trials: int,
    seed: int,
    storage: Any,
    tuning: str = "validation",
) -> Evaluation:
    """Evaluate every (spec, modality, fold of ``folds``) from its ``representations.npz``;
    write ``evaluation.tsv`` and ``evaluation_summary.tsv`` with the rows of other objectives
    and folds already there; the merged rows and their scores."""
    rows = [
        evaluate_representations(
            layout.fold(spec, fold).representations,
            spec,
            fold,
            modality,
            n_trials,
            seed,
            storage,
            tuning,
        )
        for spec in specs
        for fold in folds
        for modality in representation_modalities(layout.fold(spec, fold).representations)
    ]
    with locked(layout.lock(layout.evaluation)):
        merged = merged_rows(rows, layout)
        scores = scores_against_control(merged, layout)
        write_evaluation(merged, layout.evaluation, layout.evaluation_summary, scores)
    return Evaluation(tuple(merged), scores)


def merged_rows(rows: Sequence[EvaluationRow], layout: GroupLayout) -> list[EvaluationRow]:
    """``rows`` plus the rows of ``evaluation.tsv`` for other (objective, fold): the rows of
    an (objective, fold) evaluated now are all replaced, those of modalities no longer fused
    too. An unreadable table is replaced, with a warning."""
    if not layout.evaluation.exists():
        return list(rows)
    try:
        earlier = read_evaluation(layout.evaluation)
    except BidsFusionError as error:
        log.warning(
            "%s; rewriting it with this run's rows only (--eval-only with every objective "
            "evaluates the others again)",
            error,
        )
        return list(rows)
    mine = {(r.objective, r.fold) for r in rows}
    return [*(r for r in earlier if (r.objective, r.fold) not in mine), *rows]


def scores_against_control(rows: Sequence[EvaluationRow], layout: GroupLayout) -> Scores:
    """The hold-out decision scores of every row with a ``Random`` row of the same modality
    and fold to compare with, refit from its representations (a row whose representations
    are gone or changed has none: its p-value against Random is n/a)."""
    controls = {(r.modality, r.fold) for r in rows if r.objective == CONTROL}
    scores, unreadable = {}, set()
    for row in rows:
        path = layout.fold(row.objective, row.fold).representations
        if path in unreadable or (row.modality, row.fold) not in controls:
            continue
        try:
            found = holdout_scores(path, row)
        except BidsFusionError as error:
            unreadable.add(path)
            log.warning("%s; the p-values against Random leave this fold out", error)
            continue
        if not found:
            log.warning(
                "%s no longer gives the hold-out AUC of its %s row in evaluation.tsv (its "
                "fold was retrained since): no p-value against Random from it; rerun with "
                "--eval-only",
                path,
                row.modality,
            )
        scores[row.objective, row.modality, row.fold] = found
    return scores

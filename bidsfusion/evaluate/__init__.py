"""Downstream evaluation of frozen representations: logistic regression tuned by
Optuna per (objective, modality, fold), and the group's evaluation tables."""

from bidsfusion.evaluate.logreg import (
    COLUMNS,
    EvaluationRow,
    classifier,
    evaluate_representations,
    holdout_scores,
    load_fold,
    modalities,
)
from bidsfusion.evaluate.study import journal_storage, mask_url, open_storage
from bidsfusion.evaluate.summary import (
    CONTROL,
    auc_standard_error,
    read_evaluation,
    summarize,
    summary_table,
    write_evaluation,
)

__all__ = [
    "COLUMNS",
    "CONTROL",
    "EvaluationRow",
    "auc_standard_error",
    "classifier",
    "evaluate_representations",
    "holdout_scores",
    "journal_storage",
    "load_fold",
    "mask_url",
    "modalities",
    "open_storage",
    "read_evaluation",
    "summarize",
    "summary_table",
    "write_evaluation",
]

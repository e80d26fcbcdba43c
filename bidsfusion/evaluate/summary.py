"""The evaluation tables: ``group/evaluation.tsv`` (one row per objective, modality and
fold) and ``group/evaluation_summary.tsv`` (mean +- sd of hold-out ROC AUC over folds,
sorted like the paper's Fig. 2, whether each objective beats the untrained ``Random``
control in every fold, and DeLong's one-sided p-value that it beats it on the
hold-out subjects)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, fields
from pathlib import Path

import numpy as np

from bidsfusion.errors import InputDataError
from bidsfusion.evaluate.delong import delong_difference, p_greater
from bidsfusion.evaluate.logreg import COLUMNS, EvaluationRow
from bidsfusion.objectives.untrained import CONTROL
from bidsfusion.tsv import read_tsv, write_tsv

SUMMARY_COLUMNS = (
    "objective",
    "modality",
    "n_folds",
    "holdout_auc_mean",
    "holdout_auc_sd",
    "beats_random",
    "p_vs_random",
)

Scores = Mapping[tuple[str, str, int], Mapping[str, tuple[int, float]]]
"""(objective, modality, fold) -> hold-out subject -> (label, decision score)
(:func:`~bidsfusion.evaluate.logreg.holdout_scores`)."""


def write_evaluation(
    rows: Sequence[EvaluationRow], table: Path, summary: Path, scores: Scores | None = None
) -> None:
    """Write ``evaluation.tsv`` (``table``: one row per objective, modality, fold) and
    ``evaluation_summary.tsv`` (``summary``: see :func:`summarize`)."""
    keys = [(r.objective, r.modality, r.fold) for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("two evaluation rows for one (objective, modality, fold)")
    ordered = sorted(rows, key=lambda r: (r.objective, r.modality, r.fold))
    write_tsv(table, COLUMNS, [astuple(r) for r in ordered])
    write_tsv(summary, SUMMARY_COLUMNS, summarize(rows, scores))


def read_evaluation(path: Path) -> list[EvaluationRow]:
    """The rows of an ``evaluation.tsv`` (InputDataError when its columns differ; a table
    written before the ``tuning`` column existed reads as ``validation`` tuning)."""
    columns, rows = read_tsv(path)
    if tuple(columns) not in (COLUMNS, COLUMNS[:-1]):
        raise InputDataError(f"{path}: columns {columns} instead of {list(COLUMNS)}")
    kinds = {f.name: f.type for f in fields(EvaluationRow)}
    cast = {"int": int, "float": float, "str": str}
    return [EvaluationRow(**{k: cast[kinds[k]](v) for k, v in row.items()}) for row in rows]


def summarize(
    rows: Sequence[EvaluationRow], scores: Scores | None = None
) -> list[tuple[object, ...]]:
    """Rows ``SUMMARY_COLUMNS``: per objective and modality, the number of folds and the
    mean and sd (ddof 1; n/a for one fold) of the hold-out AUC over folds, whether
    the objective beats ``Random`` in every fold (None: Random absent, or itself), and
    :func:`p_vs_control` from the hold-out ``scores`` (None without them).

    Ordered like the paper's Fig. 2: objectives by their mean hold-out AUC over
    modalities, descending; modalities in the order they first appear.
    """
    aucs = _scores(rows)
    out = []
    for objective in _ranked(aucs):
        for modality, by_fold in aucs[objective].items():
            values = np.array(list(by_fold.values()))
            sd = float(values.std(ddof=1)) if len(values) > 1 else None
            beats = _beats_control(aucs, objective, modality)
            p = p_vs_control(scores or {}, objective, modality, list(by_fold))
            out.append((objective, modality, len(values), float(values.mean()), sd, beats, p))
    return out


def p_vs_control(
    scores: Scores, objective: str, modality: str, folds: Sequence[int], control: str = CONTROL
) -> float | None:
    """DeLong's one-sided p-value that ``objective`` has a higher hold-out AUC than
    ``control`` (``Random``), averaged over the ``folds`` where both have hold-out scores,
    each fold's two classifiers compared on the subjects both scored (:func:`~bidsfusion.
    evaluate.delong.p_greater`). None for ``control`` itself, or where no fold has both."""
    if objective == control:
        return None
    differences, variances = [], []
    for fold in folds:
        ours = scores.get((objective, modality, fold), {})
        theirs = scores.get((control, modality, fold), {})
        subjects = sorted(set(ours) & set(theirs))
        labels = np.array([ours[s][0] for s in subjects])
        if min((labels == 1).sum(), (labels == 0).sum()) < 2:
            continue
        difference, variance = delong_difference(
            labels,
            np.array([ours[s][1] for s in subjects]),
            np.array([theirs[s][1] for s in subjects]),
        )
        differences.append(difference)
        variances.append(variance)
    return p_greater(differences, variances) if differences else None


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of a ROC AUC measured on ``n_positive`` and ``n_negative`` subjects
    (Hanley and McNeil 1982, exact when both classes' scores are exponential).

    The hold-out is the same subjects in every fold, so the fold sd leaves this
    sampling noise out: two objectives whose hold-out AUCs differ by less than about
    twice it are not told apart by the hold-out.
    """
    if n_positive < 1 or n_negative < 1:
        raise ValueError("an AUC needs subjects of both classes")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    variance = (
        auc * (1.0 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)
    ) / (n_positive * n_negative)
    return float(np.sqrt(max(variance, 0.0)))


def summary_table(rows: Sequence[EvaluationRow], scores: Scores | None = None) -> str:
    """The summary as text: a header, then one line per objective (in the order of
    :func:`summarize`) with one ``0.71 +- 0.04`` column per modality; ``*`` marks a
    modality where the objective beats Random in every fold, ``(p 0.03)`` follows
    where DeLong's p-value against Random is known."""
    summary = {(r[0], r[1]): r for r in summarize(rows, scores)}
    objectives = list(dict.fromkeys(o for o, _ in summary))
    modalities = list(dict.fromkeys(r.modality for r in rows))
    width = max([len("objective"), *map(len, objectives)])
    cells = {(o, m): _cell(summary.get((o, m))) for o in objectives for m in modalities}
    column = max([14, *map(len, cells.values())])
    lines = [
        "  ".join([f"{'objective':<{width}}", *(f"{m:<{column}}" for m in modalities)]).rstrip()
    ]
    for objective in objectives:
        row = [f"{cells[objective, m]:<{column}}" for m in modalities]
        lines.append("  ".join([f"{objective:<{width}}", *row]).rstrip())
    if any(r[5] is not None for r in summary.values()):
        lines.append(f"* beats {CONTROL} in every fold")
    if any(r[6] is not None for r in summary.values()):
        lines.append(f"p: DeLong's one-sided p-value of a higher hold-out AUC than {CONTROL}")
    return "\n".join(lines) + "\n"


def _cell(row: tuple[object, ...] | None) -> str:
    if row is None:
        return f"{'n/a':<14}"
    _, _, _, mean, sd, beats, p = row
    sd_text = "n/a" if sd is None else f"{sd:.2f}"
    p_text = "" if p is None else f" (p {p:.2f})"
    return f"{mean:.2f} +- {sd_text}{' *' if beats else '  '}{p_text}"


def _scores(rows: Sequence[EvaluationRow]) -> dict[str, dict[str, dict[int, float]]]:
    """objective -> modality -> fold -> hold-out AUC."""
    scores: dict[str, dict[str, dict[int, float]]] = {}
    for r in rows:
        scores.setdefault(r.objective, {}).setdefault(r.modality, {})[r.fold] = r.holdout_auc
    return scores


def _ranked(scores: dict[str, dict[str, dict[int, float]]]) -> list[str]:
    def mean_over_modalities(objective: str) -> float:
        return float(np.mean([np.mean(list(f.values())) for f in scores[objective].values()]))

    return sorted(scores, key=lambda o: (-mean_over_modalities(o), o))


def _beats_control(scores, objective: str, modality: str) -> bool | None:
    control = scores.get(CONTROL, {}).get(modality)
    if objective == CONTROL or control is None:
        return None
    ours = scores[objective][modality]
    if not set(ours) <= set(control):
        return None
    return all(auc > control[fold] for fold, auc in ours.items())

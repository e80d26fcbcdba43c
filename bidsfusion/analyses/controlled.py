"""Confound-controlled evaluation: the hold-out AUC again, without what the confounds explain.

For one ``evaluation.tsv`` row (objective, modality, fold) and the fold's representations,
the row's classifier (its ``C``, ``l1_ratio``, ``seed`` and ``tuning``) is refit:

- ``none``: on the representations as they are, on the subjects whose every confound is
  known (so the three rows compare the same subjects);
- ``regressed``: on the representations with the confounds regressed out: an ordinary
  least-squares fit of ``z`` on the confounds' design (an intercept, the continuous
  variables as they are, one indicator per class of a categorical variable but its
  first) on the training subjects (those the classifier is fit on), its residuals taken
  for every subject with the training fit;
- ``leave-site-out``: for each site (a value of the ``site`` variable), fit on the
  training subjects of the other sites and scored on the hold-out subjects of that site,
  where both parts hold at least :data:`MIN_CLASS` subjects of each class.

A representation whose AUC rests on a confound keeps its ``none`` AUC and falls to about
0.5 ``regressed``; one that holds the diagnosis apart from the confounds keeps both.
Regressing a confound that goes with the diagnosis (age in AD) also removes the part of
the diagnosis it explains: a fall is a warning, not a proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bidsfusion.data.nuisance import Nuisance
from bidsfusion.evaluate.logreg import EvaluationRow, FoldData, auc, fit, fold_data, tuning_set

NONE, REGRESSED, LEAVE_SITE_OUT = "none", "regressed", "leave-site-out"
MIN_CLASS = 2
"""The fewest subjects of each class a leave-site-out part needs."""


@dataclass(frozen=True)
class ControlledAUC:
    """One controlled hold-out AUC: its ``control``, the held-out ``site`` (leave-site-out
    only), and the numbers of subjects the classifier was fit on and scored on."""

    control: str
    site: str
    auc: float
    n_train: int
    n_test: int


def controlled_aucs(
    row: EvaluationRow,
    arrays: dict[str, np.ndarray],
    confounds: Sequence[Nuisance],
    site: Nuisance | None,
) -> list[ControlledAUC]:
    """The ``none`` and ``regressed`` AUCs (when some confound is given and known for
    enough subjects) and the ``leave-site-out`` AUCs of each site (with a ``site``)."""
    z = arrays[f"z_{row.modality}"].astype(np.float64)
    subjects = arrays["subject"].astype(str)
    label, role = arrays["label"], arrays["role"].astype(str)
    out = []
    known = np.array([all(s in c.values for c in confounds) for s in subjects])
    if confounds and known.any():
        z_k, label_k, role_k, subjects_k = z[known], label[known], role[known], subjects[known]
        plain = fold_data(z_k, label_k, role_k, subjects_k)
        if _both_classes(plain):
            design = confound_design(confounds, subjects_k)
            fitted = _training_rows(role_k, label_k, row.tuning)
            residual = regress_out(z_k, design, fitted)
            out.append(_scored(row, plain, NONE, ""))
            out.append(
                _scored(row, fold_data(residual, label_k, role_k, subjects_k), REGRESSED, "")
            )
    if site is not None:
        out += _leave_site_out(row, z, label, role, subjects, site)
    return out


def confound_design(confounds: Sequence[Nuisance], subjects: Sequence[str]) -> np.ndarray:
    """The design ``[n, 1 + columns]``: an intercept, each continuous confound (raw: the
    fit standardises nothing it does not need to), and an indicator per class of each
    categorical confound but its first."""
    columns = [np.ones(len(subjects))]
    for confound in confounds:
        values = [confound.values[s] for s in subjects]
        if confound.is_categorical:
            columns += [np.array([v == c for v in values], float) for c in confound.classes[1:]]
        else:
            columns.append(np.asarray(values, dtype=np.float64))
    return np.stack(columns, axis=1)


def regress_out(z: np.ndarray, design: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """``z`` minus its least-squares prediction from ``design``, the coefficients fitted on
    the rows ``fitted`` (bool [n]) only."""
    coefficients, *_ = np.linalg.lstsq(design[fitted], z[fitted], rcond=None)
    return z - design @ coefficients


def _training_rows(role: np.ndarray, label: np.ndarray, tuning: str) -> np.ndarray:
    """The labelled subjects the row's classifier is fit on (train; with ``cv`` tuning,
    train and validation)."""
    parts = ("train",) if tuning == "validation" else ("train", "validation")
    return np.isin(role, parts) & np.isin(label, (0, 1))


def _both_classes(data: FoldData) -> bool:
    fitted = tuning_set(data, "cv")[1]
    return all(len(np.unique(y)) == 2 for y in (fitted, data.y["holdout"], data.y["train"]))


def _scored(row: EvaluationRow, data: FoldData, control: str, site: str) -> ControlledAUC:
    model = fit(data, row.C, row.l1_ratio, row.seed, row.tuning)
    n_train = len(tuning_set(data, row.tuning)[1])
    return ControlledAUC(control, site, auc(model, data, "holdout"), n_train,
                         len(data.y["holdout"]))  # fmt: skip


def _leave_site_out(
    row: EvaluationRow,
    z: np.ndarray,
    label: np.ndarray,
    role: np.ndarray,
    subjects: np.ndarray,
    site: Nuisance,
) -> list[ControlledAUC]:
    """Per site: fit on the other sites' training subjects, score on its hold-out subjects."""
    of = np.array([str(site.values.get(s, "")) for s in subjects])
    out = []
    for name in site.classes:
        keep = np.where(role == "holdout", of == name, (of != name) & (of != ""))
        data = fold_data(z[keep], label[keep], role[keep], subjects[keep])
        fitted = tuning_set(data, row.tuning)[1]
        counts = [np.bincount(y, minlength=2).min() for y in (fitted, data.y["holdout"])]
        if min(counts) >= MIN_CLASS and len(np.unique(data.y["train"])) == 2:
            out.append(_scored(row, data, LEAVE_SITE_OUT, name))
    return out

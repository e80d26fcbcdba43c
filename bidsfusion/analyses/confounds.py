"""The ``confounds`` analysis: what each representation encodes besides the diagnosis.

For every objective (``Random`` and ``Supervised`` included), modality and fold, and for
every usable nuisance variable of the cohort (:mod:`bidsfusion.data.nuisance`: the
``--confound`` columns of participants.tsv, the scanner, motion and tSNR), a linear probe
(:mod:`bidsfusion.analyses.probes`) is fitted on the fold's train and validation subjects'
representations and scored on the hold-out subjects, beside its permutation null. The
same probes on raw voxels (each modality's normalised volume block-averaged to at most
:data:`RAW_SIZE`^3, then PCA of :data:`RAW_COMPONENTS` components fitted on the same
subjects) are the baseline: what the input itself says about the variable.

Then the confound-controlled evaluation (:mod:`bidsfusion.analyses.controlled`) of every
``evaluation.tsv`` row: its hold-out AUC on the subjects whose confounds are all known,
with the confounds regressed out, and leaving each site out (the ``site`` variable, else
the ``scanner``, when it has two values or more).

Writes ``group/confounds.tsv`` (:data:`PROBE_COLUMNS`) and
``group/controlled_evaluation.tsv`` (:data:`CONTROLLED_COLUMNS`).
"""

from __future__ import annotations

import logging

import numpy as np

from bidsfusion.analyses.context import AnalysisContext
from bidsfusion.analyses.controlled import controlled_aucs
from bidsfusion.analyses.probes import probe_score
from bidsfusion.data.nuisance import Nuisance, nuisance_variables
from bidsfusion.errors import InputDataError

log = logging.getLogger("bidsfusion.analyses")

NAME = "confounds"
"""The analysis's registered name."""
RAW = "raw voxels"
"""The baseline's name in the objective column."""
RAW_SIZE = 16
RAW_COMPONENTS = 20
SITE_VARIABLES = ("site", "scanner")
"""The variables leave-site-out uses, the first usable one."""
FIT_ROLES = ("train", "validation")
PROBE_COLUMNS = (
    "objective", "modality", "fold", "variable", "kind", "source", "metric", "chance", "score",
    "null", "p", "n_train", "n_test",
)  # fmt: skip
"""Columns of ``confounds.tsv``: ``score`` by ``metric`` on the hold-out beside the metric's
``chance`` level, ``null`` the 95th percentile of its permutation null, ``p`` the
permutation p-value."""
CONTROLLED_COLUMNS = (
    "objective", "modality", "fold", "control", "site", "confounds", "holdout_auc", "n_train",
    "n_test",
)  # fmt: skip
"""Columns of ``controlled_evaluation.tsv``; ``control`` none, regressed or leave-site-out,
``site`` the held-out site (``n/a`` otherwise), ``confounds`` the variables regressed."""


def write_confounds(context: AnalysisContext) -> None:
    """The ``confounds`` analysis (module doc); see :func:`_nothing` when it has nothing to
    probe."""
    from bidsfusion.tsv import write_tsv

    variables, notes = nuisance_variables(
        context.config.bids_dir,
        context.inputs.pairs,
        context.config.analyses.confound,
        context.config.data.label_column,
    )
    for text in notes:
        log.warning(text)
    if not context.evaluation:
        return _nothing(context, "confounds needs a hold-out (--holdout > 0)")
    if not variables:
        return _nothing(
            context, "confounds: no usable nuisance variable (see the notes above; "
            "--confound names participants.tsv columns)",
        )  # fmt: skip
    log.info("confounds: probing %s", ", ".join(f"{v.name} ({v.kind})" for v in variables))
    rows = probe_rows(context, variables) + raw_voxel_rows(context, variables)
    write_tsv(context.layout.confounds, PROBE_COLUMNS, rows)
    write_tsv(context.layout.controlled_evaluation, CONTROLLED_COLUMNS,
              controlled_rows(context, variables))  # fmt: skip


def _nothing(context: AnalysisContext, reason: str) -> None:
    """Remove this analysis's tables of an earlier run (they would show other settings as
    this run's), then InputDataError (65) when ``--analysis confounds`` asked for it; else
    a warning."""
    for table in (context.layout.confounds, context.layout.controlled_evaluation):
        table.unlink(missing_ok=True)
    if NAME in context.config.analyses.analysis:
        raise InputDataError(reason)
    log.warning("%s; skipped", reason)


def probe_rows(context: AnalysisContext, variables: list[Nuisance]) -> list[list[object]]:
    """:data:`PROBE_COLUMNS` rows of every objective, fold, modality and variable."""
    rows = []
    for spec in context.specs:
        for fold in context.folds:
            arrays = context.representations(spec, fold)
            subjects, role = arrays["subject"].astype(str), arrays["role"].astype(str)
            for modality in context.modalities:
                x = arrays[f"z_{modality}"].astype(np.float64)
                rows += _probed(context, spec, modality, fold, x, subjects, role, variables)
    return rows


def raw_voxel_rows(context: AnalysisContext, variables: list[Nuisance]) -> list[list[object]]:
    """The same probes on raw voxels (PCA of the block-averaged normalised volumes)."""
    import torch.nn.functional as F

    rows = []
    spec = context.specs[0]
    for fold in context.folds:
        volumes = context.volumes(spec, fold)
        subjects = np.array(volumes.subjects)
        roles = dict(zip(*_roles(context, spec, fold), strict=True))
        role = np.array([roles.get(s, "") for s in subjects])
        for modality, tensor in volumes.volumes.items():
            factor = max(1, tensor.shape[-1] // RAW_SIZE)
            pooled = F.avg_pool3d(tensor.float(), factor).flatten(1).double().cpu().numpy()
            x = _components(pooled, np.isin(role, FIT_ROLES))
            rows += _probed(context, RAW, modality, fold, x, subjects, role, variables)
    return rows


def _roles(context: AnalysisContext, spec: str, fold: int) -> tuple[np.ndarray, np.ndarray]:
    arrays = context.representations(spec, fold)
    return arrays["subject"].astype(str), arrays["role"].astype(str)


def _components(x: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """``x`` projected on the first :data:`RAW_COMPONENTS` principal components of its
    ``fit`` rows (fewer when there are fewer rows)."""
    from sklearn.decomposition import PCA

    k = max(1, min(RAW_COMPONENTS, int(fit.sum()) - 1, x.shape[1]))
    return PCA(k, random_state=0).fit(x[fit]).transform(x)


def _probed(
    context: AnalysisContext,
    objective: str,
    modality: str,
    fold: int,
    x: np.ndarray,
    subjects: np.ndarray,
    role: np.ndarray,
    variables: list[Nuisance],
) -> list[list[object]]:
    rows = []
    for variable in variables:
        known = np.array([s in variable.values for s in subjects])
        v = np.array([variable.values.get(s, "") for s in subjects], dtype=object)
        fit, test = known & np.isin(role, FIT_ROLES), known & (role == "holdout")
        score = probe_score(x[fit], v[fit], x[test], v[test], variable.is_categorical, context.seed)
        if score is None:
            log.info("confounds: %s %s fold %d: too few subjects to probe %s", objective,
                     modality, fold, variable.name)  # fmt: skip
            continue
        rows.append([objective, modality, fold, variable.name, variable.kind, variable.source,
                     score.metric, score.chance, score.score, score.null, score.p, score.n_train,
                     score.n_test])  # fmt: skip
    return rows


def controlled_rows(context: AnalysisContext, variables: list[Nuisance]) -> list[list[object]]:
    """:data:`CONTROLLED_COLUMNS` rows of every evaluation row of the analysed objectives."""
    site = next((v for name in SITE_VARIABLES for v in variables
                 if v.name == name and v.is_categorical), None)  # fmt: skip
    names = " ".join(v.name for v in variables)
    rows = []
    cache: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for row in context.evaluation:
        if row.objective not in context.specs:
            continue
        key = (row.objective, row.fold)
        if key not in cache:
            cache[key] = context.representations(*key)
        for result in controlled_aucs(row, cache[key], variables, site):
            rows.append([row.objective, row.modality, row.fold, result.control,
                         result.site or "n/a", names if result.control == "regressed" else "n/a",
                         result.auc, result.n_train, result.n_test])  # fmt: skip
    return rows

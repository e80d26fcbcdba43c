"""The report's confounds section: what each representation encodes besides the diagnosis
(a heat map of the probes' scores) and its hold-out AUC with the confounds controlled."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from bidsfusion.analyses.confounds import CONTROLLED_COLUMNS, NAME, PROBE_COLUMNS, RAW
from bidsfusion.analyses.controlled import LEAVE_SITE_OUT, NONE, REGRESSED
from bidsfusion.layout import GroupLayout
from bidsfusion.report.figures import CONTROL, ProbeCell, probe_figure
from bidsfusion.report.inputs import number, read_table, retrained_after
from bidsfusion.report.markup import figure, note, problem, relative, sources, stale, table


def confounds(layout: GroupLayout) -> str:
    """The section: the probes' heat map and the controlled AUCs (the ``confounds``
    analysis)."""
    path = layout.confounds
    if not path.exists():
        return note(
            "not run: use --analysis confounds (it needs a hold-out and a nuisance variable: "
            "participants.tsv age, sex or site, --confound COLUMN, a scanner that varies, "
            "or the participant level's QC)"
        )
    rows = read_table(path, list(PROBE_COLUMNS))
    if not rows:
        return problem(f"{relative(path, layout.root)} has no rows")
    cells = _cells(rows, path)
    text = note(
        "How well a linear probe decodes each nuisance variable from the frozen "
        "representations (fitted on each fold's train and validation subjects, scored on the "
        "hold-out; mean over folds): ROC AUC for two classes (chance 0.5), balanced accuracy "
        "for more (chance 1 / classes), R² for a number (chance 0). Colour: the score's share "
        "of the way from chance to perfect. A cell in bold beats the 95th percentile of its "
        "null (the hold-out's values shuffled) in every fold. Raw voxels: the same probes on "
        "the normalised volumes (PCA): what the input itself says. A representation that "
        "encodes the scanner or motion more than raw voxels amplifies it."
    )
    names = [relative(path, layout.root)]
    objectives = {c.objective for c in cells} - {RAW}
    retrained = sorted(o for o in objectives if retrained_after(path, layout, o))
    if retrained:
        text += stale(names[0], retrained, NAME)
    body = text + figure(probe_figure(cells, RAW), "nuisance probes per objective", names)
    return body + _controlled(layout)


METRIC_NAMES = {"roc_auc": "AUC", "r2": "R²", "balanced_accuracy": "bal. acc."}
"""How a probe's metric is named under the heat map."""


def _cells(rows: list[dict[str, str]], path: Any) -> list[ProbeCell]:
    """One cell per objective and ``variable modality``: the mean score over folds, the
    chance level, and whether it beat its null in every fold."""
    grouped: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        metric = METRIC_NAMES.get(r["metric"], r["metric"])
        grouped[r["objective"], f"{r['variable']} {r['modality']} ({metric})"].append(r)
    cells = []
    for (objective, column), found in grouped.items():
        scores = [number(r["score"], path, "score") for r in found]
        nulls = [number(r["null"], path, "null") for r in found]
        chance = float(np.mean([number(r["chance"], path, "chance") for r in found]))
        beats = all(s > n for s, n in zip(scores, nulls, strict=True))
        cells.append(ProbeCell(objective, column, float(np.mean(scores)), chance, beats))
    return cells


def _controlled(layout: GroupLayout) -> str:
    """The table of hold-out AUCs: plain, confounds regressed out, leaving each site out."""
    path = layout.controlled_evaluation
    if not path.exists():
        return problem(f"{relative(path, layout.root)} is missing: rerun --analysis {NAME}")
    rows = read_table(path, list(CONTROLLED_COLUMNS))
    if not rows:
        return note(
            "No confound-controlled AUC: no subject has every confound known, and no site "
            "variable has two sites holding both classes."
        )
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        values[r["objective"], r["modality"], r["control"]].append(
            number(r["holdout_auc"], path, "holdout_auc")
        )
    keys = sorted({(o, m) for o, m, _ in values}, key=lambda k: (k[0] == CONTROL, k))
    confounds = next((r["confounds"] for r in rows if r["control"] == REGRESSED), "n/a")

    def cell(key: tuple[str, str], control: str) -> str:
        found = values.get((*key, control))
        return f"{np.mean(found):.2f}" if found else "n/a"

    body = [[o, m, *(cell((o, m), c) for c in (NONE, REGRESSED, LEAVE_SITE_OUT))] for o, m in keys]
    text = note(
        "Hold-out ROC AUC (AD vs HC, mean over folds) of each evaluation's classifier refit "
        f"on the subjects whose confounds are all known: as it is, with the confounds "
        f"({confounds}) regressed out of the representations (fitted on the training "
        "subjects), and trained on the other sites, tested on one (mean over sites). An AUC "
        "that falls to 0.5 once the confounds are controlled rests on them; a confound that "
        "goes with the diagnosis (age) takes part of the diagnosis with it."
    )
    kinds = ["control" if o == CONTROL else "" for o, _ in keys]
    columns = ["objective", "modality", "plain", "confounds regressed", "leave site out"]
    return text + table(columns, body, kinds) + sources([relative(path, layout.root)])

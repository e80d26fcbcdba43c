"""The report's tabular sections, each ``(layout) -> HTML``: the run's configuration,
the dataset and its pairs, the splits, the evaluation and the similarity analysis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bidsfusion.errors import BidsFusionError, InputDataError
from bidsfusion.evaluate.summary import auc_standard_error
from bidsfusion.layout import GroupLayout
from bidsfusion.report.figures import CONTROL, Bar, Measure, evaluation_figure, similarity_figure
from bidsfusion.report.inputs import number, read_config, read_json, read_table, retrained_after
from bidsfusion.report.markup import (
    Markup,
    esc,
    figure,
    note,
    problem,
    relative,
    sources,
    stale,
    table,
)

SETTINGS = (
    "expanded_objectives", "modality", "label_column", "positive", "negative", "encoder",
    "latent_dim", "input_size", "epochs", "batch_size", "lr", "max_lr", "folds", "holdout",
    "n_trials", "seed", "paired_augmentation", "flip_axes", "max_shift", "eval_only",
    "pretrained", "finetune",
)  # fmt: skip
"""The settings of ``config.toml`` the report lists (any section; the record's objectives)."""
SUMMARY = ("objective", "modality", "n_folds", "holdout_auc_mean", "holdout_auc_sd", "beats_random")
MEASURES = ("cka", "svcca")


def _missing(path: Path, layout: GroupLayout, why: str) -> str:
    return problem(f"{relative(path, layout.root)} is missing: {why}")


def configuration(layout: GroupLayout) -> str:
    """The settings of the last run that pretrained (``config.toml``)."""
    path = layout.config
    if not path.exists():
        return _missing(path, layout, "no group run pretrained into this OUTPUT_DIR")
    config = read_config(path)
    rows = [(key, _shown(config[key])) for key in SETTINGS if key in config]
    versions = config.get("versions")
    if isinstance(versions, dict):
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    rows += _pretrained_rows(layout)
    text = note(
        "The settings of the last run that pretrained into this OUTPUT_DIR; the sections "
        "below show every objective found here, from this run or earlier ones."
    )
    return text + table(["setting", "value"], rows) + sources([relative(path, layout.root)])


def _pretrained_rows(layout: GroupLayout) -> list[tuple[str, str]]:
    """One row per pretrained model applied here: which model, where it was trained, on
    how many subjects (its first fold's model.json)."""
    rows = []
    for spec in layout.objectives():
        folds = layout.folds(spec)
        first = next(iter(folds.values()), None)
        if first is None or not first.metadata.is_file():
            continue
        data = read_json(first.metadata).get("data")
        if not isinstance(data, dict) or "applied" not in data:
            continue
        trained = len(data.get("train", [])) + len(data.get("validation", []))
        rows.append((
            f"pretrained model {spec}",
            f"{read_json(first.metadata).get('objective')} trained on {trained} subjects of "
            f"{data.get('dataset')} ({data.get('output_dir')}, fold {data.get('fold')})",
        ))  # fmt: skip
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


def dataset(layout: GroupLayout) -> str:
    """Pairs per group and role (``pairs.tsv``)."""
    path = layout.pairs
    if not path.exists():
        return _missing(path, layout, "the group level writes it before pretraining")
    rows = read_table(path, ["subject", "group", "role"])
    groups, roles = sorted({r["group"] for r in rows}), sorted({r["role"] for r in rows})
    body = [_counts(g, [r for r in rows if r["group"] == g], roles) for g in groups]
    body.append(_counts("all", rows, roles))
    columns = ["group", *(f"pairs: {role}" for role in roles), "pairs", "subjects"]
    fused = [c.removeprefix("path_") for c in rows[0] if c.startswith("path_")] if rows else []
    text = note(
        f"One row of pairs.tsv per pair, one scan of each modality ({', '.join(fused)}); "
        "pretrain+evaluation pairs are the one pair per subject that is evaluated."
    )
    return text + table(columns, body) + sources([relative(path, layout.root)])


def _counts(name: str, rows: list[dict[str, str]], roles: list[str]) -> list[object]:
    """``name``, its pairs per role, its pairs and its subjects."""
    per_role = [sum(r["role"] == role for r in rows) for role in roles]
    return [name, *per_role, len(rows), len({r["subject"] for r in rows})]


def splits(layout: GroupLayout) -> str:
    """Hold-out and fold sizes per group (``splits.json``, groups from ``pairs.tsv``)."""
    path = layout.splits
    if not path.exists():
        return _missing(path, layout, "the group level writes it before pretraining")
    document = read_json(path)
    parts = [("hold-out", _subjects(document, "holdout", path))]
    folds = document.get("folds")
    if not isinstance(folds, list):
        raise InputDataError(f"{path}: no list of folds")
    for k, fold in enumerate(folds):
        if not isinstance(fold, dict):
            raise InputDataError(f"{path}: fold {k} is not an object")
        for role in ("train", "validation"):
            parts.append((f"fold {k} {role}", _subjects(fold, role, path)))
    group_of = _groups(layout)
    groups = sorted({group_of.get(s, "?") for _, chosen in parts for s in chosen})
    body = [
        [name, len(chosen), *(sum(group_of.get(s, "?") == g for s in chosen) for g in groups)]
        for name, chosen in parts
    ]
    text = note(
        f"seed {document.get('seed', '?')}, {len(folds)} folds, "
        f"{len(parts[0][1])} hold-out subjects (never seen in pretraining or tuning)"
    )
    names = [relative(path, layout.root), relative(layout.pairs, layout.root)]
    return text + table(["split", "subjects", *groups], body) + sources(names)


def _subjects(document: dict[str, Any], key: str, path: Path) -> list[str]:
    value = document.get(key)
    if not isinstance(value, list):
        raise InputDataError(f"{path}: {key!r} is not a list of subjects")
    return [str(s) for s in value]


def _groups(layout: GroupLayout) -> dict[str, str]:
    """Subject -> group from ``pairs.tsv`` (empty when unreadable)."""
    try:
        rows = read_table(layout.pairs, ["subject", "group"])
    except Exception:  # the dataset section reports the problem
        return {}
    return {r["subject"]: r["group"] for r in rows}


def evaluation(layout: GroupLayout) -> str:
    """Fig. 2: mean hold-out AUC per objective and modality, and the summary table."""
    path = layout.evaluation_summary
    if not path.exists():
        return note(
            "not run: the evaluation needs hold-out subjects (--holdout above 0); "
            f"{relative(path, layout.root)} is missing"
        )
    rows = read_table(path, SUMMARY)
    if not rows:
        return problem(f"{relative(path, layout.root)} has no rows")
    bars: dict[str, list[Bar]] = {}
    for r in rows:
        sd = number(r["holdout_auc_sd"], path, "holdout_auc_sd")
        mean = number(r["holdout_auc_mean"], path, "holdout_auc_mean")
        bars.setdefault(r["modality"], []).append(
            Bar(r["objective"], mean, None if math.isnan(sd) else sd)
        )
    names = [relative(path, layout.root)]
    text = note(
        f"Logistic regression on the frozen representations, {_tuned(layout)}; hold-out ROC "
        f"AUC, mean and sd over folds. {CONTROL}: the "
        "untrained encoders every objective must beat; * beats it in every fold."
        + (_P_LEGEND if any(r.get("p_vs_random", "n/a") != "n/a" for r in rows) else "")
        + _holdout_noise(layout)
    )
    return (
        text
        + figure(evaluation_figure(bars), "hold-out ROC AUC per objective and modality", names)
        + _summary_table(rows, list(bars))
        + sources(names)
    )


def _tuned(layout: GroupLayout) -> str:
    """How the classifiers were tuned, from the evaluation's ``tuning`` column."""
    try:
        tunings = {r.get("tuning", "validation") for r in read_table(layout.evaluation, [])}
    except BidsFusionError:
        return "tuned by Optuna"
    if tunings == {"cv"}:
        return "tuned by an inner 5-fold CV of each fold's train and validation subjects"
    if tunings == {"validation"}:
        return "tuned on each fold's validation subjects"
    return "tuned by Optuna"


_P_LEGEND = (
    " p: DeLong's one-sided p-value of a higher hold-out AUC than it, on the same hold-out "
    "subjects (averaged over folds)."
)


def _holdout_noise(layout: GroupLayout) -> str:
    """A sentence on the hold-out's own sampling noise (empty when the class counts of
    the hold-out cannot be read from ``splits.json``, ``pairs.tsv`` and ``config.toml``)."""
    splits = layout.splits
    try:
        config = read_config(layout.config)
        holdout = _subjects(read_json(splits), "holdout", splits)
    except BidsFusionError:
        return ""
    group_of = _groups(layout)
    positive = sum(group_of.get(s) == str(config.get("positive")) for s in holdout)
    negative = sum(group_of.get(s) == str(config.get("negative")) for s in holdout)
    if positive < 1 or negative < 1:
        return ""
    error = auc_standard_error(0.5, positive, negative)
    return (
        f" The hold-out is the same {positive} {config['positive']} and {negative} "
        f"{config['negative']} subjects in every fold, so the fold sd leaves out its own "
        f"sampling noise: the standard error of a hold-out AUC near 0.5 is {error:.2f} "
        "(Hanley and McNeil 1982): differences between objectives of that size are noise."
    )


def _summary_table(rows: list[dict[str, str]], modalities: list[str]) -> str:
    """One row per objective (the file's order), a ``mean +- sd`` cell per modality."""
    cells = {(r["objective"], r["modality"]): r for r in rows}
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    body = [[o, *(_auc_cell(cells.get((o, m))) for m in modalities)] for o in objectives]
    kinds = ["control" if o == CONTROL else "" for o in objectives]
    return table(["objective", *modalities], body, kinds)


def _auc_cell(row: dict[str, str] | None) -> Markup:
    if row is None:
        return Markup("n/a")
    sd = row["holdout_auc_sd"]
    text = _fixed(row["holdout_auc_mean"]) + (" (one fold)" if sd == "n/a" else f" ± {_fixed(sd)}")
    if row.get("p_vs_random", "n/a") != "n/a":
        text += f", p = {_fixed(row['p_vs_random'])}"
    if row["beats_random"] == "True":
        return Markup(f'<span class="good">{esc(text)} *</span>')
    return Markup(esc(text))


def _fixed(text: str) -> str:
    try:
        return f"{float(text):.2f}"
    except ValueError:
        return text


def similarity(layout: GroupLayout) -> str:
    """CKA and SVCCA per objective and group (the ``similarity`` analysis)."""
    path = layout.similarity
    if not path.exists():
        return note("not run: use --analysis similarity")
    rows = read_table(path, ["objective", "modalities", "group", *MEASURES])
    if not rows:
        return problem(f"{relative(path, layout.root)} has no rows")
    with_nulls = all(f"{m}_equal_n" in rows[0] and f"{m}_null" in rows[0] for m in MEASURES)
    if not with_nulls:
        return problem(
            f"{relative(path, layout.root)} was written without nulls (an earlier bidsfusion): "
            "its groups of unequal size cannot be compared; rerun with --eval-only --analysis "
            "similarity"
        )
    values = [
        Measure(r["modalities"], m, r["objective"], r["group"],
                number(r[f"{m}_equal_n"], path, f"{m}_equal_n"), number(r[f"{m}_null"], path, m))
        for r in rows
        for m in MEASURES
    ]  # fmt: skip
    n_equal = sorted({r.get("n_equal", "?") for r in rows})
    text = note(
        "How alike the modalities' representations of the same evaluated subjects are, "
        "per group: linear CKA (unbiased estimator, near 0 for independent data) and "
        "SVCCA (mean canonical correlation, large for any data when subjects are few). "
        f"Every bar is on subsets of equal size ({', '.join(n_equal)} subjects, the smallest "
        "group's; mean over 50 draws), so groups can be compared; the black tick is the 95th "
        "percentile of its null (one modality's subjects shuffled): a bar below its tick says "
        "nothing. Bars: mean over folds, error bars: sd."
    )
    retrained = sorted({v.objective for v in values if retrained_after(path, layout, v.objective)})
    if retrained:
        text += stale(relative(path, layout.root), retrained, "similarity")
    alt = "CKA and SVCCA per objective and group"
    return text + figure(similarity_figure(values), alt, [relative(path, layout.root)])

"""The report's training section: the learning diagnostics of every trained (objective,
fold), what did not learn flagged, and each objective's training curves."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bidsfusion.layout import FoldFiles, GroupLayout
from bidsfusion.report.figures import training_figure
from bidsfusion.report.inputs import number, read_history, read_json, read_table
from bidsfusion.report.markup import (
    Markup,
    badge,
    figure,
    guarded,
    heading,
    note,
    problem,
    relative,
    sources,
    table,
)

DIAGNOSTICS = (
    "objective", "fold", "epochs", "best_epoch", "best_validation_loss", "unlearned",
    "validation_retrieval", "retrieval_chance", "probe_shared", "probe_independent", "shortcut",
)  # fmt: skip
"""The columns of ``training_summary.tsv`` the report reads."""


def training(layout: GroupLayout) -> str:
    """The diagnostics table, then one figure of training curves per objective."""
    flags: dict[str, list[str]] = {}
    root = layout.root
    parts = [guarded(partial(_diagnostics, layout, flags), root, "the training summary")]
    for spec in layout.objectives():
        build = partial(_curves, layout, spec, flags.get(spec, []))
        parts.append(guarded(build, root, f"the training curves of {spec}"))
    if len(parts) == 1:
        parts.append(note("no objective folder: nothing was trained here"))
    return "".join(parts)


def _diagnostics(layout: GroupLayout, flags: dict[str, list[str]]) -> str:
    """The table of ``training_summary.tsv``, flagged rows marked; fills ``flags`` (objective
    -> what went wrong in which fold)."""
    path = layout.training_summary
    if not path.exists():
        return problem(f"{relative(path, layout.root)} is missing: no objective was trained here")
    rows = sorted(read_table(path, DIAGNOSTICS), key=lambda r: (r["objective"], r["fold"].zfill(6)))
    body, kinds = [], []
    for r in rows:
        found = _problems(r)
        if found:
            flags.setdefault(r["objective"], []).extend(f"fold {r['fold']}: {p}" for p in found)
        retrieval = _ratio(r, "validation_retrieval", "retrieval_chance", path)
        critic = (
            _ratio(r, "critic_retrieval", "retrieval_chance", path)
            if r.get("critic_retrieval", "n/a") != "n/a"
            else "-"
        )
        probe = _ratio(r, "probe_shared", "probe_independent", path)
        verdict = [badge(p) for p in found] or [badge("learned", "good")]
        body.append(
            [
                r["objective"],
                r["fold"],
                f"{r['best_epoch']} of {r['epochs']}",
                _fixed(r["best_validation_loss"], path, "best_validation_loss", ".4g"),
                retrieval,
                critic,
                probe,
                Markup(" ".join(verdict)),
            ]
        )
        kinds.append("flagged" if found else "")
    flagged = sum(bool(k) for k in kinds)
    summary = (
        problem(
            f"{flagged} of {len(rows)} trained (objective, fold) did not learn or took "
            "the augmentation shortcut: see the red rows"
        )
        if flagged
        else note(f"all {len(rows)} trained (objective, fold) beat their chance levels")
    )
    columns = [
        "objective",
        "fold",
        "best epoch",
        "best validation loss",
        "validation retrieval / chance",
        "critic retrieval / chance",
        "probe shared / independent",
        "verdict",
    ]
    text = note(
        "did not learn: a term whose validation value at the best epoch is not below its "
        "chance level; validation retrieval: how often a subject's latent of one modality "
        "is closest (cosine) to its own of the other; critic retrieval: the same by the "
        "objective's own critic (its mean score over brain locations: CL, CS, S); "
        "shortcut: training pairs are retrieved far better with one "
        "augmentation draw shared by both views than with independent draws; learned the "
        "augmentation: a term below its chance level on augmented training batches but "
        "not on the same subjects un-augmented."
    )
    return summary + text + table(columns, body, kinds) + sources([relative(path, layout.root)])


def _problems(row: dict[str, str]) -> list[str]:
    found = []
    if row["unlearned"] not in ("", "n/a"):
        found.append(f"did not learn: {row['unlearned']}")
    if row["shortcut"] == "True":
        found.append("shortcut")
    if row.get("augmentation") not in (None, "", "n/a"):  # absent from earlier summaries
        found.append(f"learned the augmentation: {row['augmentation']}")
    return found


def _ratio(row: dict[str, str], first: str, second: str, path: Path) -> str:
    return f"{_fixed(row[first], path, first)} / {_fixed(row[second], path, second)}"


def _fixed(text: str, path: Path, column: str, spec: str = ".2f") -> str:
    return format(number(text, path, column), spec)


def _never_trained(files: FoldFiles) -> bool:
    """Whether a fold's model.json says its objective trains for zero steps."""
    return files.metadata.is_file() and read_json(files.metadata).get("trains") is False


def _curves(layout: GroupLayout, spec: str, flags: list[str]) -> str:
    """One objective's heading (its flags as badges) and its training curves, all folds; an
    objective whose folds hold checkpoints but no history never trained (``Random``)."""
    folds = layout.folds(spec)
    paths = {k: files.history for k, files in folds.items() if files.history.is_file()}
    title = heading(spec, *(badge(f) for f in flags))
    if not paths:
        if folds and all(_never_trained(files) for files in folds.values()):
            return title + note(f"{spec} trains for zero steps (an untrained control): no curves")
        folder = relative(layout.objective_dir(spec), layout.root)
        return title + problem(f"{folder}: no fold holds a history.tsv")
    histories = {k: read_history(paths[k]) for k in sorted(paths)}
    names = [relative(paths[k], layout.root) for k in sorted(paths)]
    return title + figure(training_figure(histories, spec), f"training curves of {spec}", names)

"""``bidsfusion export-model OUTPUT_DIR DEST --objective SPEC [--fold K]``: a trained fold's
model folder copied out of a group run, with a model card, to archive, share or publish.

The folder's three files are checked (hashes, format) and copied unchanged; ``README.md``
beside them says what the model was trained on, how the training ended against the
chance levels, how its representations evaluated against ``Random``'s, its intended use
and its limits. With one ``--fold`` DEST is the model folder; without, DEST holds one
model folder per trained fold (``DEST/fold-<k>/``). DEST must be absent, empty or an
earlier export (its files are replaced); anything else is refused, never overwritten.
"""

from __future__ import annotations

import datetime
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from bidsfusion import __version__
from bidsfusion.atomic import atomic_path, write_text
from bidsfusion.errors import BidsFusionError, InputMissingError, OutputError, UsageError
from bidsfusion.evaluate.summary import read_evaluation
from bidsfusion.layout import FoldFiles, GroupLayout, fold_name
from bidsfusion.models.folder import ModelRecord, load_model_folder
from bidsfusion.objectives.untrained import CONTROL
from bidsfusion.tsv import read_tsv


def export_models(output_dir: Path, spec: str, folds: Sequence[int], dest: Path) -> list[Path]:
    """Export the model folders of ``spec`` (its ``folds``; every trained fold when empty)
    from OUTPUT_DIR to ``dest``; the folders written."""
    layout = GroupLayout.of(output_dir)
    trained = {k: f for k, f in layout.folds(spec).items() if f.metadata.is_file()}
    if not trained:
        found = ", ".join(s for s in layout.objectives() if layout.folds(s)) or "none"
        raise InputMissingError(
            f"{layout.objective_dir(spec)} holds no trained model folder; trained "
            f"objectives in {layout.root}: {found}"
        )
    unknown = sorted(set(folds) - set(trained))
    if unknown:
        raise UsageError(
            f"--fold {' '.join(map(str, unknown))}: {spec} has trained folds "
            f"{' '.join(map(str, trained))}"
        )
    chosen = sorted(set(folds)) or sorted(trained)
    targets = {k: dest if len(set(folds)) == 1 else dest / fold_name(k) for k in chosen}
    _check_destination(dest, list(targets.values()))
    return [_export(layout, trained[k], targets[k]) for k in chosen]


def _check_destination(dest: Path, targets: Sequence[Path]) -> None:
    """OutputError (73) unless ``dest`` is absent, an empty folder, an earlier export (a
    model folder) at the one target, or holds only empty folders or earlier exports at the
    ``targets``."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise OutputError(f"{dest} is a file: give export-model a folder")
    if dest in targets and (dest / "model.json").is_file():
        return
    for path in dest.iterdir():
        earlier = path.is_dir() and ((path / "model.json").is_file() or not any(path.iterdir()))
        if not (path in targets and earlier):
            raise OutputError(
                f"{dest} holds {path.name}, which is not a bidsfusion model folder's: export "
                "into an empty or new folder (nothing was overwritten)"
            )


def _export(layout: GroupLayout, source: FoldFiles, target: Path) -> Path:
    """Copy one checked model folder and write its card; ``target``."""
    record, _ = load_model_folder(source.path)  # every hash and the format checked
    files = FoldFiles(target)
    try:
        files.path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {files.path}: {error.strerror or error}") from None
    for name in (source.weights.name, source.objective_weights.name, source.metadata.name):
        with atomic_path(files.path / name) as tmp:
            shutil.copyfile(source.path / name, tmp)
    write_text(files.card, model_card(record, layout, source, files.path))
    return files.path


def model_card(record: ModelRecord, layout: GroupLayout, source: FoldFiles, target: Path) -> str:
    """The ``README.md`` of the model folder ``target`` exported from ``source`` (Markdown)."""
    data, training = record.data, record.training
    fold = data.get("fold")
    groups = data.get("groups", {})
    counts = {
        role: _count(data.get(role, []), groups) for role in ("train", "validation", "holdout")
    }
    processing = record.modalities[0].processing if record.modalities else {}
    options = "; ".join(
        f"{term}: " + ", ".join(f"{k}={v}" for k, v in values.items())
        for term, values in record.options.items()
        if values
    )
    lines = [
        f"# bidsfusion model: {record.objective}, fold {fold}",
        "",
        f"Exported {datetime.date.today().isoformat()} by bidsfusion {__version__} from "
        f'`{source.path}`. Load it with `bidsfusion.load_model("{target.name}")` or '
        "give it to the group level: `bidsfusion BIDS_DIR OUTPUT_DIR group --pretrained "
        "MODEL_DIR` (docs/api.md).",
        "",
        "## The model",
        "",
        f"- One `{record.encoder}` encoder per modality ({', '.join(record.modality_names)}) "
        f"at {record.input_size}^3 inputs, {record.latent_dim}-dimensional representations.",
        f"- Objective `{record.objective}` (terms {', '.join(record.terms)})"
        + (f"; options {options}" if options else "")
        + ("" if record.trains else ": never trained (the untrained control)")
        + ".",
        "- Inputs: the participant level's derivatives on the 3 mm 64^3 MNI152NLin2009aSym "
        "grid, block-averaged to the input size, histogram-standardised with the landmarks "
        "in model.json (learned on the training subjects) and z-normalised per volume.",
        f"- Preprocessing of the training derivatives: {processing.get('Backend', 'unknown')}.",
        f"- Written by bidsfusion {record.versions.get('bidsfusion')} with torch "
        f"{record.versions.get('torch')}, training revision {record.training_revision}.",
        "",
        "## Trained on",
        "",
        f"Dataset: {data.get('dataset', 'unknown')} (`{data.get('output_dir')}`). Fold {fold}: "
        f"{counts['train']} training and {counts['validation']} validation subjects; "
        f"{counts['holdout']} hold-out subjects never seen in training or tuning. Labels: "
        f"`{data.get('label_column')}` {data.get('positive')} (positive) versus "
        f"{data.get('negative')}. model.json lists every subject and the SHA-256 of every "
        "derivative.",
        "",
        "## Training",
        "",
        *_training_lines(training, source),
        "",
        "## Evaluation",
        "",
        *_evaluation_lines(record, layout),
        "",
        "## Intended use",
        "",
        "Research: encoding T1w and resting-state maps made by bidsfusion's participant level "
        "(the same template and grid) into representations for linear probes, similarity "
        "analyses and saliency maps, on cohorts like the one it was trained on.",
        "",
        "## Limits",
        "",
        "- Not a diagnostic tool: its hold-out AUCs come from the few subjects above, and a "
        "linear probe on its representations is only as good as the margin by which it "
        f"beats `{CONTROL}` (untrained encoders) on the same subjects.",
        "- Representations depend on the preprocessing: derivatives made with another "
        "backend, band or template differ from what it learned (the group level warns).",
        "- What it encodes besides the diagnosis (scanner, site, age, motion) is not "
        "measured here.",
    ]
    return "\n".join(lines) + "\n"


def _count(subjects: Sequence[str], groups: dict[str, str]) -> str:
    """``12 (AD 5, HC 7)``."""
    found: dict[str, int] = {}
    for subject in subjects:
        found[groups.get(subject, "?")] = found.get(groups.get(subject, "?"), 0) + 1
    inner = ", ".join(f"{g} {n}" for g, n in sorted(found.items()))
    return f"{len(subjects)} ({inner})" if inner else str(len(subjects))


def _training_lines(training: dict[str, object], source: FoldFiles) -> list[str]:
    """The training settings and, from history.tsv, every validation term at the best epoch
    against its chance level."""
    if not training.get("trained"):
        return ["Never trained: the encoders are at their seeded initialisation."]
    lines = [
        f"{training.get('epochs')} epochs, batch {training.get('batch_size')}, OneCycle "
        f"learning rate {training.get('lr')} to {training.get('max_lr')}; best validation "
        f"loss {_fixed(training.get('best_validation_loss'))} at epoch "
        f"{training.get('best_epoch')}.",
    ]
    try:
        _, rows = read_tsv(source.history)
    except BidsFusionError:
        return [*lines, "", "(history.tsv was not found: no curve values.)"]
    best = next((r for r in rows if r.get("epoch") == str(training.get("best_epoch"))), None)
    if best is None:
        return lines
    lines += ["", "| validation term at the best epoch | value | chance |", "| --- | --- | --- |"]
    for key, value in best.items():
        chance = best.get(f"{key}_chance")
        if key.startswith("val_") and chance is not None:
            lines.append(f"| {key[4:]} | {_fixed(value)} | {_fixed(chance)} |")
        elif key.startswith(("val_retrieval_", "val_critic_")) and key != "val_retrieval_chance":
            lines.append(
                f"| {key[4:]} (pair retrieval) | {_fixed(value)} | "
                f"{_fixed(best.get('val_retrieval_chance'))} |"
            )
    return lines


def _evaluation_lines(record: ModelRecord, layout: GroupLayout) -> list[str]:
    """Hold-out ROC AUC of a linear probe per modality, beside ``Random``'s on the same fold."""
    fold = record.data.get("fold")
    try:
        rows = read_evaluation(layout.evaluation)
    except BidsFusionError:
        return ["No evaluation.tsv in the group run: not evaluated."]
    auc = {(r.objective, r.modality): r.holdout_auc for r in rows if r.fold == fold}
    lines = [
        "Logistic regression (Optuna-tuned on the fold's validation subjects) on the frozen "
        "representations, hold-out ROC AUC:",
        "",
        f"| modality | {record.objective} | {CONTROL} |",
        "| --- | --- | --- |",
    ]
    for modality in record.modality_names:
        ours, control = auc.get((record.objective, modality)), auc.get((CONTROL, modality))
        lines.append(f"| {modality} | {_fixed(ours)} | {_fixed(control)} |")
    return lines


def _fixed(value: object) -> str:
    """A number to 3 decimals; ``n/a`` for anything else."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(number) else f"{number:.3f}"

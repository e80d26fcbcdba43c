"""The :class:`~bidsfusion.models.folder.ModelRecord` of a trained (objective, fold): what its
model folder's ``model.json`` says (:mod:`bidsfusion.models.folder`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bidsfusion import __version__
from bidsfusion.config import GRID_MM, Data, Model
from bidsfusion.data.derivatives import processing
from bidsfusion.data.folds import FoldTensors
from bidsfusion.data.splits import Fold
from bidsfusion.modality import Modality
from bidsfusion.models.folder import FORMAT, KIND, ModalityRecord, ModelRecord
from bidsfusion.objectives.specs import ObjectiveSpec
from bidsfusion.train.loop import TRAINING_REVISION, FoldResult
from bidsfusion.train.settings import TrainSettings


def model_record(
    spec: ObjectiveSpec,
    model: Model,
    modalities: Sequence[Modality],
    tensors: FoldTensors,
    trained: Mapping[str, Any],
    data: Mapping[str, Any],
    hashes: Mapping[Path, str],
) -> ModelRecord:
    """The record of one fold's model: ``trained`` from :func:`training_record`, ``data``
    from :func:`data_record`, with the SHA-256 (``hashes``, by path) of every derivative of
    the fold's train and validation pairs."""
    used = [*tensors.pairs["train"], *tensors.pairs["validation"]]
    root = Path(data["output_dir"])
    derivatives = [
        {"modality": m, "subject": p.subject, "path": _relative(path, root), "sha256": hashes[path]}
        for p in used
        for m, path in p.paths.items()
    ]
    first = tensors.pairs["train"][0]
    records = tuple(
        ModalityRecord(
            name=m.name,
            source=m.source,
            entities=dict(m.entities),
            landmarks=tuple(float(v) for v in tensors.landmarks[m.name].values.tolist()),
            processing=processing(first.paths[m.name]),
        )
        for m in modalities
    )
    return ModelRecord(
        format=FORMAT,
        kind=KIND,
        versions={"bidsfusion": __version__, "torch": torch.__version__},
        training_revision=TRAINING_REVISION,
        encoder=model.encoder,
        encoder_options={},
        input_size=model.input_size,
        latent_dim=model.latent_dim,
        modalities=records,
        objective=spec.name,
        terms=spec.terms,
        options={term: dict(values) for term, values in spec.all_options.items()},
        trains=spec.trains,
        training=dict(trained),
        data={**data, "derivatives": derivatives},
    )


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to OUTPUT_DIR where it lies inside it."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def training_record(settings: TrainSettings, result: FoldResult | None) -> dict[str, Any]:
    """The training settings and outcome (``result`` None: a spec that trains for zero
    steps)."""
    record: dict[str, Any] = {
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "max_lr": settings.max_lr,
        "seed": settings.seed,
        "flip_axes": list(settings.flip_axes),
        "max_shift_mm": settings.crop_pad * GRID_MM,
        "paired_augmentation": settings.paired_augmentation,
        "trained": result is not None,
    }
    if result is not None:
        record.update(
            epochs_run=result.epochs_run,
            best_epoch=result.best_epoch,
            best_validation_loss=result.best_validation_loss,
            unlearned=sorted(result.unlearned),
        )
    return record


def data_record(
    data: Data,
    fold_index: int,
    fold: Fold,
    holdout: Sequence[str],
    groups: Mapping[str, str],
    output_dir: Path,
    dataset: str,
) -> dict[str, Any]:
    """Who the fold's model was trained on: the dataset's name, OUTPUT_DIR, the fold, its
    subjects by role with their groups, the label settings."""
    return {
        "dataset": dataset,
        "output_dir": str(output_dir),
        "fold": fold_index,
        "label_column": data.label_column,
        "positive": data.positive,
        "negative": data.negative,
        "train": list(fold.train),
        "validation": list(fold.validation),
        "holdout": list(holdout),
        "groups": {s: groups[s] for s in [*fold.train, *fold.validation, *holdout]},
    }


def applied_record(source: ModelRecord, here: ModelRecord) -> ModelRecord:
    """The record of a pretrained model applied to this run's cohort: ``source`` (what built
    it, where and on whom it was trained), with ``data["applied"]`` saying where it was
    applied (``here``'s data and training, fine-tuning included)."""
    applied = {
        "dataset": here.data["dataset"],
        "output_dir": here.data["output_dir"],
        "fold": here.data["fold"],
        "training": here.training,
    }
    return replace(source, data={**source.data, "applied": applied}, files={})

"""Pretraining every (objective spec, fold) and saving its frozen representations.

Each spec's model and objective are built once, before any work (:func:`build_recipes`:
a factory that refuses its options fails the run at once), from the run's seed: the
model first, then the objective, so every spec and every fold starts from the same
encoders. Per fold: the fold's normalised volumes (:mod:`~bidsfusion.data.folds`); per
spec, a copy of its initial model and objective trained by
:func:`~bidsfusion.train.loop.train_fold` (resumed or skipped when its fingerprint
matches), or, for a spec that does not train (``Random``), kept at its initialisation;
then the fold's model folder (``model.json``, ``model.safetensors``,
``objective.safetensors``: :mod:`~bidsfusion.models.folder`) and the model's latents of
every evaluation subject in ``representations.npz``. ``group/training_summary.tsv`` gives
the learning diagnostics of every trained fold. In a distributed run every rank trains and
only rank 0 writes (:mod:`~bidsfusion.train.distributed`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bidsfusion import __version__
from bidsfusion.atomic import atomic_path
from bidsfusion.config import Data, Model
from bidsfusion.data.folds import FoldTensors, fold_tensors
from bidsfusion.data.group_inputs import GroupInputs
from bidsfusion.data.splits import Splits
from bidsfusion.data.transforms import HistogramLandmarks
from bidsfusion.fingerprint import digest, file_sha256
from bidsfusion.layout import FoldFiles, GroupLayout
from bidsfusion.modality import Modality
from bidsfusion.models.folder import ModelRecord, write_model_folder
from bidsfusion.models.multimodal import MultimodalModel, build_model
from bidsfusion.objectives.compose import ComposedObjective, Registry
from bidsfusion.objectives.specs import ObjectiveSpec
from bidsfusion.train.distributed import is_main
from bidsfusion.train.encode import encode
from bidsfusion.train.loop import FoldData, FoldResult, train_fold
from bidsfusion.train.model_record import (
    applied_record,
    data_record,
    model_record,
    training_record,
)
from bidsfusion.train.settings import TrainSettings
from bidsfusion.train.summary import summary_row, write_training_summary

log = logging.getLogger("bidsfusion.group")


@dataclass(frozen=True)
class Recipe:
    """What one spec trains from: its parsed spec and its model and objective at their
    seeded initialisation (each fold trains copies); for a pretrained model
    (:mod:`~bidsfusion.train.transfer`) its trained states instead, its model folder's
    record and landmarks (the volumes are normalised with them, never refit), and the
    epochs it is fine-tuned for (``None``: the run's ``--epochs``)."""

    spec: ObjectiveSpec
    model: MultimodalModel
    objective: ComposedObjective
    source: ModelRecord | None = None
    landmarks: Mapping[str, HistogramLandmarks] | None = None
    epochs: int | None = None


def build_recipes(
    specs: Sequence[ObjectiveSpec],
    model: Model,
    modalities: Sequence[str],
    registry: Registry,
    seed: int,
) -> list[Recipe]:
    """Every spec's initial model and objective: the model drawn under ``seed``, each
    objective drawn after it from the same generator state, so that they equal what a
    fresh ``torch.manual_seed(seed)``, model, objective would give. A factory that refuses
    its options raises here (UsageError, 64)."""
    torch.manual_seed(seed)
    initial = build_model(model, modalities)
    after_model = torch.random.get_rng_state()
    dims = initial.dims(model.latent_dim)
    recipes = []
    for spec in specs:
        torch.random.set_rng_state(after_model)
        recipes.append(Recipe(spec, initial, spec.build(list(modalities), dims, registry)))
    return recipes


@dataclass(frozen=True)
class Pretraining:
    """What pretraining needs besides the data: the recipes, the fused modalities, where to
    write, how to train, the label settings and the model settings."""

    recipes: tuple[Recipe, ...]
    modalities: tuple[Modality, ...]
    layout: GroupLayout
    settings: TrainSettings
    data: Data
    model: Model
    dataset: str
    """The name of BIDS_DIR's dataset (``dataset_description.json``), for the model folders."""


def pretrain_all(
    plan: Pretraining, inputs: GroupInputs, splits: Splits, folds: Sequence[int]
) -> None:
    """Train (or reuse) every recipe on the folds ``folds``; write each one's model folder
    and representations (rank 0).

    A fold's ``model.json`` and ``representations.npz`` are removed before its training
    starts or resumes and written when it ends, so a run killed midway leaves neither for
    ``--eval-only`` or the analyses.
    """
    data, layout = plan.data, plan.layout
    labels = inputs.labels(data.positive, data.negative)
    device = torch.device(plan.settings.device)
    hashes = _hashes(inputs) if is_main() else {}
    summary = []
    for k in folds:
        fold = splits.folds[k]
        own = fold_tensors(inputs, fold, splits.holdout, labels, device)
        source = data_record(
            data, k, fold, splits.holdout, inputs.groups, layout.root.parent, plan.dataset
        )
        for recipe in plan.recipes:
            tensors = own
            if recipe.landmarks is not None:  # a pretrained model's: never refit
                tensors = fold_tensors(
                    inputs, fold, splits.holdout, labels, device, recipe.landmarks
                )
            files = layout.fold(recipe.spec.name, k)
            fold_model, fold_objective = (
                copy.deepcopy(recipe.model),
                copy.deepcopy(recipe.objective),
            )
            if is_main():  # stale until this fold's model is final
                files.representations.unlink(missing_ok=True)
                files.metadata.unlink(missing_ok=True)
            result = None
            if recipe.spec.trains:
                result = _train(recipe, fold_model, fold_objective, tensors, plan, files)
                summary.append(summary_row(recipe.spec.name, k, result))
            if is_main():
                trained = training_record(_settings(plan, recipe), result)
                record = model_record(
                    recipe.spec, plan.model, plan.modalities, tensors, trained, source, hashes
                )
                if recipe.source is not None:
                    record = applied_record(recipe.source, record)
                write_model_folder(files, record, fold_model, fold_objective)
                _save_representations(files, fold_model, tensors, inputs.groups, plan.settings)
    if is_main():
        write_training_summary(summary, layout)


def _hashes(inputs: GroupInputs) -> dict[Path, str]:
    """The SHA-256 of every paired derivative, by path."""
    return {path: file_sha256(path) for p in inputs.pairs for path in p.paths.values()}


def data_key(spec: ObjectiveSpec, data: Data, model: Model, files: Mapping[str, object]) -> str:
    """SHA-256 of what a fold's training depends on beyond its settings: the
    bidsfusion version, the model (encoder, latent size, input size), the objective
    spec and its terms' options (defaults included), the labels (column, positive and
    negative values: the sampler and Supervised use them), the fused modalities and
    each training and validation file (``files``: the modalities, then path, size,
    modification time)."""
    record = {
        "version": __version__,
        "encoder": model.encoder,
        "latent_dim": model.latent_dim,
        "input_size": model.input_size,
        "objective": spec.name,
        "options": {term: dict(values) for term, values in sorted(spec.all_options.items())},
        "labels": [data.label_column, data.positive, data.negative],
        **files,
    }
    return digest(record)


def _train(
    recipe: Recipe,
    fold_model: MultimodalModel,
    fold_objective: ComposedObjective,
    tensors: FoldTensors,
    plan: Pretraining,
    files: FoldFiles,
) -> FoldResult:
    """Train one fold's copies of a recipe's model and objective (left at the best epoch)."""
    files_key = {**tensors.key, "pretrained": recipe.source.files if recipe.source else None}
    result = train_fold(
        fold_model,
        fold_objective,
        FoldData(tensors.train.volumes, tensors.train.labels),
        FoldData(tensors.validation.volumes, tensors.validation.labels),
        _settings(plan, recipe),
        files.path,
        data_key=data_key(recipe.spec, plan.data, plan.model, files_key),
    )
    log.info(
        "%s: best epoch %d, validation loss %.4f",
        files.path,
        result.best_epoch,
        result.best_validation_loss,
    )
    return result


def _settings(plan: Pretraining, recipe: Recipe) -> TrainSettings:
    """The run's training settings, with a fine-tuned model's own number of epochs."""
    if recipe.epochs is None:
        return plan.settings
    return replace(plan.settings, epochs=recipe.epochs)


def _save_representations(
    files: FoldFiles,
    model: MultimodalModel,
    tensors: FoldTensors,
    groups: Mapping[str, str],
    settings: TrainSettings,
) -> None:
    """``representations.npz``: subject, group, label, role in the fold, z_<modality>."""
    evaluation = tensors.evaluation
    latents = encode(model, evaluation.volumes, settings.batch_size, settings.device)
    arrays: dict[str, Any] = {
        "subject": np.array(evaluation.subjects),
        "group": np.array([groups[s] for s in evaluation.subjects]),
        "label": evaluation.labels.numpy(),
        "role": np.array([tensors.roles.get(s, "unused") for s in evaluation.subjects]),
        **{f"z_{m}": z for m, z in latents.items()},
    }
    with atomic_path(files.representations) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)

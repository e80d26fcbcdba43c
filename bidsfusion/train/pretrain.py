"""Pretraining every (objective spec, fold) and saving its frozen representations.

Each spec's model and objective are built once, before any work (:func:`build_recipes`:
a factory that refuses its options fails the run at once), from the run's seed: the
model first, then the objective, so every spec and every fold starts from the same
encoders. Per fold: the fold's normalised volumes (:mod:`~bidsfusion.data.folds`); per
spec, a copy of its initial model and objective trained by
:func:`~bidsfusion.train.loop.train_fold` (resumed or skipped when its fingerprint
matches), or, for a spec that does not train (``Random``), kept at its initialisation;
then the model's ``checkpoint.pt`` and its latents of every evaluation subject in
``representations.npz``. ``group/training_summary.tsv`` gives the learning diagnostics of
every trained fold. In a distributed run every rank trains and only rank 0 writes
(:mod:`~bidsfusion.train.distributed`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bidsfusion import __version__
from bidsfusion.atomic import atomic_path
from bidsfusion.config import Data, Model
from bidsfusion.data.folds import FoldTensors, fold_tensors
from bidsfusion.data.group_inputs import GroupInputs
from bidsfusion.data.splits import Splits
from bidsfusion.fingerprint import digest
from bidsfusion.layout import FoldFiles, GroupLayout
from bidsfusion.models.multimodal import MultimodalModel, build_model
from bidsfusion.objectives.compose import ComposedObjective, Registry
from bidsfusion.objectives.specs import ObjectiveSpec
from bidsfusion.train.distributed import is_main
from bidsfusion.train.encode import encode
from bidsfusion.train.loop import FoldData, FoldResult, train_fold
from bidsfusion.train.resume import FoldState, save_best
from bidsfusion.train.settings import TrainSettings
from bidsfusion.train.summary import summary_row, write_training_summary

log = logging.getLogger("bidsfusion.group")


@dataclass(frozen=True)
class Recipe:
    """What one spec trains from: its parsed spec and its model and objective at their
    seeded initialisation (each fold trains copies)."""

    spec: ObjectiveSpec
    model: MultimodalModel
    objective: ComposedObjective


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


def pretrain_all(
    recipes: Sequence[Recipe],
    inputs: GroupInputs,
    splits: Splits,
    layout: GroupLayout,
    settings: TrainSettings,
    data: Data,
    model: Model,
    folds: Sequence[int],
) -> None:
    """Train (or reuse) every recipe on the folds ``folds``; write each one's checkpoint and
    representations (rank 0).

    A fold's ``representations.npz`` is removed before its training starts or resumes
    and written when it ends, so a run killed midway leaves none for ``--eval-only``.
    """
    labels = inputs.labels(data.positive, data.negative)
    device = torch.device(settings.device)
    summary = []
    for k in folds:
        tensors = fold_tensors(inputs, splits.folds[k], splits.holdout, labels, device)
        for recipe in recipes:
            files = layout.fold(recipe.spec.name, k)
            fold_model = copy.deepcopy(recipe.model)
            if is_main():  # stale until this fold's model is final: --eval-only must not use it
                files.representations.unlink(missing_ok=True)
            if recipe.spec.trains:
                result = _train(recipe, fold_model, tensors, settings, files, data, model)
                summary.append(summary_row(recipe.spec.name, k, result))
            elif is_main():
                _save_initial(files, fold_model, recipe.objective)
            if is_main():
                _save_representations(files, fold_model, tensors, inputs.groups, settings)
    if is_main():
        write_training_summary(summary, layout)


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
    tensors: FoldTensors,
    settings: TrainSettings,
    files: FoldFiles,
    data: Data,
    model: Model,
) -> FoldResult:
    result = train_fold(
        fold_model,
        copy.deepcopy(recipe.objective),
        FoldData(tensors.train.volumes, tensors.train.labels),
        FoldData(tensors.validation.volumes, tensors.validation.labels),
        settings,
        files.path,
        data_key=data_key(recipe.spec, data, model, tensors.key),
    )
    log.info(
        "%s: best epoch %d, validation loss %.4f",
        files.path,
        result.best_epoch,
        result.best_validation_loss,
    )
    return result


def _save_initial(files: FoldFiles, model: MultimodalModel, objective: ComposedObjective) -> None:
    """``checkpoint.pt`` of a spec that does not train: its initial states, epoch 0."""
    state = FoldState(
        best_model={k: v.detach().cpu() for k, v in model.state_dict().items()},
        best_objective={k: v.detach().cpu() for k, v in objective.state_dict().items()},
    )
    save_best(files, state)


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

"""Pretraining every (objective spec, fold) and saving its frozen representations.

Per fold: histogram landmarks learned on the fold's training subjects, every split
normalised once on the training device; per spec: the multimodal model and the
composed objective, :func:`~bidsfusion.train.loop.train_fold` (resumed or skipped
when its fingerprint matches), then the best model's latents of every evaluation
subject in ``representations.npz``. The ``Random`` control is the same model at its
seeded initialisation, never trained: it answers "did pretraining help at all?".
``group/training_summary.tsv`` gives per trained (objective, fold) the learning
diagnostics of :mod:`~bidsfusion.train.diagnostics`. In a distributed run every rank
trains and only rank 0 writes (:mod:`~bidsfusion.train.distributed`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bidsfusion import __version__
from bidsfusion.atomic import atomic_path, locked
from bidsfusion.config import FLIP_AXES, GRID_MM
from bidsfusion.data.group_inputs import GroupInputs
from bidsfusion.data.normalize import PairedVolumes, learn_landmarks, paired_volumes
from bidsfusion.data.pairs import Pair, label_of
from bidsfusion.data.splits import Fold, Splits
from bidsfusion.errors import BidsFusionError
from bidsfusion.fingerprint import digest, file_stamp
from bidsfusion.models.multimodal import MultimodalModel
from bidsfusion.plugins import registered
from bidsfusion.train.diagnostics import SHORTCUT_GAP
from bidsfusion.train.distributed import is_main
from bidsfusion.train.encode import encode
from bidsfusion.train.loop import FoldData, FoldResult, train_fold
from bidsfusion.train.settings import TrainSettings
from bidsfusion.tsv import read_tsv, write_tsv

log = logging.getLogger("bidsfusion.group")

RANDOM = "Random"
"""The control: untrained encoders, encoded and evaluated like every objective."""
REPRESENTATIONS = "representations.npz"


@dataclass(frozen=True)
class FoldTensors:
    """One fold's normalised volumes: train, validation and every evaluation pair."""

    train: PairedVolumes
    validation: PairedVolumes
    evaluation: PairedVolumes
    roles: dict[str, str]
    key: dict[str, Any]


def representations_path(group_dir: Path, spec: str, fold: int) -> Path:
    """``group/objective-<SPEC>/fold-<k>/representations.npz``."""
    return group_dir / f"objective-{spec}" / f"fold-{fold}" / REPRESENTATIONS


def pretrain_all(
    config: Any,
    specs: Sequence[str],
    inputs: GroupInputs,
    splits: Splits,
    group_dir: Path,
    options: Mapping[str, Mapping[str, Any]],
    device: torch.device,
    folds: Sequence[int],
) -> None:
    """Train (or reuse) every spec on the folds ``folds``; write each one's representations.

    A fold's ``representations.npz`` is removed before its training starts or resumes
    and written when it ends, so a run killed midway leaves none for ``--eval-only``.

    ``options[term]`` are the keyword options of the objective term ``term``.
    """
    summary = []
    for k in folds:
        tensors = fold_tensors(config, inputs, splits.folds[k], splits.holdout, device)
        for spec in specs:
            out_dir = group_dir / f"objective-{spec}" / f"fold-{k}"
            torch.manual_seed(config.seed)
            model = build_model(config, list(tensors.train.volumes))
            if spec != RANDOM:
                if is_main():  # stale until this training ends: --eval-only must not use it
                    (out_dir / REPRESENTATIONS).unlink(missing_ok=True)
                result = _train(config, spec, model, tensors, options, out_dir, device)
                summary.append(summary_row(spec, k, result))
            if is_main():
                _save_representations(
                    out_dir / REPRESENTATIONS,
                    model,
                    tensors,
                    inputs.groups,
                    config.batch_size,
                    device,
                )
    if is_main():
        write_training_summary(summary, group_dir)


SUMMARY_COLUMNS = (
    "objective",
    "fold",
    "epochs",
    "best_epoch",
    "best_validation_loss",
    "unlearned",
    "validation_retrieval",
    "retrieval_chance",
    "critic_retrieval",
    "probe_shared",
    "probe_independent",
    "shortcut",
    "augmentation",
)
"""Columns of ``group/training_summary.tsv``, one row per trained (objective, fold)."""


def summary_row(spec: str, fold: int, result: FoldResult) -> list[object]:
    """A ``training_summary.tsv`` row: the best epoch, the terms that did not beat their
    chance level, validation retrieval (latents, and the critic's: each the mean over its
    pairs) at the best epoch, the shortcut probe, the terms that learned the augmentation."""
    row = result.best_row
    retrieval = [v for k, v in row.items() if k.startswith("val_retrieval_") and "chance" not in k]
    critic = [v for k, v in row.items() if k.startswith("val_critic_")]
    shared, independent = result.probe
    return [
        spec,
        fold,
        result.epochs_run,
        result.best_epoch,
        result.best_validation_loss,
        " ".join(sorted(result.unlearned)) or None,
        sum(retrieval) / len(retrieval) if retrieval else None,
        row.get("val_retrieval_chance"),
        sum(critic) / len(critic) if critic else None,
        shared,
        independent,
        shared - independent > SHORTCUT_GAP,
        " ".join(sorted(result.augmentation)) or None,
    ]


def write_training_summary(rows: Sequence[list[object]], group_dir: Path) -> None:
    """Write ``group/training_summary.tsv``, keeping other objectives' rows (under a lock:
    concurrent jobs may train other objectives into the same OUTPUT_DIR)."""
    path = group_dir / "training_summary.tsv"
    mine = {(str(r[0]), str(r[1])) for r in rows}
    with locked(group_dir / ".training_summary.lock"):
        kept = []
        if path.exists():
            try:
                _, earlier = read_tsv(path)
                kept = [
                    [r.get(c) for c in SUMMARY_COLUMNS]
                    for r in earlier
                    if (r["objective"], r["fold"]) not in mine
                ]
            except (BidsFusionError, KeyError):
                log.warning("%s is unreadable; rewritten with this run's rows only", path)
        write_tsv(path, SUMMARY_COLUMNS, [*kept, *rows])


def fold_tensors(
    config: Any, inputs: GroupInputs, fold: Fold, holdout: Sequence[str], device: torch.device
) -> FoldTensors:
    """The fold's splits normalised with landmarks of its training volumes."""
    labels = {s: label_of(g, config.positive, config.negative) for s, g in inputs.groups.items()}
    train = [p for p in inputs.pairs if p.subject in set(fold.train)]
    validation = [p for p in inputs.pairs if p.subject in set(fold.validation)]
    evaluation = [p for p in inputs.pairs if p.evaluation]
    landmarks = {
        m: learn_landmarks(c, c.rows([p.paths[m] for p in train]), device)
        for m, c in inputs.caches.items()
    }

    def volumes(pairs: Sequence[Pair]) -> PairedVolumes:
        return paired_volumes(pairs, inputs.caches, landmarks, labels, device)

    roles = dict.fromkeys(fold.train, "train")
    roles.update(dict.fromkeys(fold.validation, "validation"))
    roles.update(dict.fromkeys(holdout, "holdout"))
    key = {
        "modalities": list(inputs.caches),
        "train": _stamps(train),
        "validation": _stamps(validation),
    }
    return FoldTensors(volumes(train), volumes(validation), volumes(evaluation), roles, key)


def _stamps(pairs: Sequence[Pair]) -> list[dict[str, object]]:
    return [file_stamp(Path(p)) for p in sorted(p for q in pairs for p in q.paths.values())]


def data_key(config: Any, spec: str, options: Mapping[str, Any], files: Mapping[str, Any]) -> str:
    """SHA-256 of what a fold's training depends on beyond its settings: the
    bidsfusion version, the model (encoder, latent size, input size), the objective
    spec and its terms' options (defaults included), the labels (column, positive and
    negative values: the sampler and Supervised use them), the fused modalities and
    each training and validation file (``files``: the modalities, then path, size,
    modification time)."""
    record = {
        "version": __version__,
        "encoder": config.encoder,
        "latent_dim": config.latent_dim,
        "input_size": config.input_size,
        "objective": spec,
        "options": {term: dict(values) for term, values in sorted(options.items())},
        "labels": [config.label_column, config.positive, config.negative],
        **files,
    }
    return digest(record)


def build_model(config: Any, modalities: list[str]) -> MultimodalModel:
    """The multimodal model of ``--encoder``, ``--input-size`` and ``--latent-dim``."""
    encoder = registered("encoders")[config.encoder]
    size = (config.input_size,) * 3
    return MultimodalModel(modalities, encoder, size, config.latent_dim)


def train_settings(config: Any, device: torch.device) -> TrainSettings:
    """The :class:`TrainSettings` of a run's configuration (``--max-shift`` in mm becomes
    voxels of the 3 mm grid)."""
    return TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        max_lr=config.max_lr,
        seed=config.seed,
        device=str(device),
        paired_augmentation=config.paired_augmentation,
        flip_axes=FLIP_AXES[config.flip_axes],
        crop_pad=config.max_shift // GRID_MM,
        sync_bn=config.sync_bn,
    )


def _train(
    config: Any,
    spec: str,
    model: MultimodalModel,
    tensors: FoldTensors,
    options: Mapping[str, Mapping[str, Any]],
    out_dir: Path,
    device: torch.device,
) -> FoldResult:
    from bidsfusion.objectives.compose import build_objective, parse_spec
    from bidsfusion.objectives.options import with_defaults

    registry = registered("objectives")
    terms = parse_spec(spec, registry)
    used = {t: dict(options[t]) for t in terms if t in options}
    objective = build_objective(
        spec, list(model.modalities), model.dims(config.latent_dim), registry, used
    )
    result = train_fold(
        model,
        objective,
        FoldData(tensors.train.volumes, tensors.train.labels),
        FoldData(tensors.validation.volumes, tensors.validation.labels),
        train_settings(config, device),
        out_dir,
        data_key=data_key(config, spec, with_defaults(terms, used, registry), tensors.key),
    )
    log.info(
        "%s: best epoch %d, validation loss %.4f",
        out_dir,
        result.best_epoch,
        result.best_validation_loss,
    )
    return result


def _save_representations(
    path: Path,
    model: MultimodalModel,
    tensors: FoldTensors,
    groups: Mapping[str, str],
    batch_size: int,
    device: torch.device,
) -> None:
    """``representations.npz``: subject, group, label, role in the fold, z_<modality>."""
    evaluation = tensors.evaluation
    latents = encode(model, evaluation.volumes, batch_size, device)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            subject=np.array(evaluation.subjects),
            group=np.array([groups[s] for s in evaluation.subjects]),
            label=evaluation.labels.numpy(),
            role=np.array([tensors.roles.get(s, "unused") for s in evaluation.subjects]),
            **{f"z_{m}": z for m, z in latents.items()},
        )

"""One fold's volumes, normalised as its model sees them: landmarks of its training subjects.

Per fold and modality the histogram landmarks are learned on the fold's training volumes
(:mod:`~bidsfusion.data.normalize`); the training, validation and evaluation pairs are then
normalised once, on the training device. Training and every analysis of a fold's model
read the fold's volumes from here, so they see the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bidsfusion.data.group_inputs import GroupInputs
from bidsfusion.data.normalize import PairedVolumes, learn_landmarks, paired_volumes
from bidsfusion.data.pairs import Pair
from bidsfusion.data.splits import Fold
from bidsfusion.data.transforms import HistogramLandmarks
from bidsfusion.fingerprint import file_stamp


@dataclass(frozen=True)
class FoldTensors:
    """One fold's normalised volumes: train, validation and every evaluation pair; each
    subject's role in the fold (``train``, ``validation``, ``holdout``); ``key``: the fused
    modalities and the stamps of the training and validation files (what a trained model
    depends on)."""

    train: PairedVolumes
    validation: PairedVolumes
    evaluation: PairedVolumes
    roles: dict[str, str]
    key: dict[str, Any]
    landmarks: dict[str, HistogramLandmarks]
    pairs: dict[str, list[Pair]]
    """The pairs of ``train``, ``validation`` and ``evaluation``."""


def fold_tensors(
    inputs: GroupInputs,
    fold: Fold,
    holdout: Sequence[str],
    labels: Mapping[str, int],
    device: torch.device,
    landmarks: Mapping[str, HistogramLandmarks] | None = None,
) -> FoldTensors:
    """The fold's splits normalised with landmarks of its training volumes, or with
    ``landmarks`` when given (a pretrained model's own: never refit on other data);
    ``labels``: every subject's label (1 positive, 0 negative, -1 other)."""
    train_subjects, validation_subjects = set(fold.train), set(fold.validation)
    train = [p for p in inputs.pairs if p.subject in train_subjects]
    validation = [p for p in inputs.pairs if p.subject in validation_subjects]
    evaluation = [p for p in inputs.pairs if p.evaluation]
    if landmarks is None:
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
    pairs = {"train": train, "validation": validation, "evaluation": evaluation}
    return FoldTensors(
        volumes(train), volumes(validation), volumes(evaluation), roles, key, dict(landmarks), pairs
    )


def _stamps(pairs: Sequence[Pair]) -> list[dict[str, object]]:
    return [file_stamp(Path(p)) for p in sorted(p for q in pairs for p in q.paths.values())]

"""Normalising a fold's volumes: histogram landmarks learned on its training subjects only.

Per fold and modality, histogram landmarks are learned on the volumes of the
fold's training subjects only (torchio's HistogramStandardization semantics),
then every volume the fold needs is standardised and z-normalised once, batched
on the training device. Augmentation happens later, per batch, in the loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bidsfusion.data.pairs import Pair
from bidsfusion.data.transforms import HistogramLandmarks, standardize_histograms, z_normalize
from bidsfusion.data.volumes import VolumeCache

CHUNK = 16
"""Volumes normalised per step (bounds peak memory)."""


@dataclass(frozen=True)
class PairedVolumes:
    """Normalised volumes ``[N, 1, S, S, S]`` per modality, labels ``[N]`` and subjects."""

    volumes: dict[str, Tensor]
    labels: Tensor
    subjects: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.subjects)


def learn_landmarks(
    cache: VolumeCache, rows: np.ndarray, device: torch.device
) -> HistogramLandmarks:
    """Landmarks from the cached volumes ``rows`` (the fold's training volumes)."""
    rows = np.unique(rows)
    batches = (_load(cache, rows[i : i + CHUNK], device) for i in range(0, len(rows), CHUNK))
    return HistogramLandmarks.train(batches)


def _load(cache: VolumeCache, rows: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(cache[rows][:, None]).to(device)


def normalise(x: Tensor, landmarks: HistogramLandmarks) -> Tensor:
    """Volumes ``x[B, 1, S, S, S]`` as every model sees them: histogram-standardised with
    ``landmarks`` (its training fold's), then z-normalised per volume; float32."""
    return z_normalize(standardize_histograms(x, landmarks.values.to(x.device)))


def normalised(
    cache: VolumeCache, rows: np.ndarray, landmarks: HistogramLandmarks, device: torch.device
) -> Tensor:
    """Standardised, z-normalised volumes ``[len(rows), 1, S, S, S]`` on ``device``, filled
    chunk by chunk into one tensor (never a second copy of them all)."""
    size = cache.input_size
    out = torch.empty((len(rows), 1, size, size, size), device=device)
    for i in range(0, len(rows), CHUNK):
        out[i : i + CHUNK] = normalise(_load(cache, rows[i : i + CHUNK], device), landmarks)
    return out


def paired_volumes(
    pairs: Sequence[Pair],
    caches: Mapping[str, VolumeCache],
    landmarks: Mapping[str, HistogramLandmarks],
    labels: Mapping[str, int],
    device: torch.device,
) -> PairedVolumes:
    """The normalised volumes of ``pairs`` per modality, with each pair's subject label."""
    volumes = {
        m: normalised(cache, cache.rows([p.paths[m] for p in pairs]), landmarks[m], device)
        for m, cache in caches.items()
    }
    label_tensor = torch.tensor([labels[p.subject] for p in pairs], dtype=torch.long)
    return PairedVolumes(volumes, label_tensor, tuple(p.subject for p in pairs))

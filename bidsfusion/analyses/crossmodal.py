"""The cross-modal saliency link: which latent dimensions of two modalities respond to the
same subjects in the same places, and whether that beats chance.

For dimension ``i`` of the first modality and ``j`` of the second, the link is the
Pearson correlation **across subjects** of their saliency at one brain voxel, averaged
over the brain's voxels::

    link[i, j] = mean over v of corr_s(a[s, i, v], b[s, j, v])

``a``, ``b``: every evaluated subject's saliency maps (each rescaled to [0, 1], as the
displayed maps), block-averaged to at most :data:`LINK_SIZE`^3 and kept at the voxels at
least half inside the template brain (:func:`~bidsfusion.space.brain_coverage`). Pooling
voxels instead (as this analysis did before) correlates the shared shape of every
saliency map with itself: 0.98 for any pair of an untrained encoder. Across subjects at a
voxel, it is high only where the two dimensions' saliency varies together from subject to
subject: shared subject-level information.

The null is a permutation test of the best pair: the second modality's subjects are
shuffled (:data:`PERMUTATIONS` times, seeded), the best link over all pairs recomputed each
time (the max statistic: the pair was chosen as the best), and the p-value is the share of
shuffles at or above the observed best, ``(1 + count) / (1 + permutations)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bidsfusion.space import brain_coverage

LINK_SIZE = 16
"""The coarsest grid the link is computed on (the saliency maps are smooth at that scale)."""
MIN_COVERAGE = 0.5
"""The least fraction of a link voxel inside the template brain mask."""
PERMUTATIONS = 200
"""Shuffles of the second modality's subjects in the permutation null."""


def link_voxels(maps: Tensor) -> Tensor:
    """Maps ``[B, K, S, S, S]`` (float) -> ``[B, K, V]`` float64: block-averaged to the link
    grid, at its brain voxels."""
    size = min(maps.shape[-1], LINK_SIZE)
    pooled = F.avg_pool3d(maps.float(), kernel_size=maps.shape[-1] // size)
    inside = torch.from_numpy(brain_coverage(size) >= MIN_COVERAGE)
    return pooled.flatten(2)[:, :, inside.flatten()].double()


def _standardised(x: Tensor) -> Tensor:
    """``x[N, K, V]`` centred and scaled over subjects per (dimension, voxel); 0 where constant."""
    centred = x - x.mean(dim=0, keepdim=True)
    sd = centred.pow(2).mean(dim=0, keepdim=True).sqrt()
    return torch.where(sd > 0, centred / sd.clamp(min=1e-300), 0.0)


def _linked(za: Tensor, zb: Tensor) -> Tensor:
    """The mean over voxels of the across-subject correlations of standardised maps."""
    return torch.einsum("nkv,njv->kj", za, zb) / (za.shape[0] * za.shape[2])


@dataclass(frozen=True)
class Link:
    """The link of every pair of dimensions, the best pair and its permutation null."""

    matrix: np.ndarray
    best: tuple[int, int]
    value: float
    null: np.ndarray
    """The best link of every shuffle."""

    @property
    def p(self) -> float:
        """The permutation p-value of the best pair."""
        return float((1 + (self.null >= self.value).sum()) / (1 + len(self.null)))


def cross_modal_link(a: Tensor, b: Tensor, seed: int, permutations: int = PERMUTATIONS) -> Link:
    """The link of ``a[N, K, V]`` and ``b[N, J, V]`` (see the module doc) with its
    permutation null, the shuffles drawn from ``seed``."""
    za, zb = _standardised(a), _standardised(b)
    matrix = _linked(za, zb)
    generator = torch.Generator().manual_seed(seed)
    shuffles = (torch.randperm(len(zb), generator=generator) for _ in range(permutations))
    null = np.array([float(_linked(za, zb[order]).max()) for order in shuffles])
    flat = int(torch.argmax(matrix))
    best = (flat // matrix.shape[1], flat % matrix.shape[1])
    return Link(matrix.numpy(), best, float(matrix.max()), null)

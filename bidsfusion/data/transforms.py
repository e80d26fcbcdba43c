"""Batched, on-device intensity normalisation and augmentation with torchio's semantics.

Volumes are ``[B, C, D, H, W]`` tensors; a batch of a pair is a dict
modality -> tensor with the same B and spatial shape. Normalisation per
modality: histogram standardization (Nyul & Udupa, as
``torchio.HistogramStandardization``) then z-normalisation (as
``torchio.ZNormalization``), each over the whole volume by default, as torchio.
Augmentation (:func:`augment`): random left-right flips, then a random translation
of up to 12 mm filled with the volume's minimum (pad then crop back), drawn per sample and, by
default, per modality.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PERCENTILES = (1, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 99)
"""Landmark percentiles: torchio's cutoff (0.01, 0.99), deciles and quartiles."""
STANDARD_RANGE = (0.0, 100.0)
"""Where the cutoff percentiles (1 and 99) land on average after standardization."""
_MAPPED = (0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12)
"""Landmarks used by the mapping (torchio's ``range_to_use``: quartiles are not)."""
_EPSILON = 1e-5
"""Landmark gaps narrower than this map to a constant (torchio's epsilon)."""


def _batch_mask(x: Tensor, mask: Tensor | None) -> Tensor | None:
    return None if mask is None else mask.reshape(x.shape[0], -1).to(torch.bool)


def masked_percentiles(
    x: Tensor, mask: Tensor | None = None, percentiles: Sequence[float] = PERCENTILES
) -> Tensor:
    """Per-volume percentiles, as ``np.percentile`` (linear) over the masked voxels.

    ``x`` [B, ...] and ``mask`` (bool, same shape, None = every voxel) ->
    float64 [B, len(percentiles)]. An empty mask gives meaningless values.
    """
    flat = x.reshape(x.shape[0], -1)
    flat_mask = _batch_mask(x, mask)
    if flat_mask is None:
        ordered = sorted_rows(flat)
        count = torch.full((x.shape[0], 1), flat.shape[1], device=x.device)
    else:
        ordered = sorted_rows(torch.where(flat_mask, flat, math.inf))
        count = flat_mask.sum(dim=1, keepdim=True)
    q = torch.as_tensor(percentiles, dtype=torch.float64, device=x.device) / 100
    position = (count - 1).double() * q
    lower = position.floor().long().clamp(min=0)
    upper = torch.minimum(lower + 1, count - 1).clamp(min=0)
    gamma = position - lower
    a = ordered.gather(1, lower).double()
    b = ordered.gather(1, upper).double()
    step = b - a
    return torch.where(gamma >= 0.5, b - step * (1 - gamma), a + step * gamma)


def sorted_rows(values: Tensor) -> Tensor:
    """Each row of ``values`` [B, N] sorted ascending. On the CPU numpy sorts (its SIMD
    sort: 12 ms for a 64^3 volume where torch takes 90 ms), elsewhere torch; the same
    values either way."""
    if values.device.type == "cpu" and not values.requires_grad:
        return torch.from_numpy(np.sort(values.numpy(), axis=1))
    return values.sort(dim=1).values


def mean_mask(x: Tensor) -> Tensor:
    """Voxels above their volume's mean (torchio's ``Transform.mean``): [B, ...] -> bool."""
    dims = tuple(range(1, x.ndim))
    return x > x.float().mean(dim=dims, keepdim=True)


def _average_mapping(percentiles: Tensor) -> Tensor:
    """Landmarks [K] from per-volume percentiles [N, K] (torchio's ``_get_average_mapping``)."""
    low, high = STANDARD_RANGE
    slopes = torch.nan_to_num((high - low) / (percentiles[:, -1] - percentiles[:, 0]))
    intercept = torch.mean(low - slopes * percentiles[:, 0])
    return slopes @ percentiles / len(percentiles) + intercept


@dataclass(frozen=True)
class HistogramLandmarks:
    """Learned histogram landmarks: float64 [13] at :data:`PERCENTILES`.

    The same array as ``torchio.HistogramStandardization.train`` returns, so
    either can be used with the other's transform.
    """

    values: Tensor

    @classmethod
    def train(
        cls, batches: Iterable[Tensor], masking_function: Callable[[Tensor], Tensor] | None = None
    ) -> HistogramLandmarks:
        """Learn landmarks from training volumes given as batches [B, C, D, H, W].

        ``masking_function`` maps a batch to a bool mask of the voxels used
        (e.g. :func:`mean_mask`); None uses every voxel, torchio's default.
        """
        rows = [
            masked_percentiles(b, None if masking_function is None else masking_function(b))
            for b in batches
        ]
        return cls(_average_mapping(torch.cat(rows).cpu()))

    def __call__(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Standardize ``x`` [B, C, D, H, W] with these landmarks."""
        return standardize_histograms(x, self.values, mask)


def standardize_histograms(
    x: Tensor, landmarks: Tensor | np.ndarray, mask: Tensor | None = None
) -> Tensor:
    """Histogram standardization of each volume, as ``torchio.HistogramStandardization``.

    ``x`` [B, C, D, H, W]; ``landmarks`` [13] (from :class:`HistogramLandmarks`
    or torchio); ``mask`` selects the voxels whose percentiles are matched to
    the landmarks (None = all). Every voxel is mapped piecewise-linearly
    between the volume's percentiles 1, 10, 20, 30, ..., 90, 99 and the
    landmarks, the first and last pieces extended beyond percentiles 1 and 99;
    a piece narrower than 1e-5 maps to its lower landmark. The mapping is
    evaluated in float64 (a steep piece amplifies rounding); returns float32.
    """
    flat = x.reshape(x.shape[0], -1).float()
    used = masked_percentiles(flat, mask)[:, _MAPPED]
    wide = flat.double()
    target = torch.as_tensor(landmarks, dtype=torch.float64, device=x.device)[list(_MAPPED)]
    width = used.diff(dim=1)
    width = torch.where(width < _EPSILON, math.inf, width)
    slope = target.diff() / width
    intercept = target[:-1] - slope * used[:, :-1]
    piece = torch.searchsorted(used[:, 1:-1].contiguous(), wide, right=True)
    out = slope.gather(1, piece) * wide + intercept.gather(1, piece)
    return out.float().view(x.shape)


def z_normalize(x: Tensor) -> Tensor:
    """Subtract each volume's mean, divide by its std (unbiased), as ``torchio.ZNormalization``.

    ``x`` [B, ...] -> float32, statistics over all voxels of a volume. Where
    torchio raises on a constant volume, this returns zeros for it (the volume
    cache rejects constant inputs, and a device check would stall the batch).
    """
    x = x.float()
    std, mean = torch.std_mean(x, dim=tuple(range(1, x.ndim)), keepdim=True)
    return (x - mean) / torch.where(std > 0, std, 1.0)


def _batch_size(batch: Mapping[str, Tensor]) -> int:
    shapes = {(x.shape[0], *x.shape[-3:]) for x in batch.values()}
    if len(shapes) != 1:
        raise ValueError(f"modalities of a batch differ in batch size or spatial shape: {shapes}")
    return next(iter(shapes))[0]


def random_flip(
    batch: Mapping[str, Tensor],
    generator: torch.Generator,
    p: float = 0.5,
    axes: Sequence[int] = (0,),
) -> dict[str, Tensor]:
    """Flip each sample along each spatial axis in ``axes`` (0: left-right on the RAS grid,
    torchio's default) with probability ``p``, alike in every modality."""
    size = _batch_size(batch)
    draws = torch.rand(size, len(axes), generator=generator, device=generator.device) < p
    out = {}
    for name, x in batch.items():
        flips = draws.to(x.device)
        for column, axis in enumerate(axes):
            chosen = flips[:, column].view(size, *[1] * (x.ndim - 1))
            x = torch.where(chosen, x.flip(x.ndim - 3 + axis), x)
        out[name] = x
    return out


def translate(x: Tensor, offsets: Tensor, pad: int) -> Tensor:
    """Pad ``x`` [B, ..., D, H, W] by ``pad`` per side with each volume's minimum (the
    background of a brain-masked map, torchio's ``"minimum"`` padding) and crop D, H, W
    at ``offsets``.

    ``offsets`` [B, 3] (integers in [0, 2 pad]): out[b, ..., i, j, k] =
    padded[b, ..., i + o0, j + o1, k + o2], a shift by pad - o. A zero fill would draw
    a step at the edge of a z-normalised volume (whose background is below 0) that
    tells where the field of view was shifted to.
    """
    floor = x.amin(dim=tuple(range(1, x.ndim)), keepdim=True)
    inside = F.pad(torch.ones_like(x[:1], dtype=torch.bool), [pad] * 6)
    out = torch.where(inside, F.pad(x, [pad] * 6), floor)
    offsets = offsets.to(x.device)
    for axis in range(3):
        dim = x.ndim - 3 + axis
        length = x.shape[dim]
        index = offsets[:, axis, None] + torch.arange(length, device=x.device)
        view = [x.shape[0]] + [1] * (x.ndim - 1)
        view[dim] = length
        target = list(out.shape)
        target[dim] = length
        out = out.gather(dim, index.view(view).expand(target))
    return out


def random_crop(
    batch: Mapping[str, Tensor], generator: torch.Generator, pad: int = 4
) -> dict[str, Tensor]:
    """Random translation by up to ``pad`` voxels per axis, filled with each volume's
    minimum, alike in every modality.

    Equivalent to padding by ``pad`` (:func:`translate`) and cropping the original size at a
    uniformly drawn offset per sample and axis.
    """
    size = _batch_size(batch)
    offsets = torch.randint(0, 2 * pad + 1, (size, 3), generator=generator, device=generator.device)
    return {name: translate(x, offsets, pad) for name, x in batch.items()}


GRID_SIZE = 64
"""Edge of the participant-level grid (3 mm voxels) that ``crop_pad`` is counted on."""


def scaled_pad(crop_pad: int, size: int) -> int:
    """``crop_pad`` voxels of the 64^3 grid in voxels of a ``size``^3 volume (same mm)."""
    return round(crop_pad * size / GRID_SIZE)


def augment(
    volumes: Mapping[str, Tensor],
    generator: torch.Generator,
    flip_p: float = 0.5,
    crop_pad: int = 4,
    paired: bool = False,
    flip_axes: Sequence[int] = (0,),
) -> dict[str, Tensor]:
    """Random flips along ``flip_axes``, then a random translation filled with the
    background, per sample.

    ``crop_pad`` is the largest shift in voxels of the 64^3 grid (4: 12 mm), scaled
    to the volumes' size (:func:`scaled_pad`): 2 voxels at 32^3, 1 at 16^3.
    Each modality gets its own draw (the default: the two views of a pair share
    only the subject), or with ``paired`` one draw shared by every modality, as the
    reference implementation does. A shared draw lets cross-modal terms match pairs
    by where the brain sits in the field of view instead of by the subject
    (measured: 90 % pair retrieval with the shared draw, chance without).
    """
    groups = [dict(volumes)] if paired else [{m: x} for m, x in volumes.items()]
    out: dict[str, Tensor] = {}
    for group in groups:
        if flip_p > 0 and flip_axes:
            group = random_flip(group, generator, flip_p, flip_axes)
        pad = scaled_pad(crop_pad, next(iter(group.values())).shape[-1])
        if pad > 0:
            group = random_crop(group, generator, pad)
        out.update(group)
    return out

"""SmoothGrad saliency of every latent dimension, projected into brain space (paper Fig. 3).

For a subject's normalised volume ``x`` and an encoder with latent ``z[K]``:

1. SmoothGrad: the mean over :data:`SAMPLES` noisy copies ``x + e``, ``e ~ N(0, (0.05 *
   range(x))^2)`` (``range`` = max - min of the subject's volume), of the gradient of
   ``z[k]`` with respect to the input, for every ``k`` at once (one vector-Jacobian
   product batched over the K cotangents with ``torch.func.vmap``), then its
   absolute value. Computed in float32 whatever the input's dtype.
2. The "numerically stable" projection: non-finite values set to 0, the brain mask
   applied (voxels above the volume's minimum, its background), each (subject,
   dimension) map rescaled to [0, 1] inside the mask; a map whose range is below
   :data:`MIN_RANGE` times its maximum (or 0) becomes all zeros instead of dividing
   by almost nothing; then Gaussian smoothing with sigma :data:`SIGMA_VOXELS` voxels of
   the model's input, and the mask again. Never NaN.
3. Brain space: upsampled from the model's input size to the 64^3 3 mm MNI grid
   (each input voxel is the mean of a block of grid voxels, so its saliency is
   repeated over the block).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

NOISE_FRACTION = 0.05
SAMPLES = 5
SIGMA_VOXELS = 1.5
MIN_RANGE = 1e-6


def _spatial(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def smoothgrad(
    latent: Callable[[Tensor], Tensor],
    x: Tensor,
    samples: int = SAMPLES,
    noise: float = NOISE_FRACTION,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``|mean_s d latent(x + e_s)[:, k] / dx|`` for every ``k``: ``x[B, 1, *S]`` ->
    float32 ``[B, K, *S]`` (see the module doc); ``latent`` maps ``[B, 1, *S]`` to ``[B, K]``."""
    x = x.detach().float()
    span = x.amax(dim=_spatial(x), keepdim=True) - x.amin(dim=_spatial(x), keepdim=True)
    total: Tensor | None = None
    for _ in range(samples):
        e = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        z, pullback = torch.func.vjp(lambda v: latent(v).float(), x + noise * span * e)
        B, K = z.shape
        cotangents = torch.eye(K, device=x.device).unsqueeze(1).expand(K, B, K)
        (gradients,) = torch.func.vmap(pullback)(cotangents)  # [K, B, 1, *S]
        step = gradients[:, :, 0].transpose(0, 1)
        total = step if total is None else total + step
    assert total is not None, "samples must be >= 1"
    return (total / samples).abs()


def brain_mask(x: Tensor) -> Tensor:
    """Voxels above each volume's minimum: ``[B, 1, *S]`` -> bool ``[B, 1, *S]``."""
    return x > x.amin(dim=_spatial(x), keepdim=True)


def unit_range(maps: Tensor, brain: Tensor) -> Tensor:
    """Each ``maps[b, k]`` (float ``[B, K, *S]``) rescaled to [0, 1] inside ``brain``
    (bool ``[B, 1, *S]``), 0 outside; a map of (near) zero range becomes all zeros."""
    maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0) * brain
    dims = _spatial(maps)
    low = torch.where(brain, maps, math.inf).amin(dim=dims, keepdim=True)
    high = torch.where(brain, maps, -math.inf).amax(dim=dims, keepdim=True)
    span = high - low
    usable = torch.isfinite(span) & (span > MIN_RANGE * high.abs().clamp(min=1e-30))
    scaled = (maps - torch.where(usable, low, 0.0)) / torch.where(usable, span, 1.0)
    return torch.where(usable & brain, scaled, 0.0)


def gaussian_smooth(maps: Tensor, sigma: float = SIGMA_VOXELS) -> Tensor:
    """Separable Gaussian smoothing (zero padding, radius ceil(3 sigma)) of ``[B, K, *S]``."""
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    B, K, *size = maps.shape
    out = maps.reshape(B * K, 1, *size)
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        padding = [0, 0, 0]
        padding[axis] = radius
        out = F.conv3d(out, kernel.view(shape), padding=tuple(padding))
    return out.view(B, K, *size)


def to_grid(maps: Tensor, grid_size: int = 64) -> Tensor:
    """``[B, K, S, S, S]`` -> ``[B, K, G, G, G]``, each voxel repeated over its block."""
    factor = grid_size // maps.shape[-1]
    for dim in (2, 3, 4):
        maps = maps.repeat_interleave(factor, dim=dim)
    return maps


def brain_saliency(
    latent: Callable[[Tensor], Tensor],
    x: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Steps 1-2 of the module doc at the model's resolution: ``x[B, 1, *S]`` -> float32
    ``[B, K, *S]`` in [0, 1], zero outside the brain."""
    brain = brain_mask(x.float())
    maps = unit_range(smoothgrad(latent, x, generator=generator), brain)
    return gaussian_smooth(maps) * brain

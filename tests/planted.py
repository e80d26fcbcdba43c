"""Paired volumes whose two modalities share planted subject factors, for learning tests.

Inside an ellipsoid "brain" (left-right symmetric, like every factor, so the
left-right flips of the augmentation keep what a subject is), subject ``n`` of
modality ``m`` shows ``sum_k u[n, k] B_m[k] + sum_k v_m[n, k] P_m[k]`` scaled by a
global factor ``g[n]``: ``u`` and ``g`` are shared by both modalities, ``v_m`` is the
modality's own, and the bases ``B_m``, ``P_m`` are smooth random fields, fixed for
every call. T1w-like maps are linear in the field, fALFF-like ones exponential;
both are positive in the brain and 0 outside, then z-normalised per volume.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

MODALITIES = ("T1w", "falff")


def _bases(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """``count`` smooth, left-right symmetric fields of unit sd, ``[count, size, size, size]``."""
    sigma = (0, size / 8, size / 8, size / 8)
    fields = ndimage.gaussian_filter(rng.standard_normal((count, size, size, size)), sigma)
    fields = fields + fields[:, ::-1]
    return fields / fields.std(axis=(1, 2, 3), keepdims=True)


def _brain(size: int) -> np.ndarray:
    centred = np.indices((size,) * 3) / (size - 1) * 2 - 1
    radii = np.array([0.8, 0.9, 0.75])[:, None, None, None]
    return ((centred**2 / radii**2).sum(0) < 1).astype(np.float64)


def planted_pairs(
    n: int, size: int = 16, seed: int = 0, shared: float = 1.0, factors: int = 8
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``(volumes, labels)``: float32 ``[n, 1, size, size, size]`` per modality and random
    0/1 labels; ``shared = 0`` plants nothing common to the two modalities."""
    bases = np.random.default_rng(1234)
    brain = _brain(size)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, factors)) * shared
    g = np.exp(0.5 * rng.standard_normal(n))[:, None, None, None] ** shared
    volumes = {}
    for m in MODALITIES:
        own, private = _bases(bases, factors, size), _bases(bases, factors, size)
        v = rng.standard_normal((n, factors))
        field = g * (np.einsum("nk,kxyz->nxyz", u, own) + np.einsum("nk,kxyz->nxyz", v, private))
        x = 1 + 0.15 * field if m == "T1w" else np.exp(0.2 * field)
        x = brain * np.maximum(x + 0.2 * rng.standard_normal(x.shape), 0.01)
        x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
        volumes[m] = torch.tensor(x[:, None], dtype=torch.float32)
    return volumes, torch.tensor(rng.integers(0, 2, n))


def textured_pairs(n: int, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Paired volumes in which every patch shows its subject: inside the brain, a
    texture (smoothed noise, drawn for each volume) whose amplitude, log-uniform over
    a factor of 10, is the subject's own and shared by its two modalities; float32
    ``[n, 1, size, size, size]`` per modality, z-normalised."""
    rng = np.random.default_rng(seed)
    brain = _brain(size)
    amplitude = np.exp(rng.uniform(np.log(0.1), np.log(1.0), (n, 1, 1, 1)))
    volumes = {}
    for m in MODALITIES:
        texture = ndimage.gaussian_filter(rng.standard_normal((n, size, size, size)), (0, 1, 1, 1))
        texture /= texture.std(axis=(1, 2, 3), keepdims=True)
        x = brain * (2 + amplitude * texture)
        x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
        volumes[m] = torch.tensor(x[:, None], dtype=torch.float32)
    return volumes

"""What makes one synthetic subject differ from another, beyond the planted AD effects.

Every subject draws, from its own random stream, four factors on the phantom
grid (2 mm voxels, ``anatomy.PHANTOM_SHAPE``) that all of its scans share:

* ``displacement``: a smooth deformation of grey and white matter (mm, about
  ``2 * variability`` sd per axis, fading to 0 outside the brain): individual
  shape and folding position;
* ``gm_density``: a smooth multiplicative field ``exp(0.3 * variability * n)`` on
  grey matter, where ``n`` is a smooth field of unit sd: lost grey matter
  becomes CSF. It shapes BOTH the T1w contrast and the fALFF (whose amplitude
  follows grey matter), so the two modalities of a subject share it;
* ``ventricle_mm``: the subject's own ventricle enlargement, ``|N(0, 2 mm)| *
  variability``, shared by both modalities like ``gm_density``;
* ``lf_pattern``: a smooth multiplicative field ``exp(0.15 * variability * n)`` on
  the 0.01-0.1 Hz amplitude: the subject's own functional pattern, fALFF only.

``variability = 0`` gives the template subject (every field neutral).
``coupling`` (default 1) further scales only the factors both modalities share
(``gm_density``'s log-sd and ``ventricle_mm``): above 1, a subject's T1w says more
about its fALFF, which gives cross-modal objectives more to find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

COARSE = 8
"""The random fields are drawn on a grid ``COARSE`` times coarser (16 mm) and upsampled."""
DISPLACEMENT_MM = 2.0
GM_DENSITY_LOG_SD = 0.3
LF_PATTERN_LOG_SD = 0.15
VENTRICLE_SD_MM = 2.0


@dataclass(frozen=True)
class Individuality:
    """One subject's own factors (see the module doc); float32 arrays on the phantom grid."""

    displacement_mm: np.ndarray
    """(3, *shape): where each point of the subject's brain comes from in the template."""
    gm_density: np.ndarray
    lf_pattern: np.ndarray
    ventricle_mm: float

    @classmethod
    def template(cls, shape: tuple[int, ...]) -> Individuality:
        """The neutral subject on a grid of ``shape``: no deformation, unit fields."""
        ones = np.ones(shape, dtype=np.float32)
        return cls(np.zeros((3, *shape), dtype=np.float32), ones, ones, 0.0)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth random field of unit sd and mean 0 on a 2 mm grid (features of ~3 cm)."""
    coarse_shape = tuple(-(-s // COARSE) + 2 for s in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 1.0, mode="wrap")
    field = ndimage.zoom(coarse, COARSE, order=1)[tuple(slice(0, s) for s in shape)]
    return ((field - field.mean()) / field.std()).astype(np.float32)


def draw_individuality(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    variability: float = 1.0,
    coupling: float = 1.0,
) -> Individuality:
    """The factors of one subject on a grid of ``shape`` from ``rng``, scaled by
    ``variability`` (>= 0); the shared ones also by ``coupling`` (>= 0)."""
    if variability == 0:
        return Individuality.template(shape)
    fields = [smooth_field(rng, shape) for _ in range(5)]
    displacement = np.stack(fields[:3]) * (DISPLACEMENT_MM * variability)
    gm_density = np.exp(GM_DENSITY_LOG_SD * variability * coupling * fields[3])
    lf_pattern = np.exp(LF_PATTERN_LOG_SD * variability * fields[4])
    ventricle_mm = abs(float(rng.normal(0.0, VENTRICLE_SD_MM))) * variability * coupling
    return Individuality(displacement, gm_density, lf_pattern, ventricle_mm)


def deform(volume: np.ndarray, displacement_mm: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``volume`` sampled at ``x + weight(x) * displacement(x)`` (trilinear, 2 mm voxels)."""
    grid = np.indices(volume.shape, dtype=np.float32)
    coordinates = grid + displacement_mm * (weight / 2.0)
    return ndimage.map_coordinates(volume, coordinates, order=1, mode="nearest").astype(np.float32)

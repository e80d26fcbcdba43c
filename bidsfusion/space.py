"""The standard space every output lives in: the fixed MNI grid (3 mm, 64^3) and the bundled
MNI152 template.

The template is nilearn's bundled ICBM152 2009a nonlinear symmetric T1 (skull-stripped,
rescaled to [0, 1]) and its brain mask, in RAS+ mm. Its brain mask spans voxel centres
x -72..72, y -107..73, z -72..82 mm (1 mm version).

The grid has 3 mm isotropic voxels, axes aligned with RAS, voxel centres at
x -94.5..94.5, y -111.5..77.5, z -89.5..99.5 mm, which leaves margins around the
template brain of 22.5 mm (x, each side), 4.5 mm (y, each side) and 17.5 mm
(z, each side). The grid is symmetric about x = 0, as is the template, so flipping
the array along its first axis mirrors left and right anatomically.
"""

from __future__ import annotations

import functools
import warnings

import nibabel as nib
import numpy as np
from nilearn import datasets

MNI_GRID_SHAPE: tuple[int, int, int] = (64, 64, 64)
"""Voxels along i (x, left to right), j (y, posterior to anterior), k (z, inferior to superior)."""

MNI_GRID_AFFINE = np.array(
    [
        [3.0, 0.0, 0.0, -94.5],
        [0.0, 3.0, 0.0, -111.5],
        [0.0, 0.0, 3.0, -89.5],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
"""Voxel-to-RAS (mm) affine of the grid: voxel (0, 0, 0) is centred at (-94.5, -111.5, -89.5)."""
MNI_GRID_AFFINE.setflags(write=False)


@functools.lru_cache(maxsize=4)
def mni_template(resolution_mm: int = 1) -> nib.Nifti1Image:
    """Return the skull-stripped MNI152 2009a T1 template (values in [0, 1]), cached.

    Args:
        resolution_mm: isotropic voxel size in mm (1 is the stored image, others resample).
    """
    return datasets.load_mni152_template(resolution=resolution_mm)


@functools.lru_cache(maxsize=4)
def mni_brain_mask(resolution_mm: int = 1) -> nib.Nifti1Image:
    """Return the MNI152 2009a brain mask (uint8, 1 inside), cached.

    Args:
        resolution_mm: isotropic voxel size in mm (1 is the stored image, others resample).
    """
    return datasets.load_mni152_brain_mask(resolution=resolution_mm)


@functools.lru_cache(maxsize=1)
def grid_template() -> np.ndarray:
    """The 1 mm MNI152 template resampled (trilinear) onto the 64^3 grid: float ``MNI_GRID_SHAPE``,
    read-only."""
    from nilearn.image import resample_img

    template = resample_img(
        mni_template(1),
        target_affine=MNI_GRID_AFFINE,
        target_shape=MNI_GRID_SHAPE,
        interpolation="continuous",
        force_resample=True,
        copy_header=True,
    )
    data = np.asarray(template.get_fdata())
    data.setflags(write=False)
    return data


@functools.lru_cache(maxsize=4)
def brain_coverage(size: int = MNI_GRID_SHAPE[0]) -> np.ndarray:
    """The fraction of each voxel of the ``size^3`` model grid (the 64^3 grid, block-averaged
    by 64 / ``size``) that the template brain mask covers: float ``[size]*3`` in [0, 1],
    read-only.

    The 1 mm template mask is resampled (trilinear) onto the 1 mm grid whose 3x3x3 blocks
    are the 3 mm grid's voxels, and averaged over each block: the covered fraction of
    every grid voxel, then of each block of a coarser model grid.
    """
    from nilearn.image import new_img_like, resample_img

    factor = MNI_GRID_SHAPE[0] // size
    if factor * size != MNI_GRID_SHAPE[0]:
        raise ValueError(f"a model grid of side {size} does not divide the 64^3 grid")
    mask = mni_brain_mask(1)
    as_float = new_img_like(mask, np.asarray(mask.dataobj, dtype=np.float32), copy_header=True)
    fine = np.eye(4)
    fine[:3, 3] = MNI_GRID_AFFINE[:3, 3] - 1.0  # the first 1 mm voxel of grid voxel 0
    with warnings.catch_warnings():  # a fraction is what the interpolation of a mask gives
        warnings.filterwarnings("ignore", message="Resampling binary images")
        resampled = resample_img(
            as_float,
            target_affine=fine,
            target_shape=tuple(3 * n for n in MNI_GRID_SHAPE),
            interpolation="continuous",
            force_resample=True,
            copy_header=True,
        )
    fraction = np.clip(np.asarray(resampled.get_fdata(), dtype=np.float64), 0.0, 1.0)
    side = 3 * factor
    blocks = fraction.reshape(size, side, size, side, size, side).mean(axis=(1, 3, 5))
    blocks.setflags(write=False)
    return blocks

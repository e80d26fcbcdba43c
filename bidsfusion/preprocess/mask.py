"""Brain and head masks: the MNI brain mask on the output grid, crude native-space masks."""

from __future__ import annotations

import functools

import numpy as np
import SimpleITK as sitk

from bidsfusion.preprocess.images import array_to_sitk, nib_to_sitk, reference_image
from bidsfusion.space import MNI_GRID_AFFINE, MNI_GRID_SHAPE, mni_brain_mask


@functools.lru_cache(maxsize=1)
def grid_brain_mask() -> np.ndarray:
    """The MNI152 brain mask on the 3 mm 64^3 grid: bool ``MNI_GRID_SHAPE``, read-only.

    The 1 mm template mask is resampled trilinearly onto the grid and kept where
    ``>= 0.5`` (a grid voxel is brain when at least half of its neighbourhood is).
    """
    resampled = sitk.Resample(
        nib_to_sitk(mni_brain_mask(1)),
        reference_image(MNI_GRID_AFFINE, MNI_GRID_SHAPE),
        sitk.Transform(3, sitk.sitkIdentity),
        sitk.sitkLinear,
        0.0,
        sitk.sitkFloat32,
    )
    mask = sitk.GetArrayFromImage(resampled).T >= 0.5
    mask.setflags(write=False)
    return mask


def apply_mask(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return ``volume`` as float32 with voxels outside ``mask`` (same shape) set to 0."""
    return np.where(mask, volume, 0).astype(np.float32)


def head_mask(image: sitk.Image, sigma_mm: float = 2.0) -> sitk.Image:
    """Crude foreground mask: Gaussian smoothing, Otsu threshold, largest component, holes filled.

    Args:
        image: a 3D image (T1w: the head; mean BOLD: mostly the brain).
        sigma_mm: smoothing before thresholding (standard deviation, mm).

    Returns:
        uint8 mask on the image's grid, 1 in the foreground.
    """
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), sigma_mm)
    foreground = sitk.OtsuThreshold(smooth, 0, 1)
    largest = sitk.RelabelComponent(sitk.ConnectedComponent(foreground), sortByObjectSize=True) == 1
    return sitk.Cast(sitk.BinaryFillhole(largest), sitk.sitkUInt8)


def epi_mask(mean: np.ndarray) -> np.ndarray:
    """Native-space mask of a mean BOLD volume (X, Y, Z): :func:`head_mask` at 1 voxel smoothing.

    Returns:
        bool array (X, Y, Z).
    """
    image = array_to_sitk(np.asarray(mean, dtype=np.float32), np.eye(4))
    return sitk.GetArrayFromImage(head_mask(image, sigma_mm=1.0)).T > 0

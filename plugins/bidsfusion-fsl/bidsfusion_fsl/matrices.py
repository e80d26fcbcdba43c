"""FSL's matrices as world transforms (RAS+ mm, the convention of bidsfusion).

FLIRT and MCFLIRT write 4x4 matrices between *scaled voxel* coordinates: voxel indices
times the voxel sizes, with the first index reversed when the voxel-to-world affine has
a positive determinant (FSL's radiological convention). A matrix ``M`` from ``flirt -in
SOURCE -ref REFERENCE`` maps SOURCE's scaled voxels to REFERENCE's.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np

from bidsfusion.api import params_from_matrix, volume_centre


def scaled_voxels(image: nib.spatialimages.SpatialImage) -> np.ndarray:
    """4x4 matrix: voxel index -> FSL scaled voxel coordinates (mm) of ``image``."""
    matrix = np.diag([*np.asarray(image.header.get_zooms()[:3], dtype=np.float64), 1.0])
    if np.linalg.det(image.affine[:3, :3]) > 0:
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, image.shape[0] - 1
        matrix = matrix @ flip
    return matrix


def world_matrix(
    fsl_matrix: np.ndarray,
    source: nib.spatialimages.SpatialImage,
    reference: nib.spatialimages.SpatialImage,
) -> np.ndarray:
    """The 4x4 RAS world matrix (mm) of an FSL matrix: SOURCE's world -> REFERENCE's world."""
    source_to_scaled = scaled_voxels(source) @ np.linalg.inv(source.affine)
    scaled_to_reference = reference.affine @ np.linalg.inv(scaled_voxels(reference))
    return scaled_to_reference @ np.asarray(fsl_matrix, dtype=np.float64) @ source_to_scaled


def motion_parameters(fsl_matrices: Sequence[np.ndarray], series: nib.Nifti1Image) -> np.ndarray:
    """``(T, 6)`` rigid parameters (tx, ty, tz mm, rx, ry, rz rad) of MCFLIRT's matrices.

    Each matrix maps volume ``t`` to the reference volume; the parameters are those of
    that world map about the volume centre, the convention of the built-in realignment
    (:mod:`bidsfusion.preprocess.motion`), so the confounds and their FD compare.
    """
    world = [world_matrix(m, series, series) for m in fsl_matrices]
    return params_from_matrix(np.stack(world), volume_centre(series.affine, series.shape))

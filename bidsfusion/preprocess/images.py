"""Conversions between nibabel-style images (array + RAS affine) and SimpleITK images.

nibabel: ``data[i, j, k]`` with a 4x4 ``affine`` mapping voxel indices to RAS+
world millimetres (x to the Right, y Anterior, z Superior).
SimpleITK: the same voxels with ``origin``, ``spacing`` and ``direction`` in LPS+
world millimetres (x to the Left, y Posterior, z Superior); ``GetArrayFromImage``
returns them as ``[k, j, i]``. A world point converts by ``lps = diag(-1, -1, 1) @ ras``.
Transforms produced by SimpleITK registration live in LPS; :func:`matrix_from_transform`
and :func:`transform_from_matrix` convert them to and from 4x4 RAS matrices.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from bidsfusion.errors import InputDataError

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
"""Flip of x and y: maps RAS+ coordinates to LPS+ (its own inverse)."""

_FLIP4 = np.diag([-1.0, -1.0, 1.0, 1.0])
_MAX_SHEAR = 1e-3


def geometry_from_affine(
    affine: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Split a RAS voxel-to-world affine into SimpleITK's LPS geometry.

    Args:
        affine: 4x4 voxel-to-RAS matrix (mm).

    Returns:
        ``(origin, spacing, direction)``: origin (3,) in LPS mm, spacing (3,) in mm,
        direction as 9 row-major floats (columns = LPS axis of i, j, k).

    Raises:
        InputDataError: the affine has a zero voxel size or shear beyond rounding
            (SimpleITK needs orthonormal axes); tiny shear is removed.
    """
    linear = RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if not np.all(spacing > 0):
        raise InputDataError(f"image affine has a zero voxel size: spacing {spacing.tolist()}")
    direction = linear / spacing
    u, _, vt = np.linalg.svd(direction)
    orthonormal = u @ vt
    if np.abs(orthonormal - direction).max() > _MAX_SHEAR:
        raise InputDataError(
            f"image affine has non-orthogonal voxel axes (shear), not supported: {affine.tolist()}"
        )
    origin = RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3, 3]
    return tuple(origin), tuple(spacing), tuple(orthonormal.ravel())


def affine_from_geometry(image: sitk.Image) -> np.ndarray:
    """Return the 4x4 voxel-to-RAS affine (mm) of a 3D SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_LPS @ direction * np.asarray(image.GetSpacing())
    affine[:3, 3] = RAS_TO_LPS @ np.asarray(image.GetOrigin())
    return affine


def array_to_sitk(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """Wrap a 3D array in nibabel order ``(i, j, k)`` with its RAS affine as a SimpleITK image.

    Args:
        data: (X, Y, Z) array; bool becomes uint8, other dtypes are kept.
        affine: 4x4 voxel-to-RAS matrix (mm).

    Returns:
        A SimpleITK image holding a copy of ``data`` with the same world geometry.
    """
    if data.ndim != 3:
        raise InputDataError(f"expected a 3D volume, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T))
    origin, spacing, direction = geometry_from_affine(affine)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def sitk_to_array(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, affine)``: the voxels as (X, Y, Z) in nibabel order and the RAS affine."""
    return sitk.GetArrayFromImage(image).T, affine_from_geometry(image)


def nib_to_sitk(img: nib.spatialimages.SpatialImage, dtype: type = np.float32) -> sitk.Image:
    """Convert a 3D nibabel image to SimpleITK, casting voxels to ``dtype`` (scaling applied)."""
    return array_to_sitk(np.asanyarray(img.dataobj).astype(dtype, copy=False), img.affine)


def reference_image(affine: np.ndarray, shape: tuple[int, int, int]) -> sitk.Image:
    """Return an empty (uint8) SimpleITK image defining the grid ``shape`` with ``affine``."""
    image = sitk.Image([int(n) for n in shape], sitk.sitkUInt8)
    origin, spacing, direction = geometry_from_affine(affine)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def matrix_from_transform(transform: sitk.Transform) -> np.ndarray:
    """Return the 4x4 RAS world-to-world matrix (mm) of a SimpleITK matrix-offset transform.

    Works for Euler3D, Similarity3D, Versor and Affine transforms. The matrix maps
    points the same way the transform does: for a registration result, from the fixed
    image's world to the moving image's world (RAS mm).
    """
    linear = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    centre = np.asarray(transform.GetCenter(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = linear
    lps[:3, 3] = centre + np.asarray(transform.GetTranslation()) - linear @ centre
    return _FLIP4 @ lps @ _FLIP4


def transform_from_matrix(matrix: np.ndarray) -> sitk.AffineTransform:
    """Return the SimpleITK (LPS) affine transform of a 4x4 RAS world-to-world matrix (mm)."""
    lps = _FLIP4 @ np.asarray(matrix, dtype=np.float64) @ _FLIP4
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(lps[:3, :3].ravel()))
    transform.SetTranslation(tuple(lps[:3, 3]))
    return transform

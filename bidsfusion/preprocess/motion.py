"""Rigid (6-dof) head-motion correction of a BOLD series to its first volume.

Parameters follow :mod:`bidsfusion.rigid` (RAS+ world mm and radians, the world of
the nibabel affine), the convention the simulator plants: volume ``t``'s parameters
define the rigid map ``T_t`` about the world position of the grid centre.

``T_t`` maps the world coordinates of volume ``t`` onto those of volume 0: the
anatomy at ``x`` in volume ``t`` is at ``T_t(x)`` in volume 0, i.e.
``volume_t(x) = volume_0(T_t(x))``. The corrected volume pulls each point ``y`` from
``T_t^-1(y)``: ``corrected_t(y) = volume_t(T_t^-1(y))``. In ITK terms (fixed = volume
0, moving = volume ``t``) the registration transform is ``T_t^-1`` (in LPS there).
Convert with :func:`rigid_matrix`, ``np.linalg.inv`` and :func:`params_from_matrix`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bidsfusion.errors import InputDataError
from bidsfusion.rigid import params_from_matrix, rigid_matrix, volume_centre

_TOLERANCE_MM = 1e-4
_TOLERANCE_RAD = 1e-6


def framewise_displacement(params: np.ndarray, radius: float = 50.0) -> np.ndarray:
    """Power et al. (2012) framewise displacement.

    Args:
        params: (T, 6) motion parameters, translations in mm then rotations in radians.
        radius: sphere radius in mm converting rotations to arc length.

    Returns:
        (T,) FD in mm: ``sum |d trans| + radius * sum |d rot|`` between consecutive
        volumes, with ``FD[0] = 0``.
    """
    params = np.asarray(params, dtype=np.float64)
    delta = np.abs(np.diff(params, axis=0))
    fd = delta[:, :3].sum(axis=1) + radius * delta[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


@dataclass(frozen=True)
class _Level:
    """One pyramid level of :func:`realign`: the reference's samples and their Jacobian."""

    sigma_voxels: np.ndarray  # (3,) Gaussian smoothing of both images, in voxels
    world: np.ndarray  # (3, N) RAS mm of the sample points (voxel centres of volume 0)
    reference: np.ndarray  # (N,) smoothed volume 0 at the sample points
    jacobian: np.ndarray  # (6, N) d reference(W(x; p)) / dp at p = 0
    hessian: np.ndarray  # (6, 6) jacobian @ jacobian.T


def _level(
    reference: np.ndarray, affine: np.ndarray, centre: np.ndarray, sigma_mm: float, stride: int
) -> _Level:
    """Smooth volume 0 and precompute the inverse-compositional Jacobian on a sample grid."""
    linear = affine[:3, :3]
    sigma_voxels = sigma_mm / np.linalg.norm(linear, axis=0)
    smooth = ndimage.gaussian_filter(reference, sigma_voxels, mode="nearest")
    # interior voxels only, where the index-space gradient is a central difference
    grids = np.meshgrid(*[np.arange(1, n - 1, stride) for n in reference.shape], indexing="ij")
    index = np.stack([g.ravel() for g in grids])
    world = linear @ index + affine[:3, 3:]
    gradient_index = np.stack([g[tuple(index)] for g in np.gradient(smooth)])
    gradient = np.linalg.inv(linear).T @ gradient_index  # chain rule, world (RAS) gradient
    # W(x; p) = x + t + w x (x - c): d/dt = gradient, d/dw = (x - c) x gradient
    jacobian = np.concatenate([gradient, np.cross(world - centre[:, None], gradient, axis=0)])
    return _Level(
        sigma_voxels=sigma_voxels,
        world=world,
        reference=smooth[tuple(index)].astype(np.float64),
        jacobian=jacobian,
        hessian=jacobian @ jacobian.T,
    )


def _register(
    moving: np.ndarray,
    level: _Level,
    to_index: np.ndarray,
    centre: np.ndarray,
    matrix: np.ndarray,
    max_iterations: int,
) -> np.ndarray:
    """Gauss-Newton (inverse compositional) refinement of ``T_t^-1`` (RAS 4x4, volume 0 -> t).

    Skinny products use ``einsum``, not BLAS: threaded BLAS stalls on busy CPUs.
    """
    smooth = ndimage.gaussian_filter(moving, level.sigma_voxels, mode="nearest")
    upper = np.asarray(moving.shape, dtype=np.float64)[:, None] - 1
    for _ in range(max_iterations):
        voxel_map = to_index @ matrix  # reference world -> moving voxel
        index = np.einsum("ij,jn->in", voxel_map[:3, :3], level.world) + voxel_map[:3, 3:]
        error = ndimage.map_coordinates(smooth, index, order=1, mode="nearest")
        error -= level.reference
        outside = np.any((index < 0) | (index > upper), axis=0)
        error[outside] = 0.0
        dropped = level.jacobian[:, outside]  # few points: subtract them from the Hessian
        hessian = level.hessian - np.einsum("kn,ln->kl", dropped, dropped)
        gradient = np.einsum("kn,n->k", level.jacobian, error)
        step = np.linalg.solve(hessian, gradient)
        matrix = matrix @ np.linalg.inv(rigid_matrix(step, centre))
        if np.abs(step[:3]).max() < _TOLERANCE_MM and np.abs(step[3:]).max() < _TOLERANCE_RAD:
            break
    return matrix


def realign(
    data: np.ndarray,
    affine: np.ndarray,
    levels: tuple[tuple[float, int], ...] = ((4.0, 2), (1.5, 2)),
    max_iterations: int = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """Rigidly register every volume to the first and resample it onto the first's grid.

    Least squares between intensities, solved by inverse-compositional Gauss-Newton
    (Baker and Matthews 2004; the scheme of SPM's realign): the reference's Jacobian is
    computed once per level, each iteration samples the moving volume once
    (trilinear). Levels run coarse to fine, each volume starts from the previous
    volume's solution, and a level stops when a step is below 1e-4 mm and 1e-6 rad.
    Resampling is trilinear; samples leaving the field of view take the nearest edge value.

    Args:
        data: BOLD series, shape ``(X, Y, Z, T)``.
        affine: 4x4 voxel-to-RAS matrix (mm) shared by all volumes.
        levels: per level ``(sigma_mm, stride)``: Gaussian smoothing of both volumes
            (standard deviation, mm) and the sampling stride on volume 0's grid (voxels).
            Stride 2 at the fine level samples every 6-7 mm of a 3-3.5 mm EPI (SPM
            samples every 4 mm): 2.5x faster than stride 1, the same error on the
            planted phantom of the tests (0.008 mm, 0.014 degrees) and within 0.024 mm
            and 0.04 degrees of stride 1 on the studyforrest run.
        max_iterations: Gauss-Newton iterations per level and volume, at most.

    Returns:
        ``(corrected, params)``: corrected series, float32 ``(X, Y, Z, T)`` on the same
        grid, and motion parameters ``(T, 6)`` (tx, ty, tz mm, rx, ry, rz radians) of
        ``T_t`` in the module's convention (RAS, about :func:`volume_centre`);
        ``params[0] = 0``.
    """
    if data.ndim != 4 or min(data.shape[:3]) < 3:
        raise InputDataError(f"motion correction needs a 4D (X, Y, Z, T) series, got {data.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    to_index = np.linalg.inv(affine)
    centre = volume_centre(affine, data.shape)
    reference = np.asarray(data[..., 0], dtype=np.float32)
    pyramid = [_level(reference, affine, centre, sigma, stride) for sigma, stride in levels]
    if any(np.linalg.cond(level.hessian) > 1e12 for level in pyramid):
        raise InputDataError("motion correction: the first volume has no structure to align to")

    corrected = np.empty(data.shape, dtype=np.float32, order="F")
    corrected[..., 0] = reference
    matrices = np.tile(np.eye(4), (data.shape[3], 1, 1))
    for t in range(1, data.shape[3]):
        moving = np.asarray(data[..., t], dtype=np.float32)
        matrix = matrices[t - 1]
        for level in pyramid:
            matrix = _register(moving, level, to_index, centre, matrix, max_iterations)
        matrices[t] = matrix
        voxel_map = to_index @ matrix @ affine  # output voxel -> moving voxel
        corrected[..., t] = ndimage.affine_transform(
            moving, voxel_map[:3, :3], voxel_map[:3, 3], order=1, mode="nearest"
        )
    return corrected, params_from_matrix(np.linalg.inv(matrices), centre)

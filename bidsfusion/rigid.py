"""Rigid (6-dof) geometry in RAS+ world mm: the parameter convention shared by motion
correction (:mod:`bidsfusion.preprocess.motion`) and the simulator (:mod:`bidsfusion.synth`).

Parameters ``(tx, ty, tz, rx, ry, rz)`` (mm, radians) define the rigid map

    T(x) = R (x - c) + c + (tx, ty, tz),    R = Rz(rz) @ Ry(ry) @ Rx(rx),

with ``c`` a rotation centre (for a volume, the world position of its grid centre,
:func:`volume_centre`) and ``Rx(a)``, ``Ry(a)``, ``Rz(a)`` right-handed rotations by
``a`` radians about the RAS x, y, z axes (x applied first).
"""

from __future__ import annotations

import numpy as np


def volume_centre(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return the RAS world position (mm, shape (3,)) of the centre of a voxel grid."""
    index = (np.asarray(shape[:3], dtype=np.float64) - 1.0) / 2.0
    return affine[:3, :3] @ index + affine[:3, 3]


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Return ``Rz(rz) @ Ry(ry) @ Rx(rx)`` for angles ``(..., 3)`` = (rx, ry, rz) radians.

    Returns:
        Rotation matrices, shape ``(..., 3, 3)``.
    """
    angles = np.asarray(angles, dtype=np.float64)
    cx, cy, cz = np.moveaxis(np.cos(angles), -1, 0)
    sx, sy, sz = np.moveaxis(np.sin(angles), -1, 0)
    rows = [
        [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
        [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
        [-sy, cy * sx, cy * cx],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def rigid_matrix(params: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Return the 4x4 RAS matrices of rigid parameters (the module's convention).

    Args:
        params: ``(..., 6)`` = (tx, ty, tz) mm, (rx, ry, rz) radians.
        centre: (3,) rotation centre, RAS mm.

    Returns:
        ``(..., 4, 4)`` world-to-world matrices ``M`` with ``M(x) = R (x - c) + c + t``.
    """
    params = np.asarray(params, dtype=np.float64)
    centre = np.asarray(centre, dtype=np.float64)
    rotation = rotation_matrix(params[..., 3:])
    matrix = np.zeros((*params.shape[:-1], 4, 4))
    matrix[..., :3, :3] = rotation
    matrix[..., :3, 3] = centre + params[..., :3] - rotation @ centre
    matrix[..., 3, 3] = 1.0
    return matrix


def params_from_matrix(matrix: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Invert :func:`rigid_matrix`: ``(..., 4, 4)`` rigid matrices -> ``(..., 6)`` parameters.

    Angles follow ``R = Rz Ry Rx`` with ``ry`` in ``[-pi/2, pi/2]``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    rotation = matrix[..., :3, :3]
    translation = matrix[..., :3, 3] - np.asarray(centre) + rotation @ np.asarray(centre)
    rx = np.arctan2(rotation[..., 2, 1], rotation[..., 2, 2])
    ry = np.arcsin(np.clip(-rotation[..., 2, 0], -1.0, 1.0))
    rz = np.arctan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return np.concatenate([translation, np.stack([rx, ry, rz], axis=-1)], axis=-1)

"""The rigid parameter convention: rotation order, matrices, their inverse, the centre."""

from __future__ import annotations

import numpy as np

from bidsfusion.rigid import params_from_matrix, rigid_matrix, rotation_matrix, volume_centre


def test_rotation_convention() -> None:
    # right-handed about z: +x goes to +y; x is applied first
    np.testing.assert_allclose(
        rotation_matrix([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0], atol=1e-12
    )
    np.testing.assert_allclose(
        rotation_matrix([np.pi / 2, 0, 0]) @ [0, 1, 0], [0, 0, 1], atol=1e-12
    )
    angles = np.array([0.1, -0.2, 0.3])
    expected = (
        rotation_matrix([0, 0, angles[2]])
        @ rotation_matrix([0, angles[1], 0])
        @ rotation_matrix([angles[0], 0, 0])
    )
    np.testing.assert_allclose(rotation_matrix(angles), expected, atol=1e-12)


def test_matrix_round_trip_and_centre() -> None:
    centre = np.array([10.0, -20.0, 5.0])
    params = np.array([[1.0, -2.0, 3.0, 0.05, -0.1, 0.2], [0, 0, 0, 0, 0, 0]])
    matrices = rigid_matrix(params, centre)
    np.testing.assert_allclose(params_from_matrix(matrices, centre), params, atol=1e-12)
    # the centre moves by the translation only
    np.testing.assert_allclose(matrices[0] @ [*centre, 1], [*(centre + params[0, :3]), 1])
    np.testing.assert_allclose(matrices[1], np.eye(4))
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(volume_centre(affine, (10, 20, 5, 7)), [9.0, 19.0, 6.0])

"""The space module: the fixed 3 mm MNI grid covers the template brain; the grid brain mask."""

from __future__ import annotations

import numpy as np
import pytest

from bidsfusion.preprocess.mask import apply_mask, epi_mask, grid_brain_mask
from bidsfusion.space import (
    MNI_GRID_AFFINE,
    MNI_GRID_SHAPE,
    mni_brain_mask,
    mni_template,
)


def _brain_world(resolution_mm: int) -> np.ndarray:
    mask = mni_brain_mask(resolution_mm)
    index = np.argwhere(np.asanyarray(mask.dataobj) > 0)
    return index @ mask.affine[:3, :3].T + mask.affine[:3, 3]


def test_grid_geometry() -> None:
    assert MNI_GRID_SHAPE == (64, 64, 64)
    np.testing.assert_array_equal(np.diag(MNI_GRID_AFFINE), [3.0, 3.0, 3.0, 1.0])
    first = MNI_GRID_AFFINE[:3, 3]
    last = first + 3.0 * 63
    np.testing.assert_array_equal(first, [-94.5, -111.5, -89.5])
    np.testing.assert_array_equal(last, [94.5, 77.5, 99.5])
    with pytest.raises(ValueError):
        MNI_GRID_AFFINE[0, 0] = 2.0


def test_grid_is_symmetric_about_midline() -> None:
    x = MNI_GRID_AFFINE[0, 0] * np.arange(64) + MNI_GRID_AFFINE[0, 3]
    np.testing.assert_array_equal(x, -x[::-1])


def test_whole_template_brain_fits_with_margin() -> None:
    world = _brain_world(1)
    index = (world - MNI_GRID_AFFINE[:3, 3]) / 3.0
    # every brain voxel centre lies at least one grid voxel inside the border
    assert index.min() >= 1.0
    assert np.all(index.max(axis=0) <= np.array(MNI_GRID_SHAPE) - 2.0)


def test_template_loaders_are_cached() -> None:
    template = mni_template(2)
    assert template is mni_template(2)
    assert mni_brain_mask(1) is mni_brain_mask(1)
    data = template.get_fdata()
    assert data.min() >= 0.0 and data.max() <= 1.0
    assert mni_template(1).shape == mni_brain_mask(1).shape == (197, 233, 189)


def test_grid_brain_mask() -> None:
    mask = grid_brain_mask()
    assert mask.shape == MNI_GRID_SHAPE and mask.dtype == bool
    assert mask is grid_brain_mask()
    assert not mask.flags.writeable
    # same volume as the 1 mm mask within 2 %
    volume_1mm = len(_brain_world(1))
    assert abs(mask.sum() * 27 - volume_1mm) < 0.02 * volume_1mm
    # nothing on the grid border; the mask sits where the 1 mm mask is
    for axis in range(3):
        assert not mask.take([0, -1], axis=axis).any()
    centre = np.round((_brain_world(1).mean(axis=0) - MNI_GRID_AFFINE[:3, 3]) / 3).astype(int)
    assert mask[tuple(centre)]


def test_apply_mask() -> None:
    volume = np.arange(8.0).reshape(2, 2, 2)
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[0, 1, 1] = True
    result = apply_mask(volume, mask)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[mask], [3.0])
    assert np.count_nonzero(result) == 1


def test_epi_mask_finds_the_bright_blob() -> None:
    grid = np.stack(np.meshgrid(*[np.arange(24)] * 3, indexing="ij"))
    inside = np.sum((grid - 11.5) ** 2, axis=0) < 8.0**2
    rng = np.random.default_rng(0)
    mean = np.where(inside, 800.0, 20.0) + rng.normal(0, 10, inside.shape)
    mean[11, 11, 11] = 10.0  # a dark voxel inside: holes are filled
    mask = epi_mask(mean)
    assert mask.dtype == bool
    assert (mask == inside).mean() > 0.98
    assert mask[11, 11, 11]

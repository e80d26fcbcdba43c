"""Batched normalisation equals torchio; augmentation keeps pairs aligned; balanced sampling."""

from __future__ import annotations

import itertools
import math

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio

from bidsfusion.data.transforms import (
    HistogramLandmarks,
    mean_mask,
    random_crop,
    random_flip,
    translate,
    z_normalize,
)

SIDE = 16


def brains(count: int, seed: int) -> torch.Tensor:
    """[count, 1, 16, 16, 16]: a noisy ball of varying size and scale on a noisy background.

    The background is zero, within 1e-6 of zero, or up to 5 in turn, so low
    percentiles tie or nearly tie and exercise the flat pieces of the mapping.
    """
    g = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, SIDE)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    radius = (x**2 + y**2 + z**2).sqrt()
    volumes = []
    for i in range(count):
        ball = (radius < 0.6 + 0.1 * i) * (
            100 + 30 * i + 40 * torch.rand(radius.shape, generator=g)
        )
        background = (0.0, 1e-6, 5.0)[i % 3] * torch.rand(radius.shape, generator=g)
        volumes.append(ball + background)
    return torch.stack(volumes)[:, None]


def torchio_apply(transform: tio.Transform, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([transform(tio.Subject(t=tio.ScalarImage(tensor=v))).t.data for v in x])


def assert_close_to_range(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5):
    scale = float(expected.max() - expected.min())
    assert float((actual - expected).abs().max()) <= rtol * scale


@pytest.fixture(scope="module")
def nifti_paths(tmp_path_factory) -> tuple[list[str], torch.Tensor]:
    folder = tmp_path_factory.mktemp("train")
    x = brains(4, seed=0)
    paths = []
    for i, volume in enumerate(x):
        path = folder / f"v{i}.nii.gz"
        nib.save(nib.Nifti1Image(volume[0].numpy(), np.eye(4)), path)
        paths.append(str(path))
    return paths, x


@pytest.mark.parametrize("masked", [False, True])
def test_histogram_standardization_equals_torchio(nifti_paths, masked):
    paths, train = nifti_paths
    torchio_mask = (lambda t: t > t.float().mean()) if masked else None
    expected_landmarks = tio.HistogramStandardization.train(
        paths, masking_function=torchio_mask, progress=False
    )
    learned = HistogramLandmarks.train(
        [train[:2], train[2:]], masking_function=mean_mask if masked else None
    )
    np.testing.assert_allclose(learned.values.numpy(), expected_landmarks, rtol=1e-9, atol=1e-9)

    x = brains(5, seed=1) * 1.7 - 3  # unseen volumes, values beyond the landmarks' range
    transform = tio.HistogramStandardization({"t": expected_landmarks}, masking_method=torchio_mask)
    expected = torchio_apply(transform, x)
    actual = learned(x, mean_mask(x) if masked else None)
    assert actual.dtype == torch.float32 and actual.shape == x.shape
    assert_close_to_range(actual, expected)


def test_z_normalize_equals_torchio():
    x = brains(3, seed=2)
    assert_close_to_range(z_normalize(x), torchio_apply(tio.ZNormalization(), x))
    constant = torch.full((1, 1, 4, 4, 4), 7.0)
    assert torch.equal(z_normalize(constant), torch.zeros_like(constant))


def test_flip_is_the_same_for_every_modality_and_a_real_flip():
    x = brains(8, seed=3)
    out = random_flip({"a": x, "b": x.clone()}, torch.Generator().manual_seed(0))
    assert torch.equal(out["a"], out["b"])
    used = set()
    for volume, flipped in zip(x, out["a"], strict=True):
        matches = [
            axes
            for n in range(4)
            for axes in itertools.combinations((1, 2, 3), n)
            if torch.equal(volume.flip(axes) if axes else volume, flipped)
        ]
        assert matches
        used.add(matches[0])
    assert len(used) > 1
    again = random_flip({"a": x}, torch.Generator().manual_seed(0))
    assert torch.equal(again["a"], out["a"])


def numpy_translate(volume: np.ndarray, offset: tuple[int, int, int], pad: int) -> np.ndarray:
    padded = np.pad(volume, [(0, 0)] + [(pad, pad)] * 3, constant_values=volume.min())
    i, j, k = offset
    return padded[:, i : i + SIDE, j : j + SIDE, k : k + SIDE]


def test_translate_matches_numpy_pad_then_crop():
    x = brains(3, seed=4)
    offsets = torch.tensor([[0, 8, 3], [8, 0, 4], [4, 4, 4]])
    out = translate(x, offsets, pad=4)
    for volume, offset, result in zip(x, offsets.tolist(), out, strict=True):
        np.testing.assert_array_equal(result.numpy(), numpy_translate(volume.numpy(), offset, 4))


def test_random_crop_is_one_translation_per_sample_shared_by_modalities():
    x = torch.rand(6, 1, SIDE, SIDE, SIDE, generator=torch.Generator().manual_seed(5))
    out = random_crop({"a": x, "b": x.clone()}, torch.Generator().manual_seed(1), pad=2)
    assert torch.equal(out["a"], out["b"])
    offsets = []
    for volume, cropped in zip(x.numpy(), out["a"].numpy(), strict=True):
        found = [
            o
            for o in itertools.product(range(5), repeat=3)
            if np.array_equal(numpy_translate(volume, o, 2), cropped)
        ]
        assert len(found) == 1
        offsets.append(found[0])
    assert len(set(offsets)) > 1


def test_augment_draws_per_modality_unless_paired():
    from bidsfusion.data.transforms import augment

    volume = torch.arange(32**3, dtype=torch.float32).reshape(1, 1, 32, 32, 32)
    volume = volume.repeat(16, 1, 1, 1, 1)
    views = {"T1w": volume, "falff": volume.clone()}
    generator = torch.Generator().manual_seed(0)
    paired = augment(views, generator, paired=True)
    assert torch.equal(paired["T1w"], paired["falff"])
    independent = augment(views, generator)
    same = [
        torch.equal(a, b) for a, b in zip(independent["T1w"], independent["falff"], strict=True)
    ]
    assert sum(same) <= 2  # a chance coincidence of 2 flips and 5^3 offsets at most


def test_flips_are_left_right_unless_other_axes_are_asked_for():
    x = brains(4, seed=5)
    always = torch.Generator().manual_seed(0)
    assert torch.equal(random_flip({"a": x}, always, p=1.0)["a"], x.flip(2))
    everywhere = random_flip({"a": x}, always, p=1.0, axes=(0, 1, 2))["a"]
    assert torch.equal(everywhere, x.flip(2, 3, 4))


def test_the_shift_is_the_same_in_millimetres_at_every_input_size():
    from bidsfusion.data.transforms import augment, scaled_pad

    assert [scaled_pad(4, size) for size in (64, 32, 16)] == [4, 2, 1]
    x = brains(32, seed=6)
    out = augment({"a": x}, torch.Generator().manual_seed(1), flip_p=0.0, crop_pad=4)["a"]
    shifts = set()
    for volume, moved in zip(x, out, strict=True):
        found = [
            offset
            for offset in itertools.product(range(3), repeat=3)
            if torch.equal(translate(volume[None], torch.tensor([offset]), 1)[0], moved)
        ]
        assert found, "every sample moved by at most 1 voxel (12 mm) at 16^3"
        shifts.add(found[0])
    assert len(shifts) > 5


def test_rows_sort_as_torch_sorts_them_ties_and_infinities_included() -> None:
    from bidsfusion.data.transforms import sorted_rows

    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 50, (3, 4096), generator=g).float()
    values[0, ::7] = math.inf
    expected = values.sort(dim=1).values
    assert torch.equal(sorted_rows(values), expected)
    assert torch.equal(sorted_rows(values.double()), values.double().sort(dim=1).values)
    assert sorted_rows(values).dtype == values.dtype

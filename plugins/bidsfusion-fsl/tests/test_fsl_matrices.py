"""FSL's matrices as world transforms, and the conversion nodes run on made-up FSL
outputs (no FSL needed)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from bidsfusion_fsl.matrices import motion_parameters, world_matrix
from bidsfusion_fsl.nodes import ITKTransform, MotionOutputs

from bidsfusion.preprocess.images import array_to_sitk
from bidsfusion.preprocess.register import resample_to_grid
from bidsfusion.tsv import read_tsv


def translation(x: float, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = x, y, z
    return matrix


def image(shape: tuple[int, ...], affine: np.ndarray, seed: int = 0) -> nib.Nifti1Image:
    data = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return nib.Nifti1Image(data, affine)


def test_images_aligned_in_the_world_but_not_in_voxels_give_the_identity() -> None:
    # the source's voxel i is the reference's voxel i + 2 (2 mm voxels): FSL, which ignores
    # the world, finds its first coordinate (reversed, positive determinant) 4 mm smaller
    reference = image((10, 10, 10), np.diag([2.0, 2.0, 2.0, 1.0]))
    source = image((10, 10, 10), translation(4.0) @ np.diag([2.0, 2.0, 2.0, 1.0]))
    np.testing.assert_allclose(world_matrix(translation(-4.0), source, reference), np.eye(4))


def test_either_storage_of_one_image_gives_the_same_world_matrix() -> None:
    neurological = np.diag([2.0, 2.0, 2.0, 1.0])
    radiological = translation(18.0) @ np.diag([-2.0, 2.0, 2.0, 1.0])  # voxel i -> 9 - i
    fsl_matrix = translation(3.0, -1.0, 2.0) @ np.diag([1.1, 0.9, 1.0, 1.0])
    reference = image((10, 12, 14), np.diag([3.0, 3.0, 3.0, 1.0]))
    one, other = image((10, 8, 6), neurological), image((10, 8, 6), radiological)
    np.testing.assert_allclose(
        world_matrix(fsl_matrix, one, reference), world_matrix(fsl_matrix, other, reference)
    )
    # FSL's first axis runs right to left: +3 mm there is 3 mm to the left in RAS
    np.testing.assert_allclose(world_matrix(translation(3.0), one, one), translation(-3.0))


def test_motion_parameters_follow_the_built_in_convention() -> None:
    series = image((8, 8, 8, 3), np.diag([2.0, 2.0, 2.0, 1.0]))
    params = motion_parameters([np.eye(4), translation(2.0), translation(0, 0, 1.0)], series)
    np.testing.assert_allclose(
        params, [[0] * 6, [-2, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]], atol=1e-12
    )


def test_itk_transform_pulls_the_source_onto_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the source is the reference shifted by 2 voxels along i in the data, same header:
    # FSL would report the anatomy 2 voxels (6 mm) further along its reversed first axis
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    reference = image((12, 12, 12), affine)
    data = np.asarray(reference.dataobj)
    source = nib.Nifti1Image(np.roll(data, 2, axis=0), affine)
    for name, img in (("source", source), ("reference", reference)):
        nib.save(img, tmp_path / f"{name}.nii.gz")
    np.savetxt(tmp_path / "flirt.mat", translation(6.0))
    monkeypatch.chdir(tmp_path)
    result = ITKTransform(
        matrix_file=str(tmp_path / "flirt.mat"),
        source_file=str(tmp_path / "source.nii.gz"),
        reference_file=str(tmp_path / "reference.nii.gz"),
    ).run()
    transform = sitk.ReadTransform(result.outputs.transform_file)
    pulled = resample_to_grid(
        array_to_sitk(np.roll(data, 2, axis=0), affine), transform, affine, (12, 12, 12)
    )
    np.testing.assert_allclose(pulled[:10], data[:10], atol=1e-5)


def test_motion_outputs_write_the_built_in_confounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = image((8, 8, 8, 3), np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(series, tmp_path / "bold.nii.gz")
    mats = []
    for t, matrix in enumerate([np.eye(4), translation(2.0), translation(2.0, 1.0)]):
        np.savetxt(tmp_path / f"MAT_{t:04d}", matrix)
        mats.append(str(tmp_path / f"MAT_{t:04d}"))
    monkeypatch.chdir(tmp_path)
    result = MotionOutputs(
        in_file=str(tmp_path / "bold.nii.gz"),
        corrected_file=str(tmp_path / "bold.nii.gz"),
        mat_files=mats,
    ).run()
    columns, rows = read_tsv(Path(result.outputs.confounds_file))
    assert (
        columns[:3] == ["trans_x", "trans_y", "trans_z"] and columns[-1] == "framewise_displacement"
    )
    table = [
        [float(row[c]) for c in ("trans_x", "trans_y", "framewise_displacement")] for row in rows
    ]
    np.testing.assert_allclose(table, [[0, 0, 0], [-2, 0, 2], [-2, 1, 1]])
    mean = nib.load(result.outputs.mean_file).get_fdata()
    np.testing.assert_allclose(mean, np.asarray(series.dataobj).mean(axis=3), rtol=1e-6)
    assert nib.load(result.outputs.sd_file).shape == (8, 8, 8)
    assert os.path.dirname(result.outputs.sd_file) == str(tmp_path)

"""nipype interfaces: one per step of the participant workflow.

Each interface reads its inputs from files, calls the numerical function of its
step (``motion``, ``falff``, ``register``, ``mask``) and writes its outputs into
the node's working directory, so nipype caches every step in ``--work-dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bidsfusion.errors import InputDataError
from bidsfusion.modality import FALFF_BAND
from bidsfusion.nifti import read_data, save_image
from bidsfusion.tsv import write_tsv


def _out(name: str) -> str:
    return str(Path(os.getcwd()) / name)


class _RealignInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4D BOLD series")


class _RealignOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="motion-corrected 4D series, first volume's grid")
    mean_file = File(exists=True, desc="temporal mean of the corrected series")
    confounds_file = File(exists=True, desc="TSV: trans_x..rot_z (mm, rad), FD (mm)")
    sd_file = File(exists=True, desc="temporal sd of the detrended corrected series (tSNR)")


class Realign(SimpleInterface):
    """Rigid (6-dof) motion correction of every volume to the first."""

    input_spec = _RealignInputSpec
    output_spec = _RealignOutputSpec

    def _run_interface(self, runtime):
        from bidsfusion.preprocess.motion import framewise_displacement, realign
        from bidsfusion.preprocess.qc import residual_sd

        data, image = read_data(self.inputs.in_file, ndim=4)
        check_not_constant(self.inputs.in_file, data)
        corrected, params = realign(data, image.affine)
        header = image.header.copy()
        header.set_data_dtype(np.float32)
        self._results["out_file"] = str(
            save_image(corrected, image.affine, _out("realigned.nii.gz"), header)
        )
        self._results["mean_file"] = str(
            save_image(corrected.mean(axis=3), image.affine, _out("mean.nii.gz"))
        )
        self._results["confounds_file"] = write_confounds(
            params, framewise_displacement(params), _out("confounds.tsv")
        )
        self._results["sd_file"] = str(
            save_image(residual_sd(corrected), image.affine, _out("sd.nii.gz"))
        )
        return runtime


def check_not_constant(path: str, data: np.ndarray) -> None:
    """Refuse an image whose voxels all hold one value (an all-zero T1w, say): exit 65."""
    if data.size and data.min() == data.max():
        raise InputDataError(
            f"{path}: every voxel is {data.flat[0]:g}; the image holds no data to register"
        )


CONFOUND_COLUMNS = (
    "trans_x",
    "trans_y",
    "trans_z",
    "rot_x",
    "rot_y",
    "rot_z",
    "framewise_displacement",
)


def write_confounds(params: np.ndarray, fd: np.ndarray, path: str) -> str:
    """Write the (T, 6) rigid parameters and FD (T,) as a BIDS confounds TSV."""
    write_tsv(Path(path), CONFOUND_COLUMNS, np.column_stack([params, fd]).tolist())
    return path


class _FALFFInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="motion-corrected 4D BOLD")
    repetition_time = traits.Float(mandatory=True, desc="seconds")
    band = traits.Tuple(
        traits.Float(FALFF_BAND[0]),
        traits.Float(FALFF_BAND[1]),
        usedefault=True,
        desc="low, high (Hz)",
    )
    mask_file = File(exists=True, desc="native-space brain mask; default: an EPI mask of the mean")


class _MapOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the map in the input's native space")


class FALFF(SimpleInterface):
    """fALFF (DPABI definition) of a motion-corrected BOLD run, inside a brain mask.

    A band map of another measure subclasses it and sets :attr:`measure`
    (``measure(data[X,Y,Z,T], tr, band, mask) -> [X,Y,Z]``) and :attr:`out_name`."""

    input_spec = _FALFFInputSpec
    output_spec = _MapOutputSpec
    out_name = "falff.nii.gz"

    @staticmethod
    def measure(data, tr, band, mask):
        from bidsfusion.preprocess.falff import falff

        return falff(data, tr, band, mask)

    def _run_interface(self, runtime):
        from bidsfusion.preprocess.mask import epi_mask

        data, image = read_data(self.inputs.in_file, ndim=4)
        if self.inputs.mask_file:
            mask = read_data(self.inputs.mask_file, ndim=3)[0] > 0.5
        else:
            mask = epi_mask(data.mean(axis=3))
        result = self.measure(data, self.inputs.repetition_time, tuple(self.inputs.band), mask)
        self._results["out_file"] = str(save_image(result, image.affine, _out(self.out_name)))
        return runtime


class _RegisterInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3D image to register (T1w or mean BOLD)")
    skull_strip = traits.Enum(
        "template", "none", usedefault=True, desc="'none': the input is already skull-stripped"
    )
    search_rotations = traits.Bool(
        True, usedefault=True, desc="search tilts up to 20 degrees (False: upright start)"
    )
    scalp_guard = traits.Bool(
        True, usedefault=True, desc="keep the template brain off the scalp (False: mean BOLD)"
    )


class _TransformOutputSpec(TraitedSpec):
    transform_file = File(exists=True, desc="ITK transform (.tfm), fixed -> moving world")


class RegisterToTemplate(SimpleInterface):
    """7-dof similarity registration (mutual information) to the MNI152 template."""

    input_spec = _RegisterInputSpec
    output_spec = _TransformOutputSpec

    def _run_interface(self, runtime):
        from bidsfusion.preprocess.images import array_to_sitk
        from bidsfusion.preprocess.register import RegistrationFailedError, register_to_template

        data, image = read_data(self.inputs.in_file, ndim=3)
        check_not_constant(self.inputs.in_file, data)
        try:
            transform = register_to_template(
                array_to_sitk(data, image.affine),
                skull_stripped=self.inputs.skull_strip == "none",
                search_rotations=self.inputs.search_rotations,
                scalp_guard=self.inputs.scalp_guard,
            )
        except RegistrationFailedError as error:
            raise InputDataError(
                f"{self.inputs.in_file}: registration to the template failed ({error}); check "
                "the header's voxel sizes and orientation, and that the image is a head"
            ) from None
        self._results["transform_file"] = _write_transform(transform, "to_template.tfm")
        return runtime


class _CoregisterInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="mean BOLD")
    reference_file = File(exists=True, mandatory=True, desc="T1w of the same subject")


class Coregister(SimpleInterface):
    """Rigid (6-dof) mutual-information registration of the mean BOLD to the T1w."""

    input_spec = _CoregisterInputSpec
    output_spec = _TransformOutputSpec

    def _run_interface(self, runtime):
        from bidsfusion.preprocess.images import array_to_sitk
        from bidsfusion.preprocess.register import RegistrationFailedError, register_rigid

        moving, moving_image = read_data(self.inputs.in_file, ndim=3)
        fixed, fixed_image = read_data(self.inputs.reference_file, ndim=3)
        check_not_constant(self.inputs.reference_file, fixed)
        check_not_constant(self.inputs.in_file, moving)
        try:
            transform = register_rigid(
                array_to_sitk(moving, moving_image.affine),
                array_to_sitk(fixed, fixed_image.affine),
            )
        except RegistrationFailedError as error:
            raise InputDataError(
                f"{self.inputs.in_file}: the mean BOLD could not be registered to "
                f"{self.inputs.reference_file} ({error}); check both headers' origin, "
                "orientation and voxel sizes"
            ) from None
        self._results["transform_file"] = _write_transform(transform, "to_t1w.tfm")
        return runtime


def _write_transform(transform: sitk.Transform, name: str) -> str:
    path = _out(name)
    sitk.WriteTransform(transform, path)
    return path


class _ResampleInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3D image in its native space")
    transform_files = InputMultiObject(
        File(exists=True),
        mandatory=True,
        desc="transforms from the grid's world towards the image's world, applied in order",
    )
    apply_mask = traits.Bool(True, usedefault=True, desc="zero voxels outside the brain mask")


class _ResampleOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the image on the grid (masked when apply_mask)")
    unmasked_file = File(exists=True, desc="the image on the grid before masking")


class ResampleToGrid(SimpleInterface):
    """Resample once, through the composed transforms, onto the 3 mm 64^3 MNI grid."""

    input_spec = _ResampleInputSpec
    output_spec = _ResampleOutputSpec

    def _run_interface(self, runtime):
        from bidsfusion.preprocess.images import array_to_sitk
        from bidsfusion.preprocess.mask import grid_brain_mask
        from bidsfusion.preprocess.register import compose, resample_to_grid
        from bidsfusion.space import MNI_GRID_AFFINE

        data, image = read_data(self.inputs.in_file, ndim=3)
        transforms = [sitk.ReadTransform(f) for f in self.inputs.transform_files]
        result = resample_to_grid(array_to_sitk(data, image.affine), compose(*transforms))
        unmasked = save_image(result, MNI_GRID_AFFINE, _out("unmasked.nii.gz"), space="mni")
        self._results["unmasked_file"] = str(unmasked)
        if self.inputs.apply_mask:
            result = (result * grid_brain_mask()).astype(np.float32)
        self._results["out_file"] = str(
            save_image(result, MNI_GRID_AFFINE, _out("grid.nii.gz"), space="mni")
        )
        return runtime


class _GridMaskOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the template brain mask on the 64^3 grid (uint8)")


class GridBrainMask(SimpleInterface):
    """The MNI brain mask on the output grid (the ``--skull-strip template`` mask)."""

    input_spec = BaseInterfaceInputSpec
    output_spec = _GridMaskOutputSpec

    def _run_interface(self, runtime):
        from bidsfusion.preprocess.mask import grid_brain_mask
        from bidsfusion.space import MNI_GRID_AFFINE

        self._results["out_file"] = str(
            save_image(
                grid_brain_mask().astype(np.uint8),
                MNI_GRID_AFFINE,
                _out("mask.nii.gz"),
                space="mni",
            )
        )
        return runtime

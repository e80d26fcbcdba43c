"""The backend's own nodes between FSL's: FSL outputs turned into what bidsfusion expects.

Each writes into its node's working directory, as bidsfusion's interfaces do.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
)

from bidsfusion.api import (
    framewise_displacement,
    mni_template,
    read_data,
    residual_sd,
    save_image,
    transform_from_matrix,
    write_confounds,
)
from bidsfusion_fsl.matrices import motion_parameters, world_matrix

TEMPLATE_RESOLUTION_MM = 2
"""Voxel size of the MNI152 template FLIRT registers to (the built-in backend's)."""


def _out(name: str) -> str:
    return str(Path(os.getcwd()) / name)


class _MotionInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="the 4D BOLD series given to MCFLIRT")
    corrected_file = File(exists=True, mandatory=True, desc="MCFLIRT's corrected series")
    mat_files = InputMultiObject(File(exists=True), mandatory=True, desc="MCFLIRT's MAT_*")


class _MotionOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the corrected series (``corrected_file``)")
    mean_file = File(exists=True, desc="temporal mean of the corrected series")
    sd_file = File(exists=True, desc="temporal sd of the detrended corrected series (tSNR)")
    confounds_file = File(exists=True, desc="TSV: trans_x..rot_z (mm, rad), FD (mm)")


class MotionOutputs(SimpleInterface):
    """The outputs of the built-in realignment from an MCFLIRT run: its corrected series,
    their mean and residual sd, and the confounds."""

    input_spec = _MotionInputSpec
    output_spec = _MotionOutputSpec

    def _run_interface(self, runtime):
        data, image = read_data(self.inputs.corrected_file, ndim=4)
        matrices = [np.loadtxt(path) for path in self.inputs.mat_files]
        params = motion_parameters(matrices, nib.load(self.inputs.in_file))
        self._results["out_file"] = self.inputs.corrected_file
        self._results["mean_file"] = str(
            save_image(data.mean(axis=3), image.affine, _out("mean.nii.gz"))
        )
        self._results["sd_file"] = str(
            save_image(residual_sd(data), image.affine, _out("sd.nii.gz"))
        )
        self._results["confounds_file"] = write_confounds(
            params, framewise_displacement(params), _out("confounds.tsv")
        )
        return runtime


class _TransformInputSpec(BaseInterfaceInputSpec):
    matrix_file = File(exists=True, mandatory=True, desc="FLIRT's matrix (-omat)")
    source_file = File(exists=True, mandatory=True, desc="FLIRT's -in image")
    reference_file = File(exists=True, mandatory=True, desc="FLIRT's -ref image")


class _TransformOutputSpec(TraitedSpec):
    transform_file = File(exists=True, desc="ITK transform (.tfm), reference -> source world")


class ITKTransform(SimpleInterface):
    """A FLIRT matrix as the ITK transform bidsfusion resamples through: it maps the
    reference's world (the fixed image) to the source's (the moving image), LPS mm."""

    input_spec = _TransformInputSpec
    output_spec = _TransformOutputSpec

    def _run_interface(self, runtime):
        source, reference = nib.load(self.inputs.source_file), nib.load(self.inputs.reference_file)
        forward = world_matrix(np.loadtxt(self.inputs.matrix_file), source, reference)
        path = _out("transform.tfm")
        sitk.WriteTransform(transform_from_matrix(np.linalg.inv(forward)), path)
        self._results["transform_file"] = path
        return runtime


class _TemplateOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the skull-stripped MNI152 template")


class TemplateBrain(SimpleInterface):
    """bidsfusion's skull-stripped MNI152 template (:func:`mni_template`) as a file for FLIRT."""

    input_spec = BaseInterfaceInputSpec
    output_spec = _TemplateOutputSpec

    def _run_interface(self, runtime):
        path = _out(f"mni152_{TEMPLATE_RESOLUTION_MM}mm_brain.nii.gz")
        nib.save(mni_template(TEMPLATE_RESOLUTION_MM), path)
        self._results["out_file"] = path
        return runtime

"""The nipype workflows of the backend's steps: FSL's interfaces and the conversions.

Each workflow reads ``inputnode`` and ends in the node named :data:`RESULT`, whose
outputs are those of the built-in step it replaces
(:class:`bidsfusion.preprocess.backend.Backend`); nipype drops identity nodes when it
runs a workflow, so no ``outputnode``. Building one needs no FSL; running one does.
"""

from __future__ import annotations

from nipype.interfaces import fsl
from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from bidsfusion_fsl.dof import BOLD_TO_T1W_DOF, T1W_TO_TEMPLATE_DOF
from bidsfusion_fsl.nodes import ITKTransform, MotionOutputs, TemplateBrain

RESULT = "result"
"""The name of every workflow's last node, which gives the step's outputs."""
MCFLIRT_SETTINGS = {"ref_vol": 0, "cost": "normcorr", "save_mats": True, "save_rms": True}
"""Every volume to the first (as the built-in realignment), normalised correlation; the
per-volume matrices give the confounds, the RMS displacements stay in the work folder."""
BET_SETTINGS = {"frac": 0.5, "robust": True}
"""Fractional intensity threshold 0.5, robust brain centre estimation."""
OUTPUT_TYPE = "NIFTI_GZ"


def _inputnode(wf: pe.Workflow, fields: list[str]) -> pe.Node:
    node = pe.Node(IdentityInterface(fields=fields), name="inputnode")
    wf.add_nodes([node])
    return node


def realign_workflow(name: str = "fsl_realign") -> pe.Workflow:
    """``in_file`` (4D BOLD) -> MCFLIRT -> :class:`MotionOutputs`: ``out_file`` (the
    corrected series), ``mean_file``, ``sd_file``, ``confounds_file``."""
    wf = pe.Workflow(name=name)
    inputnode = _inputnode(wf, ["in_file"])
    mcflirt = pe.Node(fsl.MCFLIRT(output_type=OUTPUT_TYPE, **MCFLIRT_SETTINGS), name="mcflirt")
    result = pe.Node(MotionOutputs(), name=RESULT)
    wf.connect(
        [
            (inputnode, mcflirt, [("in_file", "in_file")]),
            (inputnode, result, [("in_file", "in_file")]),
            (mcflirt, result, [("out_file", "corrected_file"), ("mat_file", "mat_files")]),
        ]
    )
    return wf


def template_workflow(
    dof: int = T1W_TO_TEMPLATE_DOF, skull_strip: str = "template", name: str = "fsl_register"
) -> pe.Workflow:
    """``in_file`` (T1w, or mean BOLD) -> ``transform_file`` (MNI world -> its world).

    BET strips the skull first unless ``skull_strip`` is ``"none"`` (the input is a
    brain already); FLIRT registers the brain to the template with ``dof`` degrees of
    freedom; :class:`ITKTransform` converts its matrix.
    """
    wf = pe.Workflow(name=name)
    inputnode = _inputnode(wf, ["in_file"])
    template = pe.Node(TemplateBrain(), name="template")
    flirt = pe.Node(fsl.FLIRT(output_type=OUTPUT_TYPE, dof=dof), name="flirt")
    result = pe.Node(ITKTransform(), name=RESULT)
    brain: tuple[pe.Node, str] = (inputnode, "in_file")
    if skull_strip != "none":
        bet = pe.Node(fsl.BET(output_type=OUTPUT_TYPE, **BET_SETTINGS), name="bet")
        wf.connect(inputnode, "in_file", bet, "in_file")
        brain = (bet, "out_file")
    wf.connect(
        [
            (brain[0], flirt, [(brain[1], "in_file")]),
            (brain[0], result, [(brain[1], "source_file")]),
            (template, flirt, [("out_file", "reference")]),
            (template, result, [("out_file", "reference_file")]),
            (flirt, result, [("out_matrix_file", "matrix_file")]),
        ]
    )
    return wf


def coregister_workflow(name: str = "fsl_coregister") -> pe.Workflow:
    """``in_file`` (mean BOLD), ``reference_file`` (T1w) -> ``transform_file`` (T1w world
    -> BOLD world): BET strips the T1w, FLIRT registers the mean BOLD to its brain rigidly,
    :class:`ITKTransform` converts its matrix."""
    wf = pe.Workflow(name=name)
    inputnode = _inputnode(wf, ["in_file", "reference_file"])
    bet = pe.Node(fsl.BET(output_type=OUTPUT_TYPE, **BET_SETTINGS), name="bet")
    flirt = pe.Node(fsl.FLIRT(output_type=OUTPUT_TYPE, dof=BOLD_TO_T1W_DOF), name="flirt")
    result = pe.Node(ITKTransform(), name=RESULT)
    wf.connect(
        [
            (inputnode, bet, [("reference_file", "in_file")]),
            (inputnode, flirt, [("in_file", "in_file")]),
            (inputnode, result, [("in_file", "source_file")]),
            (bet, flirt, [("out_file", "reference")]),
            (bet, result, [("out_file", "reference_file")]),
            (flirt, result, [("out_matrix_file", "matrix_file")]),
        ]
    )
    return wf

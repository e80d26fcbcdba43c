"""The FSL backend's workflows, built without FSL: nodes, interfaces, settings, edges;
and its step interfaces against the built-in steps they replace."""

from __future__ import annotations

from pathlib import Path

import pytest
from bidsfusion_fsl import FSL
from bidsfusion_fsl.nodes import ITKTransform, MotionOutputs, TemplateBrain
from bidsfusion_fsl.workflows import coregister_workflow, realign_workflow, template_workflow
from nipype.interfaces import fsl
from nipype.pipeline import engine as pe

from bidsfusion.preprocess.backend import SIMPLEITK


def edges(wf: pe.Workflow) -> set[tuple[str, str, str, str]]:
    """Every connection as (source node, output, target node, input)."""
    return {
        (u.name, out, v.name, inp)
        for u, v, data in wf._graph.edges(data=True)
        for out, inp in data["connect"]
    }


def interface(wf: pe.Workflow, name: str):
    return wf.get_node(name).interface


def test_realign_is_mcflirt_to_the_first_volume_with_normcorr(tmp_path: Path) -> None:
    wf = realign_workflow()
    assert set(wf.list_node_names()) == {"inputnode", "mcflirt", "result"}
    mcflirt = interface(wf, "mcflirt")
    assert isinstance(mcflirt, fsl.MCFLIRT)
    assert isinstance(interface(wf, "result"), MotionOutputs)
    inputs = mcflirt.inputs
    assert (inputs.ref_vol, inputs.cost, inputs.save_mats, inputs.save_rms) == (
        0, "normcorr", True, True
    )  # fmt: skip
    (tmp_path / "bold.nii.gz").touch()
    mcflirt.inputs.in_file = str(tmp_path / "bold.nii.gz")
    cmdline = f"{mcflirt.cmdline} "
    assert all(f" {arg} " in cmdline for arg in ("-cost normcorr", "-refvol 0", "-mats", "-rmsabs"))
    assert edges(wf) == {
        ("inputnode", "in_file", "mcflirt", "in_file"),
        ("inputnode", "in_file", "result", "in_file"),
        ("mcflirt", "out_file", "result", "corrected_file"),
        ("mcflirt", "mat_file", "result", "mat_files"),
    }


def test_t1w_registration_is_bet_then_12_dof_flirt_to_the_template() -> None:
    wf = template_workflow()
    assert set(wf.list_node_names()) == {
        "inputnode", "bet", "template", "flirt", "result"
    }  # fmt: skip
    bet, flirt = interface(wf, "bet"), interface(wf, "flirt")
    assert isinstance(bet, fsl.BET) and isinstance(flirt, fsl.FLIRT)
    assert (bet.inputs.frac, bet.inputs.robust, flirt.inputs.dof) == (0.5, True, 12)
    assert isinstance(interface(wf, "template"), TemplateBrain)
    assert isinstance(interface(wf, "result"), ITKTransform)
    assert edges(wf) == {
        ("inputnode", "in_file", "bet", "in_file"),
        ("bet", "out_file", "flirt", "in_file"),
        ("bet", "out_file", "result", "source_file"),
        ("template", "out_file", "flirt", "reference"),
        ("template", "out_file", "result", "reference_file"),
        ("flirt", "out_matrix_file", "result", "matrix_file"),
    }


def test_a_skull_stripped_input_skips_bet() -> None:
    wf = template_workflow(dof=7, skull_strip="none")
    assert "bet" not in wf.list_node_names()
    assert interface(wf, "flirt").inputs.dof == 7
    assert ("inputnode", "in_file", "flirt", "in_file") in edges(wf)
    assert ("inputnode", "in_file", "result", "source_file") in edges(wf)


def test_coregistration_is_rigid_flirt_to_the_bet_stripped_t1w() -> None:
    wf = coregister_workflow()
    bet, flirt = interface(wf, "bet"), interface(wf, "flirt")
    assert (bet.inputs.frac, bet.inputs.robust, flirt.inputs.dof) == (0.5, True, 6)
    assert edges(wf) == {
        ("inputnode", "reference_file", "bet", "in_file"),
        ("inputnode", "in_file", "flirt", "in_file"),
        ("inputnode", "in_file", "result", "source_file"),
        ("bet", "out_file", "flirt", "reference"),
        ("bet", "out_file", "result", "reference_file"),
        ("flirt", "out_matrix_file", "result", "matrix_file"),
    }


SET_BY_THE_PARTICIPANT_LEVEL = {
    "realign": {"in_file"},
    "register_anat": {"in_file", "skull_strip"},
    "coregister": {"in_file", "reference_file"},
    "register_func": {"in_file", "skull_strip"},
}
"""The inputs :mod:`bidsfusion.preprocess.workflow` sets or connects on each step."""


@pytest.mark.parametrize("step", sorted(SET_BY_THE_PARTICIPANT_LEVEL))
def test_each_step_takes_and_gives_what_the_built_in_step_does(step: str) -> None:
    ours, builtin = getattr(FSL, step)(), getattr(SIMPLEITK, step)()
    assert SET_BY_THE_PARTICIPANT_LEVEL[step] <= set(ours.inputs.get())
    assert set(ours.output_spec().get()) == set(builtin.output_spec().get())


def test_bold_without_t1w_is_registered_with_7_dof() -> None:
    assert (FSL.register_anat().inputs.dof, FSL.register_func().inputs.dof) == (12, 7)

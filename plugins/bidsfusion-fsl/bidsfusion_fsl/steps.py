"""The backend's steps: one nipype interface each, with the inputs and outputs of the
built-in step it replaces (:class:`bidsfusion.preprocess.backend.Backend`).

Each runs its FSL workflow (:mod:`bidsfusion_fsl.workflows`) in its node's working
directory, so the participant level caches and schedules it as one step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    traits,
)
from nipype.pipeline import engine as pe

from bidsfusion.api import (
    BidsFusionError,
    Coregister,
    Realign,
    RegisterToTemplate,
    crash_report,
    one_line,
)
from bidsfusion_fsl.availability import check_fsl
from bidsfusion_fsl.dof import T1W_TO_TEMPLATE_DOF
from bidsfusion_fsl.workflows import (
    RESULT,
    coregister_workflow,
    realign_workflow,
    template_workflow,
)


def run_steps(wf: pe.Workflow, **inputs: Any) -> dict[str, Any]:
    """Run ``wf`` (nipype's Linear plugin, in the current directory) on its ``inputnode``'s
    ``inputs``; the outputs of its :data:`~bidsfusion_fsl.workflows.RESULT` node by name.

    Raises :class:`~bidsfusion.errors.InputMissingError` without FSL, and the one-line
    error of the first failed step (:func:`bidsfusion.preprocess.engine.crash_report`).
    """
    check_fsl()
    crash_dir = Path(os.getcwd()) / "crash"
    for old in crash_dir.glob("crash-*.txt"):
        old.unlink()
    wf.base_dir = os.getcwd()
    wf.config["execution"].update(
        {"crashdump_dir": str(crash_dir), "crashfile_format": "txt", "stop_on_first_crash": True}
    )
    for key, value in inputs.items():
        setattr(wf.get_node("inputnode").inputs, key, value)
    try:
        graph = wf.run(plugin="Linear")
    except RuntimeError as exc:
        crashes = sorted(crash_dir.glob("crash-*.txt"))
        if not crashes:
            raise BidsFusionError(f"{wf.name} failed: {one_line(exc)}") from exc
        raise crash_report(crashes[0])[1] from None
    result = next(node for node in graph.nodes() if node.name == RESULT)
    return result.result.outputs.get()


class FSLRealign(SimpleInterface):
    """Motion correction with MCFLIRT (:func:`~bidsfusion_fsl.workflows.realign_workflow`)."""

    input_spec = Realign.input_spec  # the built-in step's inputs and outputs
    output_spec = Realign.output_spec

    def _run_interface(self, runtime):
        self._results.update(run_steps(realign_workflow(), in_file=self.inputs.in_file))
        return runtime


class _RegisterInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3D image to register (T1w or mean BOLD)")
    skull_strip = traits.Enum(
        "template", "none", usedefault=True, desc="'none': the input is already skull-stripped"
    )
    dof = traits.Int(T1W_TO_TEMPLATE_DOF, usedefault=True, desc="FLIRT's degrees of freedom")


class FSLRegisterToTemplate(SimpleInterface):
    """BET, then FLIRT to the MNI152 template
    (:func:`~bidsfusion_fsl.workflows.template_workflow`)."""

    input_spec = _RegisterInputSpec
    output_spec = RegisterToTemplate.output_spec

    def _run_interface(self, runtime):
        wf = template_workflow(self.inputs.dof, self.inputs.skull_strip)
        self._results.update(run_steps(wf, in_file=self.inputs.in_file))
        return runtime


class FSLCoregister(SimpleInterface):
    """Rigid FLIRT of the mean BOLD to the BET-stripped T1w
    (:func:`~bidsfusion_fsl.workflows.coregister_workflow`)."""

    input_spec = Coregister.input_spec
    output_spec = Coregister.output_spec

    def _run_interface(self, runtime):
        inputs = {"in_file": self.inputs.in_file, "reference_file": self.inputs.reference_file}
        self._results.update(run_steps(coregister_workflow(), **inputs))
        return runtime

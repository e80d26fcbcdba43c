"""The participant workflow: one nipype workflow per subject, one node per step.

``init_subject_wf`` turns a :class:`SubjectPlan` (which scans, where each
output goes, what its sidecar says) into nodes: per T1w, registration to the
template, resampling and masking; per BOLD run, motion correction, each bold
modality's native map (fALFF), coregistration to the subject's T1w, and one
resampling onto the MNI grid through the composed transforms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nipype.interfaces.utility import Merge
from nipype.pipeline import engine as pe

from bidsfusion.modality import FALFF_BAND, Modality
from bidsfusion.preprocess.backend import Backend
from bidsfusion.preprocess.figures import QCFigure
from bidsfusion.preprocess.interfaces import GridBrainMask, ResampleToGrid
from bidsfusion.preprocess.sink import DerivativeSink


@dataclass(frozen=True)
class Output:
    """One file to publish: its destination and sidecar (``None``: no sidecar)."""

    path: Path
    sidecar: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class AnatJob:
    """A T1w scan (of ``session``): registered for its own outputs and/or as a BOLD reference.

    ``outputs`` keys: ``T1w``, ``mask``, ``xfm``, ``figure``; empty when the
    derivatives exist already and the scan only serves as a reference.
    """

    key: str
    t1w: Path
    session: str | None = None
    outputs: Mapping[str, Output] = field(default_factory=dict)


@dataclass(frozen=True)
class FuncJob:
    """A BOLD run: its TR, the T1w job it coregisters to (``None``: straight to MNI).

    ``outputs`` keys: each bold modality's name, ``<name>_figure``, ``confounds``
    and ``motion_figure``.
    """

    key: str
    bold: Path
    repetition_time: float
    anat_key: str | None
    outputs: Mapping[str, Output] = field(default_factory=dict)


@dataclass(frozen=True)
class SubjectPlan:
    """Everything one subject's workflow does."""

    subject: str
    anat: Sequence[AnatJob]
    func: Sequence[FuncJob]


def init_subject_wf(
    plan: SubjectPlan,
    backend: Backend,
    modalities: Sequence[Modality],
    skull_strip: str = "template",
    band: tuple[float, float] = FALFF_BAND,
) -> pe.Workflow:
    """The nipype workflow of one subject, ``sub_<label>`` (nest it in a parent to run)."""
    wf = pe.Workflow(name=subject_workflow_name(plan.subject))
    anat_nodes = {job.key: _add_anat(wf, job, backend, skull_strip) for job in plan.anat}
    bold_modalities = [m for m in modalities if m.source == "bold" and m.map_interface]
    for job in plan.func:
        _add_func(wf, job, backend, anat_nodes.get(job.anat_key), bold_modalities, band)
    return wf


def subject_workflow_name(subject: str) -> str:
    """``sub_<label>``: the name of a subject's workflow, a part of its nodes' full names."""
    return f"sub_{subject}"


HEAVY_MEM_GB = 1.1
"""nipype's memory estimate for registration, realignment and fALFF nodes: the peak
resident memory of a worker on a 1 mm 176x240x256 T1w and a 64x64x36x200 BOLD run
(1.06 GB, benchmarks/participant.py). ``--mem`` caps the sum of the estimates of
the nodes running at once; other nodes keep nipype's default."""
DEFAULT_MEM_GB = 0.2
"""nipype's own default estimate."""


def _node(
    wf: pe.Workflow,
    interface: Any,
    name: str,
    overwrite: bool | None = None,
    quick: bool = False,
    heavy: bool = False,
    **inputs: Any,
) -> pe.Node:
    """Add a node; ``quick`` ones (copies, lists) run in the scheduler's own process,
    ``heavy`` ones are scheduled with :data:`HEAVY_MEM_GB`."""
    node = pe.Node(
        interface,
        name=name,
        overwrite=overwrite,
        run_without_submitting=quick,
        mem_gb=HEAVY_MEM_GB if heavy else DEFAULT_MEM_GB,
    )
    for key, value in inputs.items():
        setattr(node.inputs, key, value)
    wf.add_nodes([node])
    return node


def _sink(
    wf: pe.Workflow, source: pe.Node, field_name: str, output: Output | None, name: str
) -> None:
    if output is None:
        return
    sidecar = json.dumps(dict(output.sidecar), default=str) if output.sidecar else ""
    # sinks always run: a cached sink would not rewrite an output deleted since
    sink = _node(
        wf,
        DerivativeSink(),
        name,
        overwrite=True,
        quick=True,
        out_path=str(output.path),
        sidecar=sidecar,
    )
    wf.connect(source, field_name, sink, "in_file")


def _add_anat(wf: pe.Workflow, job: AnatJob, backend: Backend, skull_strip: str) -> pe.Node:
    register = _node(
        wf,
        backend.register_anat(),
        f"{job.key}_register",
        heavy=True,
        in_file=str(job.t1w),
        skull_strip=skull_strip,
    )
    if not job.outputs:
        return register
    resample = _node(
        wf, ResampleToGrid(), f"{job.key}_resample", in_file=str(job.t1w), apply_mask=True
    )
    chain = _node(wf, Merge(1), f"{job.key}_chain", quick=True)
    wf.connect(register, "transform_file", chain, "in1")
    wf.connect(chain, "out", resample, "transform_files")
    mask = _node(wf, GridBrainMask(), f"{job.key}_mask")
    figure = _node(
        wf,
        QCFigure(),
        f"{job.key}_figure",
        kind="registration",
        title=f"{job.t1w.name} in MNI space (red: template brain mask)",
    )
    wf.connect(resample, "out_file", figure, "in_file")
    _sink(wf, resample, "out_file", job.outputs.get("T1w"), f"{job.key}_ds_t1w")
    _sink(wf, mask, "out_file", job.outputs.get("mask"), f"{job.key}_ds_mask")
    _sink(wf, register, "transform_file", job.outputs.get("xfm"), f"{job.key}_ds_xfm")
    _sink(wf, figure, "out_file", job.outputs.get("figure"), f"{job.key}_ds_figure")
    return register


def _add_func(
    wf: pe.Workflow,
    job: FuncJob,
    backend: Backend,
    anat: pe.Node | None,
    modalities: Sequence[Modality],
    band: tuple[float, float],
) -> None:
    realign = _node(wf, backend.realign(), f"{job.key}_realign", heavy=True, in_file=str(job.bold))
    chain = _bold_to_template(wf, job, backend, realign, anat)
    motion_figure = _node(
        wf,
        QCFigure(),
        f"{job.key}_motion_figure",
        kind="motion",
        title=f"{job.bold.name}: head motion",
    )
    wf.connect(realign, "confounds_file", motion_figure, "in_file")
    _sink(wf, realign, "confounds_file", job.outputs.get("confounds"), f"{job.key}_ds_conf")
    _sink(wf, motion_figure, "out_file", job.outputs.get("motion_figure"), f"{job.key}_ds_mfig")
    for modality in modalities:
        if modality.name not in job.outputs:
            continue
        native = _node(
            wf,
            modality.map_interface(**modality.parameters),
            f"{job.key}_{modality.name}",
            heavy=True,
            repetition_time=job.repetition_time,
            band=band,
        )
        wf.connect(realign, "out_file", native, "in_file")
        resample = _node(
            wf, ResampleToGrid(), f"{job.key}_{modality.name}_resample", apply_mask=True
        )
        wf.connect(native, "out_file", resample, "in_file")
        wf.connect(chain, "out", resample, "transform_files")
        figure = _node(
            wf,
            QCFigure(),
            f"{job.key}_{modality.name}_figure",
            kind="registration",
            title=f"{modality.name} of {job.bold.name} in MNI space",
        )
        wf.connect(resample, "out_file", figure, "in_file")
        _sink(wf, resample, "out_file", job.outputs[modality.name], f"{job.key}_ds_{modality.name}")
        _sink(
            wf,
            figure,
            "out_file",
            job.outputs.get(f"{modality.name}_figure"),
            f"{job.key}_ds_{modality.name}_figure",
        )


def _bold_to_template(
    wf: pe.Workflow, job: FuncJob, backend: Backend, realign: pe.Node, anat: pe.Node | None
) -> pe.Node:
    """A node whose ``out`` lists the transforms grid world -> T1w world -> bold world."""
    if anat is None:
        register = _node(
            wf, backend.register_func(), f"{job.key}_register", heavy=True, skull_strip="template"
        )
        wf.connect(realign, "mean_file", register, "in_file")
        chain = _node(wf, Merge(1), f"{job.key}_chain", quick=True)
        wf.connect(register, "transform_file", chain, "in1")
        return chain
    coregister = _node(
        wf, backend.coregister(), f"{job.key}_coregister", reference_file=str(_input_file(anat))
    )
    wf.connect(realign, "mean_file", coregister, "in_file")
    chain = _node(wf, Merge(2), f"{job.key}_chain", quick=True)
    wf.connect(anat, "transform_file", chain, "in1")
    wf.connect(coregister, "transform_file", chain, "in2")
    return chain


def _input_file(node: pe.Node) -> str:
    return node.inputs.in_file

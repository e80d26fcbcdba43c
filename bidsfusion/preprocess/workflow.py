"""The participant workflow: one nipype workflow per subject, one node per step.

``init_subject_wf`` turns a :class:`SubjectPlan` (which scans, where each
output goes, what its sidecar says) into nodes: per T1w, registration to the
template, resampling and masking, and each T1w-derived modality's map; per BOLD
run, motion correction, each bold modality's native map (fALFF), coregistration
to the subject's T1w, and one resampling onto the MNI grid through the composed
transforms. Each map is made by its modality's own interface with its own inputs
(the plan's ``maps``). Every scan ends in
a QC node (:mod:`~bidsfusion.preprocess.qc`) and one sink that publishes all its
outputs as a set (:mod:`~bidsfusion.preprocess.sink`): none if any step failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nipype.interfaces.utility import Merge
from nipype.pipeline import engine as pe

from bidsfusion.modality import Modality
from bidsfusion.preprocess.backend import Backend
from bidsfusion.preprocess.figures import QCFigure
from bidsfusion.preprocess.interfaces import GridBrainMask, ResampleToGrid
from bidsfusion.preprocess.outputs import Output
from bidsfusion.preprocess.plan import AnatJob, FuncJob, SubjectPlan
from bidsfusion.preprocess.qc import ScanQC
from bidsfusion.preprocess.sink import ScanSink


def init_subject_wf(
    plan: SubjectPlan,
    backend: Backend,
    modalities: Sequence[Modality],
    skull_strip: str = "template",
) -> pe.Workflow:
    """The nipype workflow of one subject, ``sub_<label>`` (nest it in a parent to run);
    ``modalities``: the registered ones, whose maps the plan's jobs list."""
    wf = pe.Workflow(name=subject_workflow_name(plan.subject))
    by_name = {m.name: m for m in modalities}
    anat_nodes = {job.key: _add_anat(wf, job, backend, skull_strip, by_name) for job in plan.anat}
    for job in plan.func:
        _add_func(wf, job, backend, anat_nodes.get(job.anat_key), by_name)
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
    """Add a node; ``quick`` ones (lists, sinks, resampling, masks, QC: 0.3 s at most, on a
    1 mm T1w) run in the scheduler's own process, without a round trip to a worker;
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
    wf: pe.Workflow,
    key: str,
    outputs: Mapping[str, Output],
    sources: Mapping[str, tuple[pe.Node, str]],
    qc: pe.Node,
) -> None:
    """One sink publishing every output of a scan as a set (none if any step failed);
    ``sources[name]`` is the (node, field) that makes ``outputs[name]``."""
    names = list(outputs)
    gather = _node(wf, Merge(len(names)), f"{key}_outputs", quick=True)
    for index, name in enumerate(names, start=1):
        node, field_name = sources[name]
        wf.connect(node, field_name, gather, f"in{index}")
    # sinks always run: a cached sink would not rewrite an output deleted since
    sink = _node(
        wf,
        ScanSink(),
        f"{key}_sink",
        overwrite=True,
        quick=True,
        out_paths=[str(outputs[name].path) for name in names],
        sidecars=[_sidecar_text(outputs[name]) for name in names],
    )
    wf.connect(gather, "out", sink, "in_files")
    wf.connect(qc, "out_file", sink, "qc_file")


def _figure(
    wf: pe.Workflow, name: str, source: tuple[pe.Node, str], kind: str, title: str
) -> pe.Node:
    """A QC figure node (``kind`` registration or motion) drawing ``source``'s file."""
    figure = _node(wf, QCFigure(), name, kind=kind, title=title)
    wf.connect(*source, figure, "in_file")
    return figure


def _sidecar_text(output: Output) -> str:
    return json.dumps(dict(output.sidecar), default=str) if output.sidecar is not None else ""


def _add_anat(
    wf: pe.Workflow,
    job: AnatJob,
    backend: Backend,
    skull_strip: str,
    modalities: Mapping[str, Modality],
) -> pe.Node:
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
        wf,
        ResampleToGrid(),
        f"{job.key}_resample",
        quick=True,
        in_file=str(job.t1w),
        apply_mask=True,
    )
    chain = _node(wf, Merge(1), f"{job.key}_chain", quick=True)
    wf.connect(register, "transform_file", chain, "in1")
    wf.connect(chain, "out", resample, "transform_files")
    mask = _node(wf, GridBrainMask(), f"{job.key}_mask", quick=True)
    title = f"{job.t1w.name} in MNI space (red: template brain mask)"
    figure = _figure(wf, f"{job.key}_figure", (resample, "out_file"), "registration", title)
    qc = _node(wf, ScanQC(), f"{job.key}_qc", quick=True, source="T1w")
    wf.connect(resample, "unmasked_file", qc, "grid_file")
    sources = {
        "T1w": (resample, "out_file"),
        "mask": (mask, "out_file"),
        "xfm": (register, "transform_file"),
        "figure": (figure, "out_file"),
    }
    for name, inputs in job.maps.items():
        map_nodes = _add_map(wf, job.key, job.t1w, modalities[name], inputs, str(job.t1w), chain)
        sources.update(map_nodes)
    _sink(wf, job.key, job.outputs, sources, qc)
    return register


def _add_func(
    wf: pe.Workflow,
    job: FuncJob,
    backend: Backend,
    anat: pe.Node | None,
    modalities: Mapping[str, Modality],
) -> None:
    realign = _node(wf, backend.realign(), f"{job.key}_realign", heavy=True, in_file=str(job.bold))
    chain = _bold_to_template(wf, job, backend, realign, anat)
    title = f"{job.bold.name}: head motion"
    motion_figure = _figure(
        wf, f"{job.key}_motion_figure", (realign, "confounds_file"), "motion", title
    )
    sources = {
        "confounds": (realign, "confounds_file"),
        "motion_figure": (motion_figure, "out_file"),
    }
    for name, inputs in job.maps.items():
        if name in job.outputs:
            native_inputs = {**inputs, "repetition_time": job.repetition_time}
            map_nodes = _add_map(
                wf, job.key, job.bold, modalities[name], native_inputs, (realign, "out_file"), chain
            )
            sources.update(map_nodes)
    mean = _node(wf, ResampleToGrid(), f"{job.key}_mean_resample", quick=True, apply_mask=False)
    wf.connect(realign, "mean_file", mean, "in_file")
    wf.connect(chain, "out", mean, "transform_files")
    qc = _node(wf, ScanQC(), f"{job.key}_qc", quick=True, source="bold")
    wf.connect(mean, "out_file", qc, "grid_file")
    for field_name in ("confounds_file", "mean_file", "sd_file"):
        wf.connect(realign, field_name, qc, field_name)
    _sink(wf, job.key, job.outputs, sources, qc)


def _add_map(
    wf: pe.Workflow,
    key: str,
    scan: Path,
    modality: Modality,
    inputs: Mapping[str, Any],
    source: tuple[pe.Node, str] | str,
    chain: pe.Node,
) -> dict[str, tuple[pe.Node, str]]:
    """The nodes of one modality's map of ``scan``: its native map of ``source`` (a file, or
    a node's output) made by the modality's interface with ``inputs``, one masked
    resampling through ``chain``'s transforms, its figure."""
    interface = modality.map_interface(**inputs)  # the inputs set on the node too: an
    # interface that adds its input traits after construction (nipype's Function) drops them
    native = _node(wf, interface, f"{key}_{modality.name}", heavy=True, **inputs)
    if isinstance(source, str):
        native.inputs.in_file = source
    else:
        wf.connect(*source, native, "in_file")
    resample = _node(
        wf, ResampleToGrid(), f"{key}_{modality.name}_resample", quick=True, apply_mask=True
    )
    wf.connect(native, "out_file", resample, "in_file")
    wf.connect(chain, "out", resample, "transform_files")
    title = f"{modality.name} of {scan.name} in MNI space"
    figure = _figure(
        wf, f"{key}_{modality.name}_figure", (resample, "out_file"), "registration", title
    )
    return {modality.name: (resample, "out_file"), f"{modality.name}_figure": (figure, "out_file")}


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

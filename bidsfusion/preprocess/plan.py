"""Planning one subject: which scans to process, where each output goes, what it records.

Bad scans are refused here, before any workflow runs, with a one-line reason
(:mod:`bidsfusion.preprocess.inputs`). A scan whose published outputs are
complete, intact and carry the fingerprint of the current settings, inputs and
versions (:mod:`bidsfusion.preprocess.verify`) is not planned again; any other
is redone as a whole.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bidsfusion import __version__
from bidsfusion.bids import (
    FINGERPRINT_KEY,
    GRID_RES,
    TEMPLATE_SPACE,
    derivative_dir,
    derivative_name,
    scan_metadata,
    session_days,
    source_entities,
)
from bidsfusion.config import RunConfig
from bidsfusion.errors import BidsFusionError, InputDataError
from bidsfusion.fingerprint import digest, file_stamp
from bidsfusion.modality import Modality
from bidsfusion.nifti import is_singleton_4d, load_image
from bidsfusion.preprocess.backend import Backend
from bidsfusion.preprocess.inputs import check_image, repetition_time
from bidsfusion.preprocess.outputs import Output
from bidsfusion.preprocess.verify import set_problem

log = logging.getLogger("bidsfusion.participant")

RESOLUTION = "3 mm isotropic, 64x64x64"
TEMPLATE = "MNI152NLin2009aSym: ICBM 2009a nonlinear symmetric T1 template as bundled with nilearn"
IMAGE_EXTENSIONS = [".nii", ".nii.gz"]
MOTION = "rigid (6 dof) to the first volume"


@dataclass(frozen=True)
class AnatJob:
    """A T1w scan (of ``session``): registered for its own outputs and/or as a BOLD reference.

    ``outputs`` keys: ``T1w``, ``mask``, ``xfm``, ``figure``, and each T1w-derived
    modality's name and ``<name>_figure``; empty when the derivatives exist already
    and the scan only serves as a reference. ``fingerprint`` identifies what its
    outputs are made from; ``maps`` holds each T1w-derived map's interface inputs.
    """

    key: str
    t1w: Path
    session: str | None = None
    fingerprint: str = ""
    outputs: Mapping[str, Output] = field(default_factory=dict)
    maps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class FuncJob:
    """A BOLD run: its TR, the T1w job it coregisters to (``None``: straight to MNI).

    ``outputs`` keys: each bold modality's name, ``<name>_figure``, ``confounds``
    and ``motion_figure``; ``maps`` holds each bold map's interface inputs.
    """

    key: str
    bold: Path
    repetition_time: float
    anat_key: str | None
    fingerprint: str = ""
    outputs: Mapping[str, Output] = field(default_factory=dict)
    maps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class SubjectPlan:
    """Everything one subject's workflow does."""

    subject: str
    anat: Sequence[AnatJob]
    func: Sequence[FuncJob]


def plan_subject(
    layout: Any,
    config: RunConfig,
    subject: str,
    sessions: Sequence[str],
    modalities: Sequence[Modality],
    backend: Backend,
) -> tuple[SubjectPlan, list[BidsFusionError]]:
    """The work left for ``subject`` and the scans refused (each with its error).

    ``backend`` (its name and description) is part of every fingerprint: outputs made by
    another backend or an earlier method are redone."""
    filters: dict[str, Any] = {"subject": subject, "extension": IMAGE_EXTENSIONS}
    if sessions:
        filters["session"] = list(sessions)
    problems: list[BidsFusionError] = []
    anat_jobs = {}
    t1ws = layout.get(suffix="T1w", datatype="anat", **filters)
    bolds = layout.get(suffix="bold", datatype="func", task=config.participant.task, **filters)
    t1ws, bolds = (_distinct(scans, problems) for scans in (t1ws, bolds))
    for t1w in t1ws:
        try:
            job = _anat_job(Path(t1w.path), config, modalities, backend)
            anat_jobs[_key("anat", t1w.path)] = job
        except BidsFusionError as error:
            problems.append(error)
    days = session_days(config.bids_dir, subject)
    func_jobs = []
    for bold in bolds:
        try:
            job = _func_job(Path(bold.path), config, anat_jobs, days, modalities, backend)
        except BidsFusionError as error:
            problems.append(error)
            continue
        if job.outputs:
            func_jobs.append(job)
    needed = {job.anat_key for job in func_jobs}
    anat = [job for key, job in anat_jobs.items() if job.outputs or key in needed]
    return SubjectPlan(subject, anat, func_jobs), problems


REPLACED_ENTITIES = ("space", "res", "desc")
"""Entities of a source that its derivatives' names replace (the grid's, the map's)."""


def _distinct(scans: Sequence[Any], problems: list[BidsFusionError]) -> list[Any]:
    """The scans whose derivatives get names of their own; scans that differ only in
    :data:`REPLACED_ENTITIES` (raw files that are already preprocessed, ``space-X_desc-
    preproc``) would overwrite each other's derivatives: each is refused, naming the others."""
    by_name: dict[str, list[Any]] = {}
    for scan in scans:
        entities = {k: v for k, v in source_entities(scan.path).items()
                    if k not in REPLACED_ENTITIES}  # fmt: skip
        by_name.setdefault(derivative_name(entities, "x", ".nii.gz"), []).append(scan)
    kept = []
    for group in by_name.values():
        if len(group) == 1:
            kept += group
            continue
        for scan in group:
            others = ", ".join(Path(o.path).name for o in group if o is not scan)
            problems.append(InputDataError(
                f"{scan.path}: it and {others} differ only in {'/'.join(REPLACED_ENTITIES)} "
                "entities, which the derivatives' names replace, so their derivatives would "
                "overwrite each other; keep one of them in BIDS_DIR"
            ))  # fmt: skip
    return kept


def _key(prefix: str, path: str | Path) -> str:
    stem = Path(path).name.split(".")[0]
    return f"{prefix}_" + re.sub(r"[^A-Za-z0-9]", "_", stem)


def _source(path: Path, config: RunConfig) -> str:
    return "bids:raw:" + path.relative_to(config.bids_dir).as_posix()


def _software() -> dict[str, str]:
    import nipype
    import SimpleITK

    return {
        "bidsfusion": __version__,
        "nipype": nipype.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
    }


def _anat_record(
    t1w: Path,
    config: RunConfig,
    maps: Mapping[str, Mapping[str, Any]],
    modalities: Sequence[Modality],
    backend: Backend,
) -> dict[str, Any]:
    """What a T1w's outputs are made from: versions, options, the T1w-derived maps, the input."""
    return {
        "software": _software(),
        "backend": {"name": backend.name, "description": backend.description},
        "skull_strip": config.participant.skull_strip,
        "maps": _maps_record(maps, modalities),
        "t1w": file_stamp(t1w, config.bids_dir),
    }


def map_modalities(modalities: Sequence[Modality], source: str) -> list[Modality]:
    """The modalities whose map is computed from ``source`` (``T1w`` or ``bold``)."""
    return [m for m in modalities if m.source == source and m.map_interface]


def _maps_record(
    maps: Mapping[str, Mapping[str, Any]], modalities: Sequence[Modality]
) -> dict[str, Any]:
    """Each map's inputs and entities, for a fingerprint."""
    entities = {m.name: dict(m.entities) for m in modalities}
    return {name: {"inputs": dict(inputs), **entities[name]} for name, inputs in maps.items()}


def _camel(name: str) -> str:
    """A sidecar key from an input name: ``band`` -> ``Band``, ``low_cut`` -> ``LowCut``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _map_outputs(
    modality: Modality,
    inputs: Mapping[str, Any],
    folder: Path,
    figures: Path,
    grid: Mapping[str, str],
    common: Mapping[str, Any],
) -> dict[str, Output]:
    """A map's output on the grid (sidecar: ``common``, what the map is, its parameters
    and settings) and its registration figure (``desc-registration``, or
    ``desc-registration<Desc>`` for a map named with its own ``desc``)."""
    stat = {key: value for key, value in modality.entities.items() if key != "suffix"}
    suffix = modality.entities["suffix"]
    figure = {**grid, **stat, "desc": "registration" + _camel(stat.get("desc", ""))}
    settings = {k: v for k, v in inputs.items() if k not in modality.parameters}
    sidecar = {
        **common,
        "Description": modality.description,
        "Resolution": RESOLUTION,
        "Template": TEMPLATE,
        "SpatialReference": TEMPLATE_SPACE,
        **{_camel(k): list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "Parameters": dict(modality.parameters),
    }
    return {
        modality.name: Output(
            folder / derivative_name({**grid, **stat}, suffix, ".nii.gz"), sidecar
        ),
        f"{modality.name}_figure": Output(figures / derivative_name(figure, suffix, ".png")),
    }


def _pending(
    outputs: dict[str, Output], fingerprint: str, what: Path, n_volumes: int | None = None
) -> dict[str, Output]:
    """``outputs`` when they must be (re)made, else an empty dict; logs why a set is redone."""
    problem = set_problem(outputs, fingerprint, n_volumes)
    if problem is None:
        return {}
    if any(output.path.exists() for output in outputs.values()):
        log.info("%s: redoing its outputs: %s", what.name, problem)
    return outputs


def _anat_job(
    t1w: Path, config: RunConfig, modalities: Sequence[Modality], backend: Backend
) -> AnatJob:
    image = load_image(t1w)
    check_image(t1w, image, ndim=3)
    maps = {m.name: m.inputs(config.participant) for m in map_modalities(modalities, "T1w")}
    fingerprint = digest(_anat_record(t1w, config, maps, modalities, backend))
    entities = source_entities(t1w)
    folder = derivative_dir(config.output_dir, entities["sub"], entities.get("ses"), "anat")
    grid = {**entities, "space": TEMPLATE_SPACE, "res": GRID_RES}
    common = {
        "Sources": [_source(t1w, config)],
        "Resolution": RESOLUTION,
        "Template": TEMPLATE,
        "SpatialReference": TEMPLATE_SPACE,
        "Software": _software(),
        "Backend": backend.description,
        FINGERPRINT_KEY: fingerprint,
    }
    registration = {
        "Registration": "T1w -> template; resampled once onto the grid",
        "SkullStripping": config.participant.skull_strip,
    }
    if is_singleton_4d(image.shape):
        registration["InputConformed"] = "a 4D image of one volume, read as its 3D volume"
    figures = config.output_dir / f"sub-{entities['sub']}" / "figures"
    outputs = {
        "T1w": Output(
            folder / derivative_name({**grid, "desc": "brain"}, "T1w", ".nii.gz"),
            {**common, **registration, "SkullStripped": True},
        ),
        "mask": Output(
            folder / derivative_name({**grid, "desc": "brain"}, "mask", ".nii.gz"),
            {**common, "Type": "Brain", "Description": "template brain mask"},
        ),
        "xfm": Output(
            folder
            / derivative_name(
                {**entities, "from": "T1w", "to": TEMPLATE_SPACE, "mode": "image"}, "xfm", ".tfm"
            ),
            {**common, **registration},
        ),
        "figure": Output(
            figures / derivative_name({**grid, "desc": "registration"}, "T1w", ".png")
        ),
    }
    by_name = {m.name: m for m in modalities}
    for name, inputs in maps.items():
        sidecar = {**common, **registration, "SkullStripped": True}
        outputs.update(_map_outputs(by_name[name], inputs, folder, figures, grid, sidecar))
    return AnatJob(
        _key("anat", t1w),
        t1w,
        entities.get("ses"),
        fingerprint,
        _pending(outputs, fingerprint, t1w),
        maps,
    )


def _func_job(
    bold: Path,
    config: RunConfig,
    anat_jobs: Mapping[str, AnatJob],
    days: Mapping[str, float],
    modalities: Sequence[Modality],
    backend: Backend,
) -> FuncJob:
    """The run's job; its ``outputs`` are empty when its derivatives are complete."""
    image = load_image(bold)
    check_image(bold, image, ndim=4)
    tr = repetition_time(bold, scan_metadata(bold, config.bids_dir))
    maps = {m.name: m.inputs(config.participant) for m in map_modalities(modalities, "bold")}
    for modality in map_modalities(modalities, "bold"):
        if modality.check is not None:
            modality.check(bold, image.shape[3], tr, maps[modality.name])
    anat_key = _reference_t1w(bold, anat_jobs, days)
    anat = anat_jobs.get(anat_key) if anat_key else None
    record = {
        "software": _software(),
        "backend": {"name": backend.name, "description": backend.description},
        "maps": _maps_record(maps, modalities),
        "repetition_time": tr,
        "bold": file_stamp(bold, config.bids_dir),
        "reference": anat.fingerprint if anat else None,
    }
    fingerprint = digest(record)
    by_name = {m.name: m for m in modalities}
    chosen = [(by_name[name], inputs) for name, inputs in maps.items()]
    outputs = _func_outputs(bold, config, chosen, tr, anat, fingerprint, backend)
    pending = _pending(outputs, fingerprint, bold, n_volumes=image.shape[3])
    return FuncJob(_key("func", bold), bold, tr, anat_key, fingerprint, pending, maps)


def _reference_t1w(
    bold: Path, anat_jobs: Mapping[str, AnatJob], days: Mapping[str, float]
) -> str | None:
    """The T1w job to coregister to: same session, else nearest in days, else ``None``."""
    if not anat_jobs:
        log.warning("%s: the subject has no T1w; BOLD is registered directly to the template", bold)
        return None
    session = source_entities(bold).get("ses")
    sessions = {key: job.session for key, job in anat_jobs.items()}
    same = [key for key, ses in sessions.items() if ses == session]
    if same:
        return sorted(same)[0]
    here = days.get(session, 0.0) if session else 0.0
    return min(
        sessions,
        key=lambda key: (
            abs(days.get(sessions[key] or "", 0.0) - here),
            days.get(sessions[key] or "", 0.0),
            key,
        ),
    )


def _func_outputs(
    bold: Path,
    config: RunConfig,
    maps: Sequence[tuple[Modality, Mapping[str, Any]]],
    tr: float,
    anat: AnatJob | None,
    fingerprint: str,
    backend: Backend,
) -> dict[str, Output]:
    entities = source_entities(bold)
    folder = derivative_dir(config.output_dir, entities["sub"], entities.get("ses"), "func")
    figures = config.output_dir / f"sub-{entities['sub']}" / "figures"
    grid = {**entities, "space": TEMPLATE_SPACE, "res": GRID_RES}
    sources = [_source(bold, config)]
    if anat is not None:
        sources.append(_source(anat.t1w, config))
        registration = (
            "mean motion-corrected BOLD -> T1w, composed with T1w -> template;"
            " resampled once onto the grid"
        )
    else:
        registration = (
            "mean motion-corrected BOLD -> template directly (the subject has no T1w);"
            " resampled once onto the grid"
        )
    common: dict[str, Any] = {
        "Sources": sources,
        "RepetitionTime": tr,
        "Software": _software(),
        "Backend": backend.description,
        FINGERPRINT_KEY: fingerprint,
    }
    if anat is None:
        common["Warnings"] = [
            "the subject has no T1w: BOLD registered to the template "
            "without an anatomical reference"
        ]
    outputs = {
        "confounds": Output(
            folder / derivative_name({**entities, "desc": "confounds"}, "timeseries", ".tsv"),
            {
                **common,
                "MotionCorrection": MOTION,
                "framewise_displacement": "Power et al. 2012, 50 mm radius",
            },
        ),
        "motion_figure": Output(
            figures / derivative_name({**entities, "desc": "motion"}, "bold", ".png")
        ),
    }
    for modality, inputs in maps:
        sidecar = {**common, "MotionCorrection": MOTION, "Registration": registration}
        outputs.update(_map_outputs(modality, inputs, folder, figures, grid, sidecar))
    return outputs

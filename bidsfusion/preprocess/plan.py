"""Planning one subject: which scans to process, where each output goes, what it records.

Bad scans are refused here, before any workflow runs, with a one-line reason;
derivatives that are complete and valid are not planned again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bidsfusion import __version__
from bidsfusion.bids import GRID_RES, TEMPLATE_SPACE, derivative_dir, derivative_name, session_days
from bidsfusion.errors import BidsFusionError, InputDataError
from bidsfusion.modality import Modality
from bidsfusion.nifti import load_image, read_data
from bidsfusion.preprocess.grid import MNI_GRID_SHAPE
from bidsfusion.preprocess.workflow import AnatJob, FuncJob, Output, SubjectPlan

log = logging.getLogger("bidsfusion.participant")

RESOLUTION = "3 mm isotropic, 64x64x64"
TEMPLATE = "MNI152NLin2009aSym: ICBM 2009a nonlinear symmetric T1 template as bundled with nilearn"
IMAGE_EXTENSIONS = [".nii", ".nii.gz"]


def plan_subject(
    layout: Any, config: Any, subject: str, sessions: Sequence[str], modalities: Sequence[Modality]
) -> tuple[SubjectPlan, list[BidsFusionError]]:
    """The work left for ``subject`` and the scans refused (each with its error)."""
    filters: dict[str, Any] = {"subject": subject, "extension": IMAGE_EXTENSIONS}
    if sessions:
        filters["session"] = list(sessions)
    t1ws = layout.get(suffix="T1w", datatype="anat", **filters)
    bolds = layout.get(suffix="bold", datatype="func", task=config.task, **filters)
    problems: list[BidsFusionError] = []
    anat_jobs = {}
    for t1w in t1ws:
        try:
            anat_jobs[_key("anat", t1w)] = _anat_job(t1w, config)
        except BidsFusionError as error:
            problems.append(error)
    days = session_days(config.bids_dir, subject)
    func_jobs = []
    for bold in bolds:
        try:
            job = _func_job(bold, layout, config, anat_jobs, days, modalities)
        except BidsFusionError as error:
            problems.append(error)
            continue
        if job is not None:
            func_jobs.append(job)
    needed = {job.anat_key for job in func_jobs}
    anat = [job for key, job in anat_jobs.items() if job.outputs or key in needed]
    return SubjectPlan(subject, anat, func_jobs), problems


def _key(prefix: str, bids_file: Any) -> str:
    stem = Path(bids_file.path).name.split(".")[0]
    return f"{prefix}_" + re.sub(r"[^A-Za-z0-9]", "_", stem)


def _entities(bids_file: Any, keys: Sequence[str]) -> dict[str, str]:
    names = {"subject": "sub", "session": "ses", "task": "task", "acquisition": "acq", "run": "run"}
    found = bids_file.get_entities()
    return {names[k]: str(found[k]) for k in keys if k in found}


def _source(bids_file: Any, config: Any) -> str:
    return "bids:raw:" + Path(bids_file.path).relative_to(config.bids_dir).as_posix()


def _software() -> dict[str, str]:
    import nipype
    import SimpleITK

    return {
        "bidsfusion": __version__,
        "nipype": nipype.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
    }


def _anat_job(t1w: Any, config: Any) -> AnatJob:
    image = load_image(Path(t1w.path))
    if len(image.shape) != 3:
        raise InputDataError(f"{t1w.path}: T1w must be 3D, got shape {image.shape}")
    _check_coverage(t1w.path, image)
    entities = _entities(t1w, ("subject", "session", "acquisition", "run"))
    folder = derivative_dir(config.output_dir, entities["sub"], entities.get("ses"), "anat")
    grid = {**entities, "space": TEMPLATE_SPACE, "res": GRID_RES}
    common = {
        "Sources": [_source(t1w, config)],
        "Resolution": RESOLUTION,
        "Template": TEMPLATE,
        "SpatialReference": TEMPLATE_SPACE,
        "Software": _software(),
    }
    registration = {
        "Registration": "similarity (7 dof: rotation, translation, isotropic scale),"
        " Mattes mutual information, multi-resolution, centre-of-mass initialised",
        "SkullStripping": config.skull_strip,
    }
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
            config.output_dir
            / f"sub-{entities['sub']}"
            / "figures"
            / derivative_name({**grid, "desc": "registration"}, "T1w", ".png")
        ),
    }
    if _complete(outputs, ("T1w", "mask")):
        outputs = {}
    return AnatJob(_key("anat", t1w), Path(t1w.path), entities.get("ses"), outputs)


def _complete(outputs: Mapping[str, Output], grids: Sequence[str]) -> bool:
    """Every output exists (with its sidecar) and the grid images load with the grid shape."""
    from bidsfusion.preprocess.sink import sidecar_path

    for name, output in outputs.items():
        if not output.path.is_file():
            return False
        if output.sidecar is not None and not sidecar_path(output.path).is_file():
            return False
        if name in grids:
            try:
                data, _ = read_data(output.path, ndim=3)
            except BidsFusionError:
                return False
            if data.shape != MNI_GRID_SHAPE:
                return False
    return True


MIN_COVERAGE_MM = 60.0
"""Smallest field of view (mm, along every axis) that registration can work with."""


def _check_coverage(path: str, image: Any) -> None:
    extent = [n * z for n, z in zip(image.shape[:3], image.header.get_zooms()[:3], strict=True)]
    if min(extent) < MIN_COVERAGE_MM:
        raise InputDataError(
            f"{path}: too little coverage to register: field of view "
            f"{' x '.join(f'{e:.0f}' for e in extent)} mm, need at least {MIN_COVERAGE_MM:.0f} mm "
            "along every axis"
        )


def _repetition_time(bold: Any, layout: Any) -> float:
    value = layout.get_metadata(bold.path).get("RepetitionTime")
    if value is None:
        raise InputDataError(
            f"{bold.path}: RepetitionTime is missing from the JSON sidecar; add it (seconds)"
        )
    try:
        tr = float(value)
    except (TypeError, ValueError):
        raise InputDataError(f"{bold.path}: RepetitionTime {value!r} is not a number") from None
    if not tr > 0:
        raise InputDataError(f"{bold.path}: RepetitionTime {tr} must be positive")
    return tr


def _func_job(
    bold: Any,
    layout: Any,
    config: Any,
    anat_jobs: Mapping[str, AnatJob],
    days: Mapping[str, float],
    modalities: Sequence[Modality],
) -> FuncJob | None:
    """The run's job, or ``None`` when its derivatives are complete."""
    from bidsfusion.preprocess.falff import band_bins

    image = load_image(Path(bold.path))
    if len(image.shape) != 4 or image.shape[3] < 2:
        raise InputDataError(f"{bold.path}: BOLD must be a 4D series, got shape {image.shape}")
    _check_coverage(bold.path, image)
    tr = _repetition_time(bold, layout)
    try:
        band_bins(image.shape[3], tr, tuple(config.falff_band))
    except InputDataError as error:
        raise InputDataError(f"{bold.path}: {error}") from None
    anat_key = _reference_t1w(bold, anat_jobs, days)
    maps = [m for m in modalities if m.source == "bold" and m.map_interface]
    outputs = _func_outputs(bold, config, maps, tr, anat_jobs.get(anat_key) if anat_key else None)
    if _complete(outputs, [m.name for m in maps]):
        return None
    return FuncJob(_key("func", bold), Path(bold.path), tr, anat_key, outputs)


def _reference_t1w(
    bold: Any, anat_jobs: Mapping[str, AnatJob], days: Mapping[str, float]
) -> str | None:
    """The T1w job to coregister to: same session, else nearest in days, else ``None``."""
    if not anat_jobs:
        log.warning(
            "%s: the subject has no T1w; BOLD is registered directly to the template", bold.path
        )
        return None
    session = bold.get_entities().get("session")
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
    bold: Any, config: Any, maps: Sequence[Modality], tr: float, anat: AnatJob | None
) -> dict[str, Output]:
    entities = _entities(bold, ("subject", "session", "task", "acquisition", "run"))
    folder = derivative_dir(config.output_dir, entities["sub"], entities.get("ses"), "func")
    figures = config.output_dir / f"sub-{entities['sub']}" / "figures"
    grid = {**entities, "space": TEMPLATE_SPACE, "res": GRID_RES}
    sources = [_source(bold, config)]
    if anat is not None:
        sources.append("bids:raw:" + anat.t1w.relative_to(config.bids_dir).as_posix())
        registration = (
            "mean motion-corrected BOLD -> T1w rigid (6 dof, Mattes mutual "
            "information), composed with T1w -> MNI similarity (7 dof); "
            "resampled once"
        )
    else:
        registration = (
            "mean motion-corrected BOLD -> MNI similarity (7 dof) directly: the subject has no T1w"
        )
    common = {"Sources": sources, "RepetitionTime": tr, "Software": _software()}
    if anat is None:
        common["Warnings"] = [
            "the subject has no T1w: BOLD registered to the template "
            "without an anatomical reference"
        ]
    motion = "rigid (6 dof) to the first volume, least squares, trilinear resampling"
    outputs = {
        "confounds": Output(
            folder / derivative_name({**entities, "desc": "confounds"}, "timeseries", ".tsv"),
            {
                **common,
                "MotionCorrection": motion,
                "framewise_displacement": "Power et al. 2012, 50 mm radius",
            },
        ),
        "motion_figure": Output(
            figures / derivative_name({**entities, "desc": "motion"}, "bold", ".png")
        ),
    }
    for modality in maps:
        stat = {key: value for key, value in modality.entities.items() if key != "suffix"}
        outputs[modality.name] = Output(
            folder / derivative_name({**grid, **stat}, modality.entities["suffix"], ".nii.gz"),
            {
                **common,
                "Description": modality.description,
                "Resolution": RESOLUTION,
                "Template": TEMPLATE,
                "SpatialReference": TEMPLATE_SPACE,
                "MotionCorrection": motion,
                "Registration": registration,
                "Band": list(config.falff_band),
                "Parameters": dict(modality.parameters),
            },
        )
        outputs[f"{modality.name}_figure"] = Output(
            figures
            / derivative_name(
                {**grid, **stat, "desc": "registration"}, modality.entities["suffix"], ".png"
            )
        )
    return outputs

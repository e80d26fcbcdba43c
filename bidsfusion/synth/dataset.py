"""A synthetic raw BIDS dataset with planted Alzheimer-like effects (``bidsfusion synth``).

Layout of ``out_dir`` (``<L>`` subject label, ``<S>`` session label)::

    dataset_description.json  README  participants.tsv  participants.json
    sub-<L>/sub-<L>_sessions.tsv                          session_id, days_since_entry
    sub-<L>/ses-<S>/anat/sub-<L>_ses-<S>_T1w.nii.gz       (+ .json)
    sub-<L>/ses-<S>/func/sub-<L>_ses-<S>_task-rest_bold.nii.gz  (+ .json)
    sourcedata/synth/truth.json                           seed, regions, per-subject truth
    sourcedata/synth/masks/space-MNI152NLin2009aSym_res-2mm_desc-<M>_mask.nii.gz
    sourcedata/synth/sub-<L>/ses-<S>/<image stem>_xfm.json
    sourcedata/synth/sub-<L>/ses-<S>/sub-<L>_ses-<S>_task-rest_motion.tsv

``<M>`` is ``brain`` (the template brain mask used), ``ventricles``,
``hippocampus`` or ``pcc`` (the effect regions, see ``anatomy``); masks are
uint8 on nilearn's 2 mm MNI grid. An ``_xfm.json`` holds ``to_mni``, the
scan's native->MNI 4x4 world matrix, and for bold the motion centre; the
motion TSV has the columns trans_x trans_y trans_z (mm) rot_x rot_y rot_z
(radians), one row per volume, row 0 zero; ``scanner`` documents both
conventions exactly. Labels are zero-padded to at least two digits.

Groups: a fraction ``ad_fraction`` (default 15 %) AD, 15 % other, the rest HC,
shuffled by the seed, with at least 2 AD and 2 HC from 4 subjects up. An AD
subject's effect strength is ``effect_strength`` times a factor in 0.7..1.3,
"other" half of that, HC 0. The default strength, :data:`EFFECT_STRENGTH`, is
calibrated so that AD is only partly separable from HC (see docs/usage.md).

Subjects differ from each other (:mod:`~bidsfusion.synth.individuality`, scaled
by ``variability``): their own brain shape, grey-matter density and ventricle
size, which both modalities show, and their own BOLD amplitude pattern. Each
subject is scanned at site A or B (:data:`~bidsfusion.synth.scanner.SITES`):
site B's T1w has less grey/white contrast and its BOLD more thermal noise
(lower fALFF everywhere). ``site_confound`` c in [0, 1] ties the site to the
diagnosis: P(B | AD) = (1 + c) / 2, P(B | HC) = (1 - c) / 2, P(B | other) = 1/2,
a shortcut that a supervised model can take (c = 0: none).

``shared_severity`` F > 0 plants what fusion can find: every subject has a shared disease
severity (its group's level, AD 1, other 0.5, HC 0, plus a spread of sd 0.5), which
T1w shows as grey-matter loss in the middle temporal gyri and BOLD as a lower LF amplitude
in the angular gyri, each with its own noise (sd 0.5) and scaled by F: each modality alone
sees the severity poorly; the two share it. ``truth.json`` holds each subject's severity and
both expressions. F = 0 (the default) draws nothing and leaves every dataset as it was.

Sessions: 1..``max_sessions`` per subject; with more than one session each
holds T1w, bold or both (each modality at least once), so the closest-in-days
pairing matters. A subject's plan draws from ``default_rng([seed, subject])``,
its individuality from ``default_rng([seed, subject, 0, 0])`` and every scan
from its own stream ``default_rng([seed, subject, session, modality])``:
a subject's data do not depend on the other subjects. A subject's diagnosis
depends on ``n_subjects`` and ``ad_fraction``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from bidsfusion import __version__
from bidsfusion.errors import OutputError, UsageError
from bidsfusion.rigid import volume_centre
from bidsfusion.synth.anatomy import (
    HIPPOCAMPUS,
    MNI_AFFINE,
    PCC,
    PHANTOM_SHAPE,
    SEVERITY_BOLD,
    SEVERITY_T1W,
    VENTRICLE_BOX,
    Effects,
    SubjectMaps,
    load_phantom,
    subject_maps,
    truth_masks,
)
from bidsfusion.synth.individuality import draw_individuality
from bidsfusion.synth.scanner import SITES, random_placement, render_bold, render_t1
from bidsfusion.tsv import write_tsv

GROUPS = ("AD", "HC", "other")
GROUP_EFFECT = {"AD": 1.0, "HC": 0.0, "other": 0.5}
SEVERITY_LEVEL = {"AD": 1.0, "HC": 0.0, "other": 0.5}
"""The shared severity's mean per group; each subject's spreads by :data:`SEVERITY_SPREAD`."""
SEVERITY_SPREAD = 0.5
SEVERITY_NOISE = 0.5
"""The sd of each modality's own noise on the severity it expresses: each modality alone
sees the severity poorly, the two together see what they share."""
MODALITIES = ("T1w", "bold")
MIN_VOLUMES = 50
EFFECT_STRENGTH = 1.0
"""Default AD effect strength (calibrated, see the module doc)."""
AD_FRACTION = 0.15
OTHER_FRACTION = 0.15
"""At TR 2 s, 100 s of data: one period of the fALFF band's lowest frequency (0.01 Hz)."""
MASK_NAME = "space-MNI152NLin2009aSym_res-2mm_desc-{}_mask.nii.gz"
MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


@dataclass(frozen=True)
class SyntheticSession:
    """One session: label ("01"), days since the subject's entry, modalities acquired."""

    label: str
    days: int
    modalities: tuple[str, ...]


@dataclass(frozen=True)
class SyntheticSubject:
    """Everything drawn for one subject before any image is made."""

    index: int
    label: str
    diagnosis: str
    age: float
    sex: str
    effect: float
    head_scale: float
    site: str
    sessions: tuple[SyntheticSession, ...]
    severity: Severity | None = None
    """The shared disease severity and its two expressions (``--shared-severity`` > 0)."""


@dataclass(frozen=True)
class Severity:
    """A subject's shared disease severity ``value`` (its group's level plus individual
    spread) and the strengths it is expressed with in T1w and BOLD, each the severity plus
    its own noise, times ``--shared-severity`` (0 at least)."""

    value: float
    t1w: float
    bold: float


@dataclass(frozen=True)
class SynthSummary:
    """What ``make_dataset`` wrote: the rows of participants.tsv and the scan counts."""

    out_dir: Path
    n_subjects: int
    seed: int
    participants: tuple[dict[str, str], ...]
    n_t1w: int
    n_bold: int


def assign_diagnoses(n_subjects: int, seed: int, ad_fraction: float = AD_FRACTION) -> list[str]:
    """Diagnoses in subject order: fixed counts (``ad_fraction`` AD, 15 % other, >= 2 AD and
    2 HC from n = 4), shuffled; below 4 subjects each is drawn with those probabilities."""
    rng = np.random.default_rng([seed, 0])
    if n_subjects < 4:
        other = min(OTHER_FRACTION, 1 - ad_fraction)
        p = (ad_fraction, 1 - ad_fraction - other, other)
        return [str(g) for g in rng.choice(GROUPS, size=n_subjects, p=p)]
    n_ad = min(max(2, round(ad_fraction * n_subjects)), n_subjects - 2)
    n_other = min(round(OTHER_FRACTION * n_subjects), n_subjects - n_ad - 2)
    labels = ["AD"] * n_ad + ["other"] * n_other + ["HC"] * (n_subjects - n_ad - n_other)
    return [str(g) for g in rng.permutation(labels)]


def _plan_sessions(rng: np.random.Generator, max_sessions: int) -> tuple[SyntheticSession, ...]:
    """1..max_sessions sessions; with several, each holds T1w, bold or both, each at least once."""
    n = int(rng.integers(1, max_sessions + 1))
    choices = (("T1w",), ("bold",), MODALITIES)
    contents = [MODALITIES]
    while n > 1:
        contents = [choices[k] for k in rng.choice(3, size=n, p=(0.3, 0.3, 0.4))]
        if all(any(m in c for c in contents) for m in MODALITIES):
            break
    days = np.concatenate([[0], np.cumsum(rng.integers(90, 541, n - 1))])
    return tuple(SyntheticSession(f"{i + 1:02d}", int(days[i]), contents[i]) for i in range(n))


def _check_numbers(
    n_subjects: int,
    max_sessions: int,
    effect_strength: float,
    ad_fraction: float,
    site_confound: float,
    variability: float,
    coupling: float = 1.0,
    shared_severity: float = 0.0,
) -> None:
    """UsageError naming the first impossible setting."""
    checks = {
        f"--subjects must be at least 1, got {n_subjects}": n_subjects >= 1,
        f"--sessions must be 1, 2 or 3, got {max_sessions}": 1 <= max_sessions <= 3,
        **_scale_check("--effect-strength", effect_strength),
        f"--ad-fraction must be above 0 and below 1, got {ad_fraction}": 0 < ad_fraction < 1,
        f"--site-confound must be in [0, 1], got {site_confound}": 0 <= site_confound <= 1,
        **_scale_check("--variability", variability),
        **_scale_check("--coupling", coupling),
        **_scale_check("--shared-severity", shared_severity),
    }
    for message, ok in checks.items():
        if not ok:
            raise UsageError(message)


MAX_SCALE = 10.0
"""The largest ``--effect-strength``, ``--variability`` and ``--coupling``: beyond it
the effects saturate (grey matter gone, amplitudes clipped) and the factors overflow."""


def _scale_check(option: str, value: float) -> dict[str, bool]:
    """``{message: ok}`` for a scale option that must lie in [0, :data:`MAX_SCALE`]."""
    ok = bool(np.isfinite(value)) and 0 <= value <= MAX_SCALE
    return {f"{option} must be a number from 0 to {MAX_SCALE:g}, got {value}": ok}


def _site(rng: np.random.Generator, diagnosis: str, site_confound: float) -> str:
    """Site A or B; B with probability (1 + c) / 2 for AD, (1 - c) / 2 for HC, 1/2 otherwise."""
    sign = {"AD": 1.0, "HC": -1.0}.get(diagnosis, 0.0)
    return "B" if rng.random() < (1.0 + sign * site_confound) / 2 else "A"


def plan_dataset(
    n_subjects: int,
    seed: int,
    max_sessions: int = 3,
    effect_strength: float = EFFECT_STRENGTH,
    ad_fraction: float = AD_FRACTION,
    site_confound: float = 0.0,
    variability: float = 1.0,
    coupling: float = 1.0,
    shared_severity: float = 0.0,
) -> list[SyntheticSubject]:
    """Draw every subject's group, demographics, effect, head size, site, sessions and,
    with ``shared_severity`` > 0, shared severity (no images); ``variability`` and
    ``coupling`` are only checked here."""
    _check_numbers(
        n_subjects, max_sessions, effect_strength, ad_fraction, site_confound, variability,
        coupling, shared_severity,
    )  # fmt: skip
    width = max(2, len(str(n_subjects)))
    plans = []
    for index, diagnosis in enumerate(assign_diagnoses(n_subjects, seed, ad_fraction), start=1):
        rng = np.random.default_rng([seed, index])
        age = float(np.clip(rng.normal(75.0 if diagnosis == "AD" else 71.0, 6.0), 55, 95))
        plans.append(
            SyntheticSubject(
                index=index,
                label=f"{index:0{width}d}",
                diagnosis=diagnosis,
                age=round(age, 1),
                sex=str(rng.choice(["F", "M"])),
                effect=effect_strength * GROUP_EFFECT[diagnosis] * float(rng.uniform(0.7, 1.3)),
                head_scale=float(rng.uniform(0.9, 1.1)),
                sessions=_plan_sessions(rng, max_sessions),
                site=_site(rng, diagnosis, site_confound),
                severity=_severity(seed, index, diagnosis, shared_severity),
            )
        )
    return plans


def _severity(seed: int, index: int, diagnosis: str, strength: float) -> Severity | None:
    """A subject's shared severity, from its own stream (so the other draws, and every
    dataset made without it, are unchanged); None when ``strength`` is 0."""
    if not strength:
        return None
    rng = np.random.default_rng([seed, index, 0, 1])
    value = SEVERITY_LEVEL[diagnosis] + rng.normal(0.0, SEVERITY_SPREAD)
    t1w, bold = (max(value + rng.normal(0.0, SEVERITY_NOISE), 0.0) for _ in range(2))
    return Severity(float(value), strength * t1w, strength * bold)


def _write_json(path: Path, content: object) -> None:
    """Write ``content`` as indented JSON, creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def _write_tsv(path: Path, rows: list[dict[str, object]]) -> None:
    """Write dict rows (same keys, in order) as a tab-separated table."""
    write_tsv(path, list(rows[0]), [list(row.values()) for row in rows])


def _participant_row(plan: SyntheticSubject) -> dict[str, str]:
    """The participants.tsv row of one subject."""
    return {
        "participant_id": f"sub-{plan.label}",
        "diagnosis": plan.diagnosis,
        "age": f"{plan.age:.1f}",
        "sex": plan.sex,
        "site": plan.site,
    }


def _write_scan(
    root: Path,
    plan: SyntheticSubject,
    session: SyntheticSession,
    modality: str,
    maps: SubjectMaps,
    seed: int,
    n_volumes: int,
) -> None:
    """Simulate one scan; write the image, its sidecar and its ground truth."""
    phantom = load_phantom()
    rng = np.random.default_rng([seed, plan.index, int(session.label), MODALITIES.index(modality)])
    to_mni = random_placement(rng, plan.head_scale, phantom.centre_mm)
    folder = Path(f"sub-{plan.label}", f"ses-{session.label}")
    stem = f"sub-{plan.label}_ses-{session.label}"
    truth = root / "sourcedata" / "synth" / folder
    xfm: dict[str, object] = {"to_mni": to_mni.tolist(), "head_scale": plan.head_scale}
    if modality == "T1w":
        image = render_t1(maps, phantom.head_points, to_mni, rng, SITES[plan.site])
        relative = folder / "anat" / f"{stem}_T1w.nii.gz"
        sidecar: dict[str, object] = {}
    else:
        image, motion = render_bold(
            maps, phantom.hull_points, to_mni, rng, n_volumes, SITES[plan.site]
        )
        relative = folder / "func" / f"{stem}_task-rest_bold.nii.gz"
        sidecar = {"TaskName": "rest", "RepetitionTime": float(image.header["pixdim"][4])}
        xfm["motion"] = f"{stem}_task-rest_motion.tsv"
        xfm["motion_centre_mm"] = volume_centre(image.affine, image.shape).tolist()
        rows = [dict(zip(MOTION_COLUMNS, [f"{v:.8f}" for v in row], strict=True)) for row in motion]
        _write_tsv(truth / str(xfm["motion"]), rows)
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, root / relative)
    _write_json(
        root / str(relative).replace(".nii.gz", ".json"),
        {
            **sidecar,
            "Manufacturer": "bidsfusion synth (simulated)",
            "InstitutionName": f"bidsfusion synth site {plan.site}",
        },
    )
    xfm_name = relative.name.replace(".nii.gz", "_xfm.json")
    _write_json(truth / xfm_name, {"source": relative.as_posix(), **xfm})


def _write_subject(
    root: Path,
    plan: SyntheticSubject,
    seed: int,
    n_volumes: int,
    variability: float,
    coupling: float,
) -> dict:
    """Write one subject's sessions.tsv and scans; return its truth.json entry."""
    effects = Effects.from_strength(plan.effect)
    if plan.severity is not None:
        effects = replace(
            effects,
            severity_gm_loss=min(0.2 * plan.severity.t1w, 0.9),
            severity_lf_factor=max(1.0 - 0.6 * plan.severity.bold, 0.1),
        )
    rng = np.random.default_rng([seed, plan.index, 0, 0])
    individual = draw_individuality(rng, PHANTOM_SHAPE, variability, coupling)
    maps = subject_maps(load_phantom(), effects, individual)
    rows = [{"session_id": f"ses-{s.label}", "days_since_entry": s.days} for s in plan.sessions]
    _write_tsv(root / f"sub-{plan.label}" / f"sub-{plan.label}_sessions.tsv", rows)
    for session in plan.sessions:
        for modality in session.modalities:
            _write_scan(root, plan, session, modality, maps, seed, n_volumes)
    severity = {} if plan.severity is None else {
        "severity": plan.severity.value,
        "severity_t1w": plan.severity.t1w,
        "severity_bold": plan.severity.bold,
    }  # fmt: skip
    return {
        "diagnosis": plan.diagnosis,
        "effect": plan.effect,
        **severity,
        "head_scale": plan.head_scale,
        "site": plan.site,
        "individual_ventricle_mm": individual.ventricle_mm,
        **asdict(effects),
        "sessions": {
            f"ses-{s.label}": {"days": s.days, "modalities": list(s.modalities)}
            for s in plan.sessions
        },
    }


README = """\
# bidsfusion synthetic dataset

Simulated T1w and resting-state BOLD scans made by `bidsfusion synth` (seed {seed}).
Brain tissue comes from the ICBM152 2009a templates bundled with nilearn; each
scan is a randomly placed, bias-corrupted, noisy view of a subject's phantom.
Subjects differ in brain shape, grey-matter density and ventricle size (seen by
both modalities) and in their BOLD amplitude pattern; each was scanned at site
A or B (participants.tsv), whose scanners differ in T1w contrast and BOLD noise.
AD subjects (and, at half strength, "other" subjects) have enlarged ventricles,
hippocampal/temporal grey-matter loss and lower 0.01-0.1 Hz BOLD amplitude in
the posterior cingulate/precuneus. The ground truth (transforms to MNI, head
motion, effect masks, effect sizes) is under sourcedata/synth/.
"""

PARTICIPANTS_JSON = {
    "participant_id": {"Description": "Subject label"},
    "diagnosis": {
        "Description": "Simulated diagnostic group",
        "Levels": {
            "AD": "Alzheimer's disease (planted effects at full strength)",
            "HC": "healthy control (no planted effect)",
            "other": "other diagnosis (planted effects at half strength)",
        },
    },
    "age": {"Description": "Age at the first session", "Units": "year"},
    "sex": {"Description": "Sex", "Levels": {"F": "female", "M": "male"}},
    "site": {
        "Description": "Acquisition site",
        "Levels": {
            "A": "reference scanner",
            "B": "less T1w grey/white contrast, more BOLD thermal noise",
        },
    },
}


def synth_settings(
    n_subjects: int = 20,
    seed: int = 0,
    max_sessions: int = 3,
    effect_strength: float = EFFECT_STRENGTH,
    n_volumes: int = 120,
    ad_fraction: float = AD_FRACTION,
    site_confound: float = 0.0,
    variability: float = 1.0,
    coupling: float = 1.0,
    shared_severity: float = 0.0,
) -> dict:
    """The settings a dataset is made with (:func:`make_dataset`'s defaults), as recorded
    (``shared_severity`` only when used: datasets made without it keep their record)."""
    severity = {"shared_severity": shared_severity} if shared_severity else {}
    return {
        "seed": seed,
        "n_subjects": n_subjects,
        "max_sessions": max_sessions,
        "effect_strength": effect_strength,
        "n_volumes": n_volumes,
        "ad_fraction": ad_fraction,
        "site_confound": site_confound,
        "variability": variability,
        "coupling": coupling,
        **severity,
    }


def generator_entry(settings: dict) -> dict:
    """dataset_description.json's GeneratedBy entry for ``settings`` (:func:`synth_settings`)."""
    description = ", ".join(f"{k}={v}" for k, v in settings.items())
    return {"Name": "bidsfusion synth", "Version": __version__, "Description": description}


def _write_dataset_files(root: Path, plans: list[SyntheticSubject], settings: dict) -> None:
    """dataset_description.json, README, participants.tsv/.json and the truth masks."""
    _write_json(
        root / "dataset_description.json",
        {
            "Name": f"bidsfusion synthetic AD/HC dataset (seed {settings['seed']})",
            "BIDSVersion": "1.8.0",
            "DatasetType": "raw",
            "License": "CC0",
            "GeneratedBy": [generator_entry(settings)],
        },
    )
    (root / "README").write_text(README.format(seed=settings["seed"]), encoding="utf-8")
    _write_tsv(root / "participants.tsv", [_participant_row(p) for p in plans])
    _write_json(root / "participants.json", PARTICIPANTS_JSON)
    masks = root / "sourcedata" / "synth" / "masks"
    masks.mkdir(parents=True)
    for name, mask in truth_masks(load_phantom()).items():
        nib.save(nib.Nifti1Image(mask, MNI_AFFINE), masks / MASK_NAME.format(name))


def _truth(settings: dict, subjects: dict[str, dict]) -> dict:
    """The content of sourcedata/synth/truth.json."""
    return {
        **settings,
        "space": "MNI152NLin2009aSym (nilearn ICBM152 2009a), mm",
        "masks": {
            name: f"masks/{MASK_NAME.format(name)}"
            for name in ("brain", "ventricles", "hippocampus", "pcc")
        },
        "regions": {
            "pcc": {"centres_mm": PCC.centres, "radius_mm": PCC.radius_mm},
            "hippocampus": {"centres_mm": HIPPOCAMPUS.centres, "radius_mm": HIPPOCAMPUS.radius_mm},
            "ventricle_box_mm": VENTRICLE_BOX,
            **_severity_regions(settings),
        },
        "subjects": subjects,
    }


def _severity_regions(settings: dict) -> dict:
    """The regions the shared severity shows in, when the dataset has one."""
    if not settings.get("shared_severity"):
        return {}
    return {
        name: {"centres_mm": region.centres, "radius_mm": region.radius_mm}
        for name, region in (("severity_t1w", SEVERITY_T1W), ("severity_bold", SEVERITY_BOLD))
    }


def _write_subjects(
    root: Path,
    plans: list[SyntheticSubject],
    seed: int,
    n_volumes: int,
    variability: float,
    coupling: float,
    n_jobs: int | None,
) -> dict[str, dict]:
    """Write every subject, in ``n_jobs`` forked processes that inherit the phantom.

    Without the "fork" start method (Windows) the subjects are written in this process.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n_jobs = min(n_jobs or usable or 1, len(plans))
    if n_jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return {
            f"sub-{p.label}": _write_subject(root, p, seed, n_volumes, variability, coupling)
            for p in plans
        }
    load_phantom()
    with ProcessPoolExecutor(n_jobs, multiprocessing.get_context("fork")) as pool:
        futures = {
            f"sub-{p.label}": pool.submit(
                _write_subject, root, p, seed, n_volumes, variability, coupling
            )
            for p in plans
        }
        return {label: future.result() for label, future in futures.items()}


STAGING = ".synth-"
"""Name prefix of the folder a dataset is built in, inside an existing empty target."""


def _check_output(out_dir: Path) -> None:
    """Raise ``OutputError`` unless ``out_dir`` is absent or an empty folder (the staging
    folders of interrupted runs aside)."""
    if out_dir.exists() and (
        not out_dir.is_dir() or any(not p.name.startswith(STAGING) for p in out_dir.iterdir())
    ):
        raise OutputError(f"{out_dir}: exists and is not an empty folder")


def _staging_folder(target: Path) -> Path:
    """A new folder to build the dataset in: a hidden sibling of an absent ``target``;
    inside an existing (empty) one, whose parent may be unwritable (a container's mount
    point), after removing the staging folders an interrupted run left there."""
    name = uuid.uuid4().hex[:12]
    if target.is_dir():
        for stale in target.glob(f"{STAGING}*"):
            shutil.rmtree(stale)
        staging = target / f"{STAGING}{name}"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}{STAGING}{name}")
    staging.mkdir()
    return staging


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, or, where ``target`` is a folder (so ``staging``
    lies inside it), move its entries up, dataset_description.json last: a dataset
    interrupted in those renames is not a BIDS dataset."""
    if staging.parent != target:
        os.replace(staging, target)
        return
    entries = sorted(staging.iterdir(), key=lambda p: p.name == "dataset_description.json")
    for entry in entries:
        os.replace(entry, target / entry.name)
    staging.rmdir()


def make_dataset(
    out_dir: Path,
    n_subjects: int = 20,
    seed: int = 0,
    max_sessions: int = 3,
    effect_strength: float = EFFECT_STRENGTH,
    n_volumes: int = 120,
    n_jobs: int | None = None,
    ad_fraction: float = AD_FRACTION,
    site_confound: float = 0.0,
    variability: float = 1.0,
    coupling: float = 1.0,
    shared_severity: float = 0.0,
) -> SynthSummary:
    """Write a synthetic BIDS dataset to ``out_dir`` (absent or empty); see the module doc.

    Subjects are simulated by ``n_jobs`` processes (default: the usable CPUs);
    the data do not depend on ``n_jobs``. Built in a temporary folder moved into place
    at the end (:func:`_staging_folder`), so a failure leaves nothing behind. Raises
    ``UsageError`` for impossible numbers and ``OutputError`` when ``out_dir``
    is non-empty or cannot be written.
    """
    if n_volumes < MIN_VOLUMES:
        raise UsageError(f"--volumes must be at least {MIN_VOLUMES}, got {n_volumes}")
    plans = plan_dataset(
        n_subjects, seed, max_sessions, effect_strength, ad_fraction, site_confound, variability,
        coupling, shared_severity,
    )  # fmt: skip
    out_dir = Path(out_dir)
    _check_output(out_dir)
    settings = synth_settings(
        n_subjects,
        seed,
        max_sessions,
        effect_strength,
        n_volumes,
        ad_fraction,
        site_confound,
        variability,
        coupling,
        shared_severity,
    )
    try:
        target = out_dir.absolute()
        tmp = _staging_folder(target)
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot be created ({error})") from error
    try:
        _write_dataset_files(tmp, plans, settings)
        subjects = _write_subjects(tmp, plans, seed, n_volumes, variability, coupling, n_jobs)
        _write_json(tmp / "sourcedata" / "synth" / "truth.json", _truth(settings, subjects))
        _check_output(out_dir)
        _move_into_place(tmp, target)
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot be written ({error})") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    scans = [m for p in plans for s in p.sessions for m in s.modalities]
    return SynthSummary(
        out_dir=out_dir,
        n_subjects=n_subjects,
        seed=seed,
        participants=tuple(_participant_row(p) for p in plans),
        n_t1w=scans.count("T1w"),
        n_bold=scans.count("bold"),
    )

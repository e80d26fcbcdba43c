"""The MNI-space head phantom behind ``bidsfusion synth``.

Everything lives on one grid: nilearn's bundled ICBM152 2009a templates at
2 mm (the nilearn 2 mm grid, origin (-98, -134, -72) mm, RAS), padded by
``PAD`` voxels on every side so that a scalp fits around the brain. Tissue:
grey and white matter are the template probability maps, everything else
inside a smooth hull of the brain mask is CSF; outside the hull a radial
profile gives CSF, a dark skull and a bright scalp.

The planted Alzheimer-like effects are defined here, in MNI mm:

* ventricles: template CSF (fraction > 0.5) inside the brain mask and the box
  ``VENTRICLE_BOX``; enlarged by growing CSF up to ``ventricle_dilation_mm``
  from that mask (within the box and the brain), replacing GM and WM;
* hippocampus/temporal: soft spheres ``HIPPOCAMPUS`` where a fraction
  ``hippocampal_gm_loss`` of the GM becomes CSF;
* PCC/precuneus: a soft sphere ``PCC`` where the 0.01-0.1 Hz BOLD amplitude
  is multiplied by ``pcc_lf_amplitude_factor``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bidsfusion.synth.individuality import Individuality, deform

MNI_SHAPE = (99, 117, 95)
"""Shape of nilearn's 2 mm MNI152 grid (and of the truth masks)."""
MNI_AFFINE = np.array([[2.0, 0, 0, -98], [0, 2.0, 0, -134], [0, 0, 2.0, -72], [0, 0, 0, 1]])
"""Voxel -> MNI mm affine of the 2 mm grid."""
PAD = 12
"""Voxels (24 mm) added on every side of the MNI grid for the scalp."""
PHANTOM_SHAPE = tuple(s + 2 * PAD for s in MNI_SHAPE)
PHANTOM_AFFINE = MNI_AFFINE.copy()
PHANTOM_AFFINE[:3, 3] -= 2.0 * PAD
VENTRICLE_BOX = ((-30.0, 30.0), (-45.0, 35.0), (-5.0, 35.0))
"""(x, y, z) ranges in MNI mm where ventricles are found and may grow."""

T1_TISSUE = {"gm": 600.0, "wm": 900.0, "csf": 250.0}
T1_OUTSIDE = ((0, 2, 3, 8, 9.5, 13, 15), (250, 250, 80, 80, 850, 700, 0))
"""(distance outside the hull in mm, T1 intensity): CSF, skull, scalp, air."""
BOLD_TISSUE = {"gm": 700.0, "wm": 850.0, "csf": 450.0}
BOLD_OUTSIDE = ((0, 2, 3, 8, 9.5, 13, 15), (450, 450, 50, 50, 150, 120, 0))
"""Like ``T1_OUTSIDE`` for the EPI baseline (fat-suppressed: dim scalp)."""
LF_AMPLITUDE = {"gm": 0.02, "wm": 0.007, "csf": 0.004}
"""0.01-0.1 Hz BOLD amplitude (standard deviation) relative to the baseline."""


@dataclass(frozen=True)
class Region:
    """Union of soft spheres in MNI mm: weight 1 up to ``radius_mm`` - 2, 0.5 at
    ``radius_mm`` (the truth masks), 0 from ``radius_mm`` + 2 on."""

    centres: tuple[tuple[float, float, float], ...]
    radius_mm: float

    def weight(self, xyz: np.ndarray) -> np.ndarray:
        """Soft weight in [0, 1] at MNI points ``xyz`` of shape (3, ...)."""
        out = np.zeros(xyz.shape[1:], dtype=np.float32)
        for centre in self.centres:
            dist = np.sqrt(sum((xyz[i] - centre[i]) ** 2 for i in range(3)))
            out = np.maximum(out, np.clip((self.radius_mm + 2.0 - dist) / 4.0, 0.0, 1.0))
        return out


PCC = Region(((0.0, -55.0, 30.0),), 12.0)
HIPPOCAMPUS = Region(((-28.0, -22.0, -14.0), (28.0, -22.0, -14.0)), 10.0)
SEVERITY_T1W = Region(((-56.0, -20.0, -12.0), (56.0, -20.0, -12.0)), 10.0)
"""Where the shared severity shows in T1w: grey-matter loss in the middle temporal gyri."""
SEVERITY_BOLD = Region(((-44.0, -62.0, 36.0), (44.0, -62.0, 36.0)), 10.0)
"""Where the shared severity shows in BOLD: lower LF amplitude in the angular gyri."""


@dataclass(frozen=True)
class Effects:
    """Per-subject planted effect sizes (all neutral for a healthy control)."""

    ventricle_dilation_mm: float = 0.0
    hippocampal_gm_loss: float = 0.0
    pcc_lf_amplitude_factor: float = 1.0
    severity_gm_loss: float = 0.0
    """Grey-matter loss in :data:`SEVERITY_T1W` (the shared severity's T1w expression)."""
    severity_lf_factor: float = 1.0
    """LF amplitude factor in :data:`SEVERITY_BOLD` (its BOLD expression)."""

    @classmethod
    def from_strength(cls, strength: float) -> Effects:
        """Effects for a subject of effect ``strength`` (0 none, 1 typical AD)."""
        return cls(
            ventricle_dilation_mm=1.5 * strength,
            hippocampal_gm_loss=min(0.2 * strength, 0.9),
            pcc_lf_amplitude_factor=max(1.0 - 0.6 * strength, 0.1),
        )


@dataclass(frozen=True)
class Phantom:
    """Template-derived maps on the padded grid, float32 or bool, shape ``PHANTOM_SHAPE``."""

    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    brain_weight: np.ndarray
    """The brain mask smoothed (sigma 2 voxels): how much of a subject's deformation applies."""
    hull: np.ndarray
    t1_outside: np.ndarray
    """T1 intensity outside the hull (``T1_OUTSIDE`` profile); ``bold_outside`` likewise."""
    bold_outside: np.ndarray
    ventricle_mm: np.ndarray
    """Distance (mm) to the template ventricle mask, 0 inside it."""
    ventricle_region: np.ndarray
    """Where ventricles may grow: brain mask within ``VENTRICLE_BOX``."""
    hippocampus: np.ndarray
    """Soft weight of ``HIPPOCAMPUS``; ``pcc`` likewise of ``PCC``."""
    pcc: np.ndarray
    severity_t1w: np.ndarray
    """Soft weight of :data:`SEVERITY_T1W`; ``severity_bold`` likewise of :data:`SEVERITY_BOLD`."""
    severity_bold: np.ndarray
    centre_mm: np.ndarray
    """Centre of the head (hull voxels), MNI mm, shape (3,)."""
    head_points: np.ndarray
    """MNI mm of the head's outer surface (scalp), shape (3, N): what a T1 FOV must cover."""
    hull_points: np.ndarray
    """MNI mm of the hull's surface, shape (3, M): what a BOLD FOV must cover."""


@dataclass(frozen=True)
class SubjectMaps:
    """One subject's MNI-space images on the padded grid (float32, ``PHANTOM_SHAPE``)."""

    t1: np.ndarray
    bold_baseline: np.ndarray
    lf_amplitude: np.ndarray


def _template(name: str) -> np.ndarray:
    """A nilearn 1 mm template, lightly smoothed, subsampled to 2 mm and padded."""
    from nilearn import datasets

    loader = getattr(datasets, f"load_mni152_{name}")
    data = loader(resolution=1).get_fdata(dtype=np.float32)
    if name != "brain_mask":
        data = ndimage.gaussian_filter(data, 0.85)
    return np.pad(data[::2, ::2, ::2], PAD)


def _phantom_mm() -> np.ndarray:
    """MNI mm coordinates of every padded-grid voxel, shape (3, *PHANTOM_SHAPE)."""
    ijk = np.indices(PHANTOM_SHAPE, dtype=np.float32)
    return np.stack([ijk[i] * 2.0 + PHANTOM_AFFINE[i, 3] for i in range(3)])


@functools.lru_cache(maxsize=1)
def load_phantom() -> Phantom:
    """The phantom, built from the templates on first use in a process (a few seconds)."""
    brain = _template("brain_mask") > 0.5
    gm = _template("gm_template") * brain
    wm = _template("wm_template") * brain
    hull = ndimage.binary_fill_holes(ndimage.gaussian_filter(brain * 1.0, 3.0) > 0.25) | brain
    xyz = _phantom_mm()
    box = np.ones(PHANTOM_SHAPE, dtype=bool)
    for axis, (low, high) in enumerate(VENTRICLE_BOX):
        box &= (xyz[axis] >= low) & (xyz[axis] <= high)
    ventricles = brain & box & (1.0 - gm - wm > 0.5)
    ventricle_mm = ndimage.distance_transform_edt(~ventricles, sampling=2.0)
    outside_mm = ndimage.distance_transform_edt(~hull, sampling=2.0)
    head = outside_mm <= T1_OUTSIDE[0][-1]
    return Phantom(
        gm=gm,
        wm=wm,
        brain=brain,
        brain_weight=ndimage.gaussian_filter(brain.astype(np.float32), 2.0),
        hull=hull,
        t1_outside=np.interp(outside_mm, *T1_OUTSIDE).astype(np.float32),
        bold_outside=np.interp(outside_mm, *BOLD_OUTSIDE).astype(np.float32),
        ventricle_mm=ventricle_mm.astype(np.float32),
        ventricle_region=brain & box,
        hippocampus=HIPPOCAMPUS.weight(xyz),
        pcc=PCC.weight(xyz),
        severity_t1w=SEVERITY_T1W.weight(xyz),
        severity_bold=SEVERITY_BOLD.weight(xyz),
        centre_mm=xyz[:, hull].mean(axis=1).astype(np.float64),
        head_points=xyz[:, head & ~ndimage.binary_erosion(head)].astype(np.float64),
        hull_points=xyz[:, hull & ~ndimage.binary_erosion(hull)].astype(np.float64),
    )


def truth_masks(phantom: Phantom) -> dict[str, np.ndarray]:
    """Binary uint8 masks on the unpadded 2 mm MNI grid: brain and the effect regions."""
    crop = tuple(slice(PAD, PAD + s) for s in MNI_SHAPE)
    ventricles = phantom.ventricle_region & (phantom.ventricle_mm <= 12.0)
    masks = {
        "brain": phantom.brain,
        "ventricles": ventricles,
        "hippocampus": (phantom.hippocampus >= 0.5) & phantom.brain,
        "pcc": (phantom.pcc >= 0.5) & phantom.brain,
    }
    return {name: mask[crop].astype(np.uint8) for name, mask in masks.items()}


def _contrast(
    gm: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    hull: np.ndarray,
    tissue: dict,
    outside: np.ndarray,
) -> np.ndarray:
    """Intensity: the tissue mixture inside the hull, the ``outside`` profile elsewhere."""
    inside = tissue["gm"] * gm + tissue["wm"] * wm + tissue["csf"] * csf
    return np.where(hull, inside, outside).astype(np.float32)


def subject_maps(
    phantom: Phantom, effects: Effects, individual: Individuality | None = None
) -> SubjectMaps:
    """The subject's T1, EPI baseline and LF amplitude: the phantom deformed and scaled by
    ``individual`` (default: the template subject), then ``effects`` applied."""
    individual = individual or Individuality.template(phantom.gm.shape)
    gm = deform(phantom.gm, individual.displacement_mm, phantom.brain_weight)
    wm = deform(phantom.wm, individual.displacement_mm, phantom.brain_weight)
    dilation = effects.ventricle_dilation_mm + individual.ventricle_mm
    grow = np.clip((dilation - phantom.ventricle_mm) / 2.0, 0.0, 1.0)
    keep = 1.0 - grow * phantom.ventricle_region
    gm = np.clip(gm * individual.gm_density, 0.0, 1.0 - wm) * keep
    gm *= 1.0 - effects.hippocampal_gm_loss * phantom.hippocampus
    if effects.severity_gm_loss:
        gm *= 1.0 - effects.severity_gm_loss * phantom.severity_t1w
    wm = wm * keep
    csf = np.clip(phantom.hull - gm - wm, 0.0, 1.0)
    amplitude = LF_AMPLITUDE["gm"] * gm + LF_AMPLITUDE["wm"] * wm + LF_AMPLITUDE["csf"] * csf
    amplitude *= individual.lf_pattern
    amplitude *= 1.0 - (1.0 - effects.pcc_lf_amplitude_factor) * phantom.pcc
    if effects.severity_lf_factor != 1.0:
        amplitude *= 1.0 - (1.0 - effects.severity_lf_factor) * phantom.severity_bold
    return SubjectMaps(
        t1=_contrast(gm, wm, csf, phantom.hull, T1_TISSUE, phantom.t1_outside),
        bold_baseline=_contrast(gm, wm, csf, phantom.hull, BOLD_TISSUE, phantom.bold_outside),
        lf_amplitude=(amplitude * phantom.hull).astype(np.float32),
    )

"""Simulated acquisitions for ``bidsfusion synth``: place the phantom, sample, add artefacts.

Geometry. Every scan has a native->MNI world matrix ``to_mni`` (4x4, mm):
``mni = to_mni @ [x, y, z, 1]`` for a point ``(x, y, z)`` in the scan's own
scanner (RAS) coordinates, i.e. the world coordinates given by its NIfTI
affine. ``to_mni`` is the inverse of the placement ``native = k R (mni - c) + d``:
the head centre ``c`` is scaled by the subject's head size ``k``, rotated by
``R`` (up to 10 degrees about each axis) and shifted by ``d`` (up to 10 mm per
axis). Images are stored RAS+ with a diagonal affine (axis i = world axis i,
voxel (0, 0, 0) at the most left-posterior-inferior corner); the field of view
is the bounding box of the head (T1w) or brain hull (bold) plus a margin.

Motion. ``motion_parameters`` gives per volume ``t`` the row
``(trans_x, trans_y, trans_z, rot_x, rot_y, rot_z)`` in mm and radians. Its
matrix ``T_t = rigid_matrix(row, centre)`` (:mod:`bidsfusion.rigid`,
whose convention this is), with ``centre`` the world position of the
voxel-grid centre, maps the world coordinates of volume ``t`` onto those of
volume 0: the anatomy at ``x`` in volume ``t`` is at ``T_t @ x`` in volume 0,
so volume ``t`` was simulated as volume 0 sampled at ``T_t @ x``. Row 0 is zero.
A motion correction that resamples volume ``t`` onto volume 0 pulls each
output point ``y`` from ``inv(T_t) @ y``; in ITK terms (fixed = volume 0,
moving = volume t) the registration transform is ``inv(T_t)``, expressed in
RAS here (ITK works in LPS). Volume ``t`` lies in MNI at ``to_mni @ T_t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import scipy.fft
import SimpleITK as sitk
from scipy import ndimage

from bidsfusion.modality import FALFF_BAND
from bidsfusion.rigid import rigid_matrix, rotation_matrix, volume_centre
from bidsfusion.synth.anatomy import PHANTOM_AFFINE, SubjectMaps

HF_AMPLITUDE = 0.003
"""Relative amplitude of the fast (respiration-like) oscillation."""


@dataclass(frozen=True)
class Site:
    """A scanner: T1w contrast ``900 * (t1 / 900) ** t1_gamma`` (below 1: less grey/white
    contrast) and the BOLD thermal noise sd, a range drawn from per run."""

    t1_gamma: float
    bold_noise: tuple[float, float]


SITES = {"A": Site(1.0, (6.0, 12.0)), "B": Site(0.8, (12.0, 18.0))}


def random_placement(rng: np.random.Generator, head_scale: float, centre: np.ndarray) -> np.ndarray:
    """A random native->MNI similarity (4x4) for a head of size ``head_scale`` (see module doc)."""
    placement = np.eye(4)
    placement[:3, :3] = head_scale * rotation_matrix(np.deg2rad(rng.uniform(-10, 10, 3)))
    placement[:3, 3] = rng.uniform(-10, 10, 3) - placement[:3, :3] @ centre
    return np.linalg.inv(placement)


def covering_grid(
    to_mni: np.ndarray, points_mni: np.ndarray, voxel_mm: float, margin_mm: float
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and RAS+ affine of an isotropic grid covering ``points_mni`` (3, N) in native space."""
    native = np.linalg.inv(to_mni) @ np.vstack([points_mni, np.ones(points_mni.shape[1])])
    low = native[:3].min(axis=1) - margin_mm
    high = native[:3].max(axis=1) + margin_mm
    shape = tuple(int(n) for n in np.ceil((high - low) / voxel_mm) + 1)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = low
    return shape, affine


def resample(volume: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear ``out[o] = volume[matrix @ o]`` (voxel indices, 4x4), 0 outside, float32.

    SimpleITK on one thread (parallelism is per subject); about 3x faster than
    ``scipy.ndimage.affine_transform`` with the same values. Arrays are indexed
    (i, j, k) like NIfTI; the result is Fortran-ordered.
    """
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.T, dtype=np.float32))
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation(matrix[:3, 3].tolist())
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in shape[:3]])
    resampler.SetTransform(transform)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetNumberOfThreads(1)
    return sitk.GetArrayFromImage(resampler.Execute(image)).T


def sample(volume: np.ndarray, vox_to_mni: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A phantom-grid ``volume`` sampled on the grid (``vox_to_mni``, ``shape``), float32."""
    return resample(volume, np.linalg.inv(PHANTOM_AFFINE) @ vox_to_mni, shape)


def bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field ``exp(quadratic polynomial)``, about 0.8..1.2, ``shape``."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    terms = (x, y, z, x * x - 0.33, y * y - 0.33, z * z - 0.33, x * y, x * z, y * z)
    coefficients = rng.normal(0.0, 0.07, len(terms)).astype(np.float32)
    return np.exp(sum(c * term for c, term in zip(coefficients, terms, strict=True)))


def to_nifti(data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> nib.Nifti1Image:
    """int16 NIfTI (no scaling) with qform = sform = scanner, units mm/s, pixdim[4] = ``tr``."""
    values = np.clip(np.rint(data), 0, np.iinfo(np.int16).max).astype(np.int16)
    image = nib.Nifti1Image(values, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        image.header["pixdim"][4] = tr
    return image


def render_t1(
    maps: SubjectMaps,
    head_points: np.ndarray,
    to_mni: np.ndarray,
    rng: np.random.Generator,
    site: Site = SITES["A"],
) -> nib.Nifti1Image:
    """A whole-head T1w: 1.5-2 mm voxels, the site's contrast, smooth bias field, Rician
    noise (sigma 10-25)."""
    voxel_mm = round(float(rng.uniform(1.5, 2.0)), 2)
    shape, affine = covering_grid(to_mni, head_points, voxel_mm, margin_mm=6.0)
    t1 = 900.0 * (np.maximum(maps.t1, 0.0) / 900.0) ** site.t1_gamma
    image = sample(t1, to_mni @ affine, shape) * bias_field(shape, rng)
    sigma = np.float32(rng.uniform(10.0, 25.0))
    noise = rng.standard_normal((2, *shape[::-1]), dtype=np.float32).T * sigma
    return to_nifti(np.hypot(image + noise[..., 0], noise[..., 1]), affine)


def motion_parameters(rng: np.random.Generator, n_volumes: int) -> np.ndarray:
    """Smooth random-walk motion (n_volumes, 6): |trans| < 1 mm, |rot| < 1 degree, row 0 zero."""
    walk = ndimage.gaussian_filter1d(np.cumsum(rng.standard_normal((n_volumes, 6)), axis=0), 2.0, 0)
    walk -= walk[0]
    peak = np.concatenate([rng.uniform(0.1, 0.9, 3), np.deg2rad(rng.uniform(0.1, 0.9, 3))])
    return walk * peak / np.maximum(np.abs(walk).max(axis=0), 1e-12)


def band_limited(rng: np.random.Generator, n: int, n_volumes: int, tr: float) -> np.ndarray:
    """``n`` independent series with power only in ``FALFF_BAND``, (n, n_volumes), overall std 1."""
    freqs = np.fft.rfftfreq(n_volumes, tr)
    band = np.flatnonzero((freqs >= FALFF_BAND[0]) & (freqs <= FALFF_BAND[1]))
    spectrum = np.zeros((n, freqs.size), dtype=np.complex64)
    noise = rng.standard_normal((2, n, band.size), dtype=np.float32)
    spectrum[:, band] = noise[0] + 1j * noise[1]
    series = scipy.fft.irfft(spectrum, n=n_volumes, axis=1)
    return series / series.std()


def render_bold(
    maps: SubjectMaps,
    hull_points: np.ndarray,
    to_mni: np.ndarray,
    rng: np.random.Generator,
    n_volumes: int,
    site: Site = SITES["A"],
) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A resting-state run: 3-4 mm voxels, TR 2 or 2.5 s; returns the image and its motion.

    Signal per voxel: ``baseline * (1 + a * lf(t) + 0.003 * hf(t))`` with ``a`` the
    subject's LF amplitude map, ``lf`` independent 0.01-0.1 Hz noise, ``hf`` a shared
    sinusoid at 0.6-0.95 of Nyquist; then rigid motion, then Gaussian noise
    (sigma in the site's range, site A 6-12: about 1-2 % of the brain signal),
    clipped at 0.
    """
    voxel_mm = round(float(rng.uniform(3.0, 4.0)), 2)
    tr = float(rng.choice([2.0, 2.5]))
    shape, affine = covering_grid(to_mni, hull_points, voxel_mm, margin_mm=4.0)
    baseline = sample(maps.bold_baseline, to_mni @ affine, shape)
    amplitude = sample(maps.lf_amplitude, to_mni @ affine, shape).ravel(order="F")
    inside = np.flatnonzero(amplitude > 0)
    times = np.arange(n_volumes, dtype=np.float32) * tr
    hf = np.sin(2 * np.pi * rng.uniform(0.6, 0.95) / (2 * tr) * times + rng.uniform(0, 2 * np.pi))
    lf = band_limited(rng, inside.size, n_volumes, tr)
    data = np.empty((*shape, n_volumes), dtype=np.float32, order="F")
    data[...] = baseline[..., None]
    voxels = data.reshape(-1, n_volumes, order="F")
    voxels[inside] *= 1.0 + amplitude[inside, None] * lf + HF_AMPLITUDE * hf
    motion = motion_parameters(rng, n_volumes)
    centre = volume_centre(affine, shape)
    for t in range(1, n_volumes):
        matrix = np.linalg.inv(affine) @ rigid_matrix(motion[t], centre) @ affine
        data[..., t] = resample(data[..., t], matrix, shape)
    sigma = np.float32(rng.uniform(*site.bold_noise))
    data += rng.standard_normal(data.shape[::-1], dtype=np.float32).T * sigma
    return to_nifti(data, affine, tr), motion

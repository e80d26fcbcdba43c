"""nibabel <-> SimpleITK conversions, similarity and rigid registration, one-shot resampling."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from bidsfusion.errors import InputDataError
from bidsfusion.preprocess.images import (
    RAS_TO_LPS,
    array_to_sitk,
    matrix_from_transform,
    nib_to_sitk,
    sitk_to_array,
    transform_from_matrix,
)
from bidsfusion.preprocess.mask import head_mask
from bidsfusion.preprocess.motion import realign
from bidsfusion.preprocess.register import (
    compose,
    register_rigid,
    register_to_template,
    resample_to_grid,
)
from bidsfusion.rigid import rigid_matrix, rotation_matrix
from bidsfusion.space import MNI_GRID_SHAPE, mni_brain_mask, mni_template
from bidsfusion.synth.anatomy import PHANTOM_SHAPE, Effects, load_phantom, subject_maps
from bidsfusion.synth.dataset import MODALITIES, plan_dataset
from bidsfusion.synth.individuality import draw_individuality
from bidsfusion.synth.scanner import SITES, random_placement, render_t1

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

STUDYFORREST = (
    Path(os.environ.get("BIDSFUSION_STUDYFORREST", "/work/shared/data/studyforrest-sub02"))
    / "sub-02"
)
T1W = STUDYFORREST / "anat" / "sub-02_T1w.nii.gz"
BOLD = STUDYFORREST / "func" / "sub-02_task-oneback_run-1_bold.nii.gz"
needs_studyforrest = pytest.mark.skipif(not T1W.exists(), reason=f"{T1W} not available")


def _oblique_affine() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rigid_matrix([0, 0, 0, 0.2, -0.3, 0.4], np.zeros(3))[:3, :3] @ np.diag(
        [-2.0, 2.5, 3.0]
    )
    affine[:3, 3] = [30.0, -40.0, 12.0]
    return affine


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def _lps_point(transform: sitk.Transform, ras: np.ndarray) -> np.ndarray:
    """Apply a SimpleITK transform to a RAS point, returning RAS."""
    return RAS_TO_LPS @ np.asarray(transform.TransformPoint(tuple(RAS_TO_LPS @ ras)))


# --- conversions -------------------------------------------------------------------------


def test_array_sitk_round_trip_keeps_world_positions() -> None:
    affine = _oblique_affine()
    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    image = array_to_sitk(data, affine)
    assert image.GetSize() == (5, 6, 7)
    for index in [(0, 0, 0), (4, 1, 6), (2, 5, 3)]:
        assert image.GetPixel(index) == data[index]
        world_ras = affine @ [*index, 1.0]
        np.testing.assert_allclose(
            image.TransformIndexToPhysicalPoint(index), RAS_TO_LPS @ world_ras[:3], atol=1e-9
        )
    back, back_affine = sitk_to_array(image)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(back_affine, affine, atol=1e-12)


def test_nibabel_round_trip() -> None:
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), _oblique_affine())
    image = nib_to_sitk(img)
    assert image.GetPixelID() == sitk.sitkFloat32
    data, affine = sitk_to_array(image)
    np.testing.assert_allclose(affine, img.affine, atol=1e-6)
    np.testing.assert_array_equal(data, img.get_fdata())


def test_sheared_or_flat_affines_are_rejected() -> None:
    sheared = np.eye(4)
    sheared[0, 1] = 0.3
    with pytest.raises(InputDataError, match="shear"):
        array_to_sitk(np.zeros((2, 2, 2)), sheared)
    with pytest.raises(InputDataError, match="zero voxel size"):
        array_to_sitk(np.zeros((2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))


def test_transform_matrices_are_ras() -> None:
    euler = sitk.Euler3DTransform((5.0, -3.0, 20.0), 0.1, -0.2, 0.3, (4.0, 5.0, -6.0))
    matrix = matrix_from_transform(euler)
    points = np.random.default_rng(1).normal(0, 50, (5, 3))
    for point in points:
        np.testing.assert_allclose(_apply(matrix, point), _lps_point(euler, point), atol=1e-9)
        back = transform_from_matrix(matrix)
        np.testing.assert_allclose(_lps_point(back, point), _lps_point(euler, point), atol=1e-9)


def test_compose_applies_in_the_order_given() -> None:
    shift = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    stretch = sitk.AffineTransform(3)
    stretch.SetMatrix((2.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    assert compose(shift, stretch).TransformPoint((1.0, 0.0, 0.0)) == (4.0, 0.0, 0.0)
    assert compose(stretch, shift).TransformPoint((1.0, 0.0, 0.0)) == (3.0, 0.0, 0.0)


def test_resample_to_grid_order_and_direction() -> None:
    """A linear ramp in RAS world coordinates survives resampling exactly."""
    affine = _oblique_affine()
    affine[:3, :3] *= 2.0  # a large source field of view
    affine[:3, 3] = [0.0, 0.0, 0.0]
    centre = affine[:3, :3] @ (np.array([30, 30, 30]) - 1) / 2
    affine[:3, 3] = -centre
    index = np.stack(np.meshgrid(*[np.arange(30)] * 3, indexing="ij"), -1)
    world = _apply(affine, index.reshape(-1, 3)).reshape(30, 30, 30, 3)

    def ramp(w: np.ndarray) -> np.ndarray:
        return 2.0 * w[..., 0] - w[..., 1] + 0.5 * w[..., 2] + 100.0

    source = array_to_sitk(ramp(world).astype(np.float64), affine)
    grid = np.diag([3.0, 2.0, 4.0, 1.0])
    grid[:3, 3] = [-12.0, 8.0, -10.0]
    shape = (8, 10, 6)
    grid_world = _apply(grid, np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1))
    identity = sitk.Transform(3, sitk.sitkIdentity)
    out = resample_to_grid(source, identity, grid, shape)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ramp(grid_world), atol=1e-3)
    # a transform maps grid points to source points: RAS shift (5, -3, 2)
    shift = sitk.TranslationTransform(3, tuple(RAS_TO_LPS @ [5.0, -3.0, 2.0]))
    out = resample_to_grid(source, shift, grid, shape)
    np.testing.assert_allclose(out, ramp(grid_world + np.array([5.0, -3.0, 2.0])), atol=1e-3)
    assert resample_to_grid(source, identity).shape == MNI_GRID_SHAPE


# --- registration ------------------------------------------------------------------------


def _template_correlation(image: sitk.Image, transform: sitk.Transform, sigma_mm: float) -> float:
    """Pearson correlation with the 2 mm template inside its brain mask (optionally smoothed)."""
    template = mni_template(2)
    mask = np.asanyarray(mni_brain_mask(2).dataobj) > 0
    out = resample_to_grid(image, transform, template.affine, template.shape)
    reference = template.get_fdata()
    if sigma_mm:
        out = ndimage.gaussian_filter(out, sigma_mm / 2.0)
        reference = ndimage.gaussian_filter(reference, sigma_mm / 2.0)
    return float(np.corrcoef(out[mask], reference[mask])[0, 1])


def _brain_points(step: int = 4) -> np.ndarray:
    """RAS mm positions of every ``step``-th template brain voxel (2 mm mask)."""
    mask = mni_brain_mask(2)
    index = np.argwhere(np.asanyarray(mask.dataobj)[::step, ::step, ::step] > 0) * step
    return _apply(mask.affine, index)


def test_recovers_a_planted_similarity_of_the_template() -> None:
    template = mni_template(2)
    centre = _brain_points().mean(axis=0)
    planted = rigid_matrix([8.0, -6.0, 10.0, 0.10, -0.07, 0.09], centre)
    planted[:3, :3] *= 1.06  # moving world -> template world
    moving = resample_to_grid(
        nib_to_sitk(template), transform_from_matrix(planted), template.affine, template.shape
    )
    moving_image = array_to_sitk(moving, template.affine)
    transform = register_to_template(moving_image, skull_stripped=True)
    # the result maps template points to moving points: it undoes the planted matrix
    residual = planted @ matrix_from_transform(transform)
    points = _brain_points()
    error = np.linalg.norm(_apply(residual, points) - points, axis=1)
    assert error.max() < 1.5  # mm; measured ~0.3
    assert abs(transform.GetScale() - 1 / 1.06) < 0.01
    assert _template_correlation(moving_image, transform, sigma_mm=0.0) > 0.95


def test_registration_is_reproducible() -> None:
    """Same input, same parameters: SimpleITK's seed 0 would mean 'seed from the clock'."""
    template = mni_template(2)
    planted = rigid_matrix([4.0, -3.0, 5.0, 0.05, -0.04, 0.06], _brain_points().mean(axis=0))
    moving = resample_to_grid(
        nib_to_sitk(template), transform_from_matrix(planted), template.affine, template.shape
    )
    image = array_to_sitk(moving, template.affine)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # as the participant level runs it
    try:
        first = register_to_template(image, skull_stripped=True)
        second = register_to_template(image, skull_stripped=True)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    # identical on one thread; seeds from the clock differ by ~1e-4, and the order of
    # multithreaded sums by ~2e-6 once amplified by the optimiser
    np.testing.assert_array_equal(first.GetParameters(), second.GetParameters())


@pytest.fixture(scope="module")
def t1w() -> tuple[nib.Nifti1Image, sitk.Image, sitk.Similarity3DTransform]:
    img = nib.load(T1W)
    image = nib_to_sitk(img)
    return img, image, register_to_template(image)


@needs_studyforrest
@pytest.mark.slow
def test_whole_head_t1w_to_mni(t1w: tuple[nib.Nifti1Image, sitk.Image, sitk.Transform]) -> None:
    _, image, transform = t1w
    # unsmoothed correlation is limited by anatomy and contrast (measured 0.58); at 4 mm
    # smoothing it is 0.85, and drops below 0.75 for a 6 mm misregistration
    assert _template_correlation(image, transform, sigma_mm=0.0) > 0.5
    assert _template_correlation(image, transform, sigma_mm=4.0) > 0.8
    assert 0.85 < transform.GetScale() < 1.15


def _header_change_error(
    t1w: tuple[nib.Nifti1Image, sitk.Image, sitk.Transform], angles_rad: np.ndarray
) -> np.ndarray:
    """Distances (mm, (N,)) on template brain points between the registration of the T1w
    with a header moved by (30, -40, 50) mm and ``angles_rad`` (rx, ry, rz, RAS, about the
    world origin) and the untilted registration moved alike."""
    img, _, transform = t1w
    moved = rigid_matrix([30.0, -40.0, 50.0, *angles_rad], np.zeros(3))
    image = array_to_sitk(np.asanyarray(img.dataobj).astype(np.float32), moved @ img.affine)
    again = register_to_template(image)
    points = _brain_points()
    expected = _apply(moved @ matrix_from_transform(transform), points)
    return np.linalg.norm(_apply(matrix_from_transform(again), points) - expected, axis=1)


@needs_studyforrest
@pytest.mark.slow
def test_t1w_registration_follows_a_planted_header_change(
    t1w: tuple[nib.Nifti1Image, sitk.Image, sitk.Transform],
) -> None:
    error = _header_change_error(t1w, np.array([0.12, -0.09, 0.07]))  # 6.9, -5.2, 4.0 degrees
    assert error.max() < 2.0  # mm; measured 0.03 (0.3 before the rotation search)


def _tilt_id(tilt_deg: tuple[float, ...]) -> str:
    return ",".join(f"{angle:+.0f}" for angle in tilt_deg)


# Header tilts (degrees about the RAS x, y, z axes of the T1w's world). This head is
# already pitched by ~19 degrees in its own world (the untilted registration's rotation),
# so +20 about x is a ~39 degree pitch. Measured maximum error (mm) before the rotation
# search (upright start only) -> with it:
# x +20: 0.49 -> 0.01, x -20: 0.03 -> 0.06, y +20: 0.33 -> 0.04, y -20: 0.10 -> 0.03,
# z +20: 0.17 -> 0.01, z -20: 0.08 -> 0.03, (20, 0, 15): 44.7 -> 0.02,
# (0, -20, 20): 53.5 -> 0.02, (20, -20, 0): 63.1 -> 0.10.
HEADER_TILTS_DEG = [
    (20.0, 0.0, 0.0),
    (-20.0, 0.0, 0.0),
    (0.0, 20.0, 0.0),
    (0.0, -20.0, 0.0),
    (0.0, 0.0, 20.0),
    (0.0, 0.0, -20.0),
    (20.0, 0.0, 15.0),
    (0.0, -20.0, 20.0),
    (20.0, -20.0, 0.0),
]


@needs_studyforrest
@pytest.mark.slow
@pytest.mark.parametrize("tilt_deg", HEADER_TILTS_DEG, ids=_tilt_id)
def test_t1w_registration_recovers_20_degree_header_tilts(
    t1w: tuple[nib.Nifti1Image, sitk.Image, sitk.Transform], tilt_deg: tuple[float, ...]
) -> None:
    error = _header_change_error(t1w, np.deg2rad(tilt_deg))
    assert error.max() < 2.0  # mm; measured <= 0.1 (see HEADER_TILTS_DEG)


# Synthetic head of scale 0.9 (the smallest ``bidsfusion synth`` draws), tilted from
# upright. Measured maximum error (mm) before the rotation search -> with it:
# x +20: 24.4 -> 0.25, z -20: 21.7 -> 0.26, (20, 0, 15): 26.2 -> 0.27.
@pytest.mark.parametrize(
    "tilt_deg",
    [(20.0, 0.0, 0.0), (0.0, 0.0, -20.0), (20.0, 0.0, 15.0)],
    ids=_tilt_id,
)
def test_synthetic_t1w_registration_recovers_20_degree_tilts(tilt_deg: tuple[float, ...]) -> None:
    """A ``bidsfusion synth`` T1w placed as in :mod:`bidsfusion.synth.scanner`:
    native = 0.9 R (mni - c) + d, R the tilt, c the head centre, d a shift (mm)."""
    phantom = load_phantom()
    placement = np.eye(4)  # MNI -> native, the registration's truth
    placement[:3, :3] = 0.9 * rotation_matrix(np.deg2rad(tilt_deg))
    placement[:3, 3] = np.array([5.0, -8.0, 6.0]) - placement[:3, :3] @ phantom.centre_mm
    maps = subject_maps(phantom, Effects())
    img = render_t1(maps, phantom.head_points, np.linalg.inv(placement), np.random.default_rng(0))
    transform = register_to_template(nib_to_sitk(img))
    points = _brain_points()
    error = np.linalg.norm(
        _apply(matrix_from_transform(transform), points) - _apply(placement, points), axis=1
    )
    assert error.max() < 3.0  # mm; measured <= 0.3
    assert abs(transform.GetScale() - 0.9) < 0.01


def _synth_t1w(index: int, coupling: float) -> tuple[nib.Nifti1Image, np.ndarray, float]:
    """Subject ``index`` of ``bidsfusion synth --subjects 160 --sessions 1 --ad-fraction 0.4
    --effect-strength 3 --coupling <coupling>`` (seed 0): its T1w, its true MNI -> native
    placement (4x4) and head scale, drawn as the synth draws them."""
    plans = plan_dataset(
        160, seed=0, max_sessions=1, effect_strength=3.0, ad_fraction=0.4, coupling=coupling
    )
    plan = plans[index - 1]
    individual = draw_individuality(
        np.random.default_rng([0, index, 0, 0]), PHANTOM_SHAPE, 1.0, coupling
    )
    phantom = load_phantom()
    maps = subject_maps(phantom, Effects.from_strength(plan.effect), individual)
    rng = np.random.default_rng([0, index, 1, MODALITIES.index("T1w")])
    to_mni = random_placement(rng, plan.head_scale, phantom.centre_mm)
    img = render_t1(maps, phantom.head_points, to_mni, rng, SITES[plan.site])
    return img, np.linalg.inv(to_mni), plan.head_scale


# Subjects of the 160-subject benchmark data (synth --coupling 3) whose registration put
# the template brain on the scalp when every start was optimised and chosen over the
# template mask dilated by 6 mm: median error 15.1, 16.8, 17.8 mm (scale ratio 1.26-1.27,
# 24 % too large). Now 2.6, 3.0, 3.3 mm (max 5.2; ratio 1.04-1.05), where well-registered
# subjects measure 1-2 mm against this phantom.
@pytest.mark.parametrize("index", [11, 49, 127])
def test_synthetic_t1w_registration_does_not_settle_on_the_scalp(index: int) -> None:
    img, placement, head_scale = _synth_t1w(index, coupling=3.0)
    transform = register_to_template(nib_to_sitk(img))
    points = _brain_points()
    error = np.linalg.norm(
        _apply(matrix_from_transform(transform), points) - _apply(placement, points), axis=1
    )
    assert np.median(error) < 5.0  # mm
    assert error.max() < 8.0
    assert abs(transform.GetScale() / head_scale - 1.0) < 0.08


def _mattes_mi(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> float:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.REGULAR)
    method.SetMetricSamplingPercentage(0.2, 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform)
    return -method.MetricEvaluate(sitk.Cast(fixed, sitk.sitkFloat32), moving)


def _dice_with_mni_brain(mean: sitk.Image, to_mni: sitk.Transform) -> float:
    template = mni_template(2)
    out = resample_to_grid(mean, to_mni, template.affine, template.shape)
    epi = sitk.GetArrayFromImage(head_mask(array_to_sitk(out, template.affine))).T > 0
    brain = np.asanyarray(mni_brain_mask(2).dataobj) > 0
    return 2.0 * np.sum(epi & brain) / (epi.sum() + brain.sum())


@needs_studyforrest
@pytest.mark.slow
def test_mean_bold_to_t1w(t1w: tuple[nib.Nifti1Image, sitk.Image, sitk.Transform]) -> None:
    _, t1_image, to_t1 = t1w
    bold = nib.load(BOLD)
    corrected, _ = realign(bold.get_fdata(dtype=np.float32), bold.affine)
    mean = array_to_sitk(corrected.mean(axis=3), bold.affine)
    rigid = register_rigid(mean, t1_image)
    header = sitk.Euler3DTransform()
    # this run's header is off by ~10 degrees and ~10 mm: registration must fix it
    assert _mattes_mi(t1_image, mean, rigid) > _mattes_mi(t1_image, mean, header) + 0.1
    before = _dice_with_mni_brain(mean, compose(to_t1, header))
    after = _dice_with_mni_brain(mean, compose(to_t1, rigid))
    assert after > before + 0.05  # measured 0.77 -> 0.89

    # a planted change of the BOLD header is followed (the result is reproducible)
    moved = rigid_matrix([6.0, -4.0, 5.0, 0.07, 0.05, -0.06], np.zeros(3))
    moved_mean = array_to_sitk(corrected.mean(axis=3), moved @ bold.affine)
    again = register_rigid(moved_mean, t1_image)
    points = _apply(matrix_from_transform(to_t1), _brain_points())
    expected = _apply(moved @ matrix_from_transform(rigid), points)
    error = np.linalg.norm(_apply(matrix_from_transform(again), points) - expected, axis=1)
    assert error.max() < 3.0  # mm, with 6 x 6 x 3.3 mm BOLD voxels


@needs_studyforrest
@pytest.mark.slow
def test_mean_bold_to_t1w_with_an_origin_1000_mm_off(
    t1w: tuple[nib.Nifti1Image, sitk.Image, sitk.Transform],
) -> None:
    _, t1_image, to_t1 = t1w
    bold = nib.load(BOLD)
    corrected, _ = realign(bold.get_fdata(dtype=np.float32), bold.affine)
    mean = corrected.mean(axis=3)
    rigid = register_rigid(array_to_sitk(mean, bold.affine), t1_image)
    off = np.eye(4)
    off[:3, 3] = [1000.0, 0.0, 0.0]
    again = register_rigid(array_to_sitk(mean, off @ bold.affine), t1_image)
    points = _apply(matrix_from_transform(to_t1), _brain_points())
    expected = _apply(off @ matrix_from_transform(rigid), points)
    error = np.linalg.norm(_apply(matrix_from_transform(again), points) - expected, axis=1)
    assert error.max() < 3.0  # started from the centres aligned, not the headers


def test_a_registration_itk_gives_up_on_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import bidsfusion.preprocess.register as register

    monkeypatch.setattr(register, "FAR_APART_MM", float("inf"))  # keep the headers' start
    rng = np.random.default_rng(0)
    fixed = array_to_sitk(rng.random((24, 24, 24), dtype=np.float32), np.diag([3.0, 3, 3, 1]))
    far = np.diag([3.0, 3, 3, 1])
    far[:3, 3] = 5000.0
    moving = array_to_sitk(rng.random((24, 24, 24), dtype=np.float32), far)
    with pytest.raises(register.RegistrationFailedError) as caught:
        register_rigid(moving, fixed)
    assert "\n" not in str(caught.value) and "sample" in str(caught.value).lower()

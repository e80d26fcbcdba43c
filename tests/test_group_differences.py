"""The ``group-differences`` analysis: U, RBC, p and q against scipy (ties included), a planted
effect found where it was planted, and the analysis end to end on a tiny trained group run."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import ClassVar

import nibabel as nib
import numpy as np
import pytest
import torch
from runner import run_main
from scipy.stats import false_discovery_control, mannwhitneyu
from test_group import GROUP_ARGS, write_group_inputs

from bidsfusion import hookimpl
from bidsfusion.analyses.group_differences import (
    MIN_COVERAGE,
    NO_ROWS,
    PEAK_COLUMNS,
    bh_qvalues,
    difference_maps,
    extreme_dims,
    mann_whitney,
    model_affine,
    peaks,
    write_group_differences,
)
from bidsfusion.analyses.saliency import brain_saliency
from bidsfusion.atlases import ATLASES, regions
from bidsfusion.errors import InputDataError
from bidsfusion.evaluate.logreg import fit, load_fold
from bidsfusion.plugins import get_plugin_manager
from bidsfusion.space import MNI_GRID_AFFINE, brain_coverage
from bidsfusion.tsv import read_tsv

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

RNG = np.random.default_rng(0)


def _scipy(a: np.ndarray, b: np.ndarray):
    """scipy's test per column, in float64 (scipy keeps float32 inputs' precision)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return mannwhitneyu(
        a, b, axis=0, alternative="two-sided", method="asymptotic", use_continuity=True
    )


@pytest.mark.parametrize("n1, n2", [(2, 2), (5, 9), (13, 4)])
def test_u_rbc_and_p_equal_scipy_with_ties(n1: int, n2: int) -> None:
    a = RNG.integers(0, 4, (n1, 300)).astype(np.float32)  # ties everywhere
    b = RNG.integers(0, 4, (n2, 300)).astype(np.float32)
    a[:, 0], b[:, 0] = 2, 2  # every value equal
    a[:, 1], b[:, 1] = 3, 0  # every positive above every negative
    u1, p = mann_whitney(a, b)
    expected = _scipy(a, b)
    np.testing.assert_array_equal(u1, expected.statistic)
    np.testing.assert_allclose(p, expected.pvalue, rtol=1e-12, atol=0)
    rbc, q, tested = difference_maps(a.reshape(n1, 3, 10, 10), b.reshape(n2, 3, 10, 10))
    rbc, q, tested = rbc.ravel(), q.ravel(), tested.ravel()
    varies = np.concatenate([a, b]).std(axis=0) > 0
    np.testing.assert_array_equal(tested, varies)
    np.testing.assert_allclose(rbc[varies], 2 * expected.statistic[varies] / (n1 * n2) - 1)
    assert rbc[1] == 1.0 and (rbc[~varies] == 0).all() and (q[~varies] == 1).all()
    np.testing.assert_allclose(q[varies], false_discovery_control(expected.pvalue[varies]))


def test_bh_q_equals_scipy_and_is_monotone_in_p() -> None:
    p = np.concatenate([RNG.random(400) ** 4, [1.0, 1.0, 0.0], np.full(5, 0.01)])
    RNG.shuffle(p)
    q = bh_qvalues(p)
    np.testing.assert_allclose(q, false_discovery_control(p), rtol=1e-12)
    order = np.argsort(p)
    assert (np.diff(q[order]) >= 0).all() and q.max() <= 1 and (q >= p).all()
    assert bh_qvalues(np.array([])).shape == (0,)


def test_extreme_dims_of_the_coefficients() -> None:
    assert extreme_dims(np.array([0.2, -0.1, 0.7, -0.9])) == [("pos", 2, 0.7), ("neg", 3, -0.9)]
    assert extreme_dims(np.array([0.0, 0.3, 0.0])) == [("pos", 1, 0.3)]
    assert extreme_dims(np.zeros(4)) == []


def test_model_voxels_are_the_centres_of_their_grid_blocks() -> None:
    affine = model_affine(16)
    block = np.stack(np.meshgrid(*[np.arange(8, 12)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centre = (MNI_GRID_AFFINE[:3, :3] @ block.T).T.mean(0) + MNI_GRID_AFFINE[:3, 3]
    np.testing.assert_allclose(affine[:3, :3] @ [2, 2, 2] + affine[:3, 3], centre)
    np.testing.assert_allclose(model_affine(64), MNI_GRID_AFFINE)


def test_a_planted_ad_shift_is_found_where_it_was_planted() -> None:
    size = 8
    brain = np.zeros((size,) * 3, dtype=bool)
    brain[1:7, 1:7, 1:7] = True
    region = (slice(2, 4), slice(4, 6), slice(1, 3))
    ad, hc = (RNG.random((n, size, size, size)) * brain for n in (10, 12))
    ad[(slice(None), *region)] += 1.0  # every AD subject above every HC subject there
    rbc, q, tested = difference_maps(ad, hc)
    inside = np.zeros_like(brain)
    inside[region] = True
    assert (tested == brain).all() and (rbc[~brain] == 0).all() and (q[~brain] == 1).all()
    assert (rbc[inside] == 1.0).all() and np.abs(rbc[brain & ~inside]).max() < 0.9
    assert q[inside].max() < 0.05 < np.median(q[brain & ~inside])
    affine = model_affine(size)
    found = peaks(rbc, tested, affine)
    mm = np.array([affine[:3, :3] @ v + affine[:3, 3] for v in found])
    # the region's extent in mm through the 64^3 grid affine: model voxel i is grid 8i..8i+7
    low = MNI_GRID_AFFINE[:3, 3] + 3.0 * np.array([8 * s.start for s in region])
    high = MNI_GRID_AFFINE[:3, 3] + 3.0 * np.array([8 * s.stop - 1 for s in region])
    assert len(found) == 5 and ((mm[0] >= low) & (mm[0] <= high)).all()
    assert all(inside[v] for v in found[: inside.sum()])  # the planted voxels come first


def test_peaks_are_local_maxima_at_least_12_mm_apart() -> None:
    rbc = np.zeros((64, 64, 64))  # 3 mm voxels
    rbc[10, 10, 10], rbc[9, 10, 10] = 0.9, 0.85  # a neighbour: not a local maximum
    rbc[12, 11, 10] = 0.8  # a local maximum 6.7 mm from the first: not a peak
    rbc[13:16, 10, 10] = 0.6, 0.5, 0.4  # a slope away from it: no local maximum 12 mm off
    rbc[10, 15, 10] = -0.7  # 15 mm from the first: a peak (|RBC|)
    rbc[30, 30, 30] = 0.95  # untested: never a peak
    tested = np.ones_like(rbc, dtype=bool)
    tested[30, 30, 30] = False
    assert peaks(rbc, tested, model_affine(64)) == [(10, 10, 10), (10, 15, 10)]


class Probe:
    """Keeps the analysis context a group run hands its analyses."""

    seen: ClassVar[list] = []

    @hookimpl
    def register_analyses(self, register):
        register("probe", Probe.seen.append)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny group run (16^3, one epoch, objective S) with group-differences; returns
    (args, out, context, seconds of the run)."""
    root = tmp_path_factory.mktemp("group_differences")
    bids, out = write_group_inputs(root)
    args = [bids, out, "group", "-w", root / "work", "--objective", "S", *GROUP_ARGS]
    args += ["--epochs", "1", "--folds", "2"]
    pm = get_plugin_manager()
    pm.register(Probe(), name="group-differences-probe")
    try:
        Probe.seen.clear()
        start = time.perf_counter()
        result = run_main(*args, "--analysis", "group-differences", "--analysis", "probe")
        seconds = time.perf_counter() - start
    finally:
        pm.unregister(name="group-differences-probe")
    assert result.code == 0, result.err
    return args, out, Probe.seen[0], seconds


def test_maps_and_peaks_of_the_trained_run(trained) -> None:
    _, out, context, _ = trained
    folder = out / "group" / "group-differences" / "objective-S"
    columns, table = read_tsv(folder / "peaks.tsv")
    assert tuple(columns) == PEAK_COLUMNS and table
    model, volumes = context.model("S", 0), context.volumes("S", 0)
    labels = np.array([context.labels[s] for s in volumes.subjects])
    chosen = np.flatnonzero(labels >= 0)
    for modality in context.modalities:
        (row,) = [r for r in context.evaluation if (r.modality, r.fold) == (modality, 0)]
        data = load_fold(context.layout.fold("S", 0).representations, modality, 0)
        coefficients = fit(data, row.C, row.l1_ratio, row.seed, row.tuning).coef_[0]
        generator = torch.Generator().manual_seed(context.seed)
        encoder = model.encoders[modality]
        every = brain_saliency(lambda v, e=encoder: e(v).latent, volumes.volumes[modality][chosen],
                               generator, rescale=False).numpy()  # fmt: skip
        inside = (brain_coverage(16) >= MIN_COVERAGE).reshape(-1)
        for direction, dim, coefficient in extreme_dims(coefficients):
            stem = f"fold-0_desc-{modality}_dim-{dim}_stat-{{}}_saliency"
            sidecar = json.loads((folder / f"{stem.format('rbc')}.json").read_text())
            assert (sidecar["Direction"], sidecar["Dimension"]) == (direction, dim)
            assert sidecar["Coefficient"] == pytest.approx(coefficient)
            assert sidecar["Subjects"] == {"AD": 6, "HC": 10}
            assert "U1" in sidecar["SignConvention"]
            images = {s: nib.load(folder / f"{stem.format(s)}.nii.gz") for s in ("rbc", "q")}
            rbc, q = (np.asarray(images[s].dataobj) for s in ("rbc", "q"))
            assert rbc.shape == q.shape == (64, 64, 64)
            assert np.allclose(images["rbc"].affine, MNI_GRID_AFFINE)
            assert np.isfinite(rbc).all() and np.isfinite(q).all()
            assert rbc.min() >= -1 and rbc.max() <= 1 and q.min() >= 0 and q.max() <= 1
            assert np.abs(rbc).max() > 0
            # the map at model voxels (each a 4^3 block of the grid) equals scipy on saliency
            # recomputed independently (every dimension at once)
            maps = every[:, dim].reshape(len(chosen), -1)
            ad, hc = maps[labels[chosen] == 1], maps[labels[chosen] == 0]
            varies = np.concatenate([ad, hc]).std(axis=0) > 1e-4
            voxels = np.flatnonzero(varies & inside)[::37]
            i, j, k = np.unravel_index(np.flatnonzero(~inside), (16, 16, 16))
            assert not rbc[4 * i + 1, 4 * j + 2, 4 * k + 3].any()  # outside the brain: untested
            u1 = _scipy(ad[:, voxels], hc[:, voxels]).statistic
            i, j, k = np.unravel_index(voxels, (16, 16, 16))
            assert "without its rescaling" in sidecar["Saliency"]
            np.testing.assert_allclose(rbc[4 * i + 1, 4 * j + 2, 4 * k + 3],
                                       2 * u1 / 60 - 1, atol=1e-6)  # fmt: skip
            mine = [r for r in table if (r["modality"], r["direction"]) == (modality, direction)]
            assert [int(r["rank"]) for r in mine] == list(range(1, len(mine) + 1))
            for r in mine:
                xyz = np.array([float(r[c]) for c in ("x_mm", "y_mm", "z_mm")])
                grid = np.linalg.solve(MNI_GRID_AFFINE[:3, :3], xyz - MNI_GRID_AFFINE[:3, 3])
                voxel = tuple(np.floor(grid).astype(int))  # the centre of a 4^3 block
                assert float(r["rbc"]) == pytest.approx(rbc[voxel], abs=1e-6)
                assert float(r["q"]) == pytest.approx(q[voxel], abs=1e-6)
                assert float(r["brain_coverage"]) >= MIN_COVERAGE  # every peak in the brain
                assert set(ATLASES) <= set(r)


def test_a_rerun_overwrites_only_its_own_outputs(trained) -> None:
    _, out, context, _ = trained
    folder = out / "group" / "group-differences" / "objective-S"
    stale = folder / "fold-0_desc-T1w_dim-99_stat-rbc_saliency.nii.gz"
    temporary = folder / ".peaks.0123456789ab.tsv"
    kept = folder / "notes.txt"
    for path in (stale, temporary, kept):
        path.write_text("x")
    before = sorted(p.name for p in folder.iterdir() if p not in (stale, temporary, kept))
    write_group_differences(context)
    assert not stale.exists() and kept.exists()
    assert sorted(p.name for p in folder.iterdir() if p != kept) == before


def test_asked_for_with_nothing_to_analyse_it_fails_in_one_line(trained) -> None:
    args, _, context, _ = trained
    result = run_main(*args, "--eval-only", "--holdout", "0", "--analysis", "group-differences")
    assert result.code == 65
    assert f"analysis group-differences failed: {NO_ROWS}" in result.err
    zero = tuple(dataclasses.replace(r, C=1e-6, l1_ratio=1.0) for r in context.evaluation)
    with pytest.raises(InputDataError, match=r"no classifier has a nonzero coefficient$"):
        write_group_differences(dataclasses.replace(context, evaluation=zero))
    data = dataclasses.replace(context.config.data, positive="nobody")
    config = dataclasses.replace(context.config, data=data)
    with pytest.raises(InputDataError) as error:
        write_group_differences(dataclasses.replace(context, config=config))
    assert "at least 2 nobody and 2 HC evaluated subjects; found 0 and 10" in str(error.value)
    assert "\n" not in NO_ROWS + str(error.value)


def test_without_asking_for_it_nothing_to_analyse_is_a_warning(trained, caplog) -> None:
    _, _, context, _ = trained
    analyses = dataclasses.replace(context.config.analyses, analysis=())  # all registered ones
    config = dataclasses.replace(context.config, analyses=analyses)
    write_group_differences(dataclasses.replace(context, config=config, evaluation=()))
    assert f"{NO_ROWS}; skipped" in caplog.text


def test_the_end_to_end_run_is_quick(trained) -> None:
    *_, seconds = trained
    print(f"tiny group run with group-differences: {seconds:.1f} s")
    assert seconds < 60


def test_a_group_with_lower_saliency_maxima_keeps_its_sign() -> None:
    """HC inputs have a bright spot that AD inputs lack, so HC gradients of a quadratic
    latent peak there and AD maps have lower maxima; elsewhere both groups are alike. The
    unrescaled saliency the test uses says AD lower at the spot (RBC -1) and no difference
    elsewhere; maps rescaled per subject said AD higher everywhere else (HC's maps are
    divided by their higher maximum): the sign flips."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(1.0, 1.2, size=(16, 1, 16, 16, 16)).astype(np.float32))
    x[8:, 0, 6:10, 6:10, 6:10] = 3.0  # subjects 8.. are HC
    spot, far = (8, 8, 8), (slice(1, 15), slice(1, 15), slice(1, 3))

    def latent(v: torch.Tensor) -> torch.Tensor:
        return (v**2).flatten(1).sum(1, keepdim=True)

    raw = brain_saliency(latent, x, rescale=False)[:, 0].numpy()
    rbc, _, _ = difference_maps(raw[:8], raw[8:])
    assert rbc[spot] == -1 and abs(np.median(rbc[far])) < 0.3
    rescaled = brain_saliency(latent, x)[:, 0].numpy()
    flipped, _, _ = difference_maps(rescaled[:8], rescaled[8:])
    assert np.median(flipped[far]) > 0.9


def test_peaks_lie_in_the_brain_and_carry_their_regions() -> None:
    coverage = brain_coverage(16)
    affine = model_affine(16)
    inside = coverage >= MIN_COVERAGE
    hippocampus = np.rint(
        np.linalg.solve(affine[:3, :3], np.array([-26, -22, -14]) - affine[:3, 3])
    )
    voxel = tuple(int(v) for v in hippocampus)
    rbc = np.zeros((16, 16, 16))
    rbc[voxel] = -0.8
    rbc[0, 0, 0] = 0.99  # the corner of the field of view: no brain there
    tested = inside & (rbc != 0)
    found = peaks(rbc, tested, affine)
    assert found == [voxel] and inside[voxel] and not inside[0, 0, 0]
    mm = tuple(affine[:3, :3] @ np.array(voxel) + affine[:3, 3])
    labels = regions(mm)
    assert labels["aal"] == "Hippocampus_L" and "Hippocampus" in labels["harvard_oxford"]
    assert regions((-90.0, -110.0, -80.0)) == dict.fromkeys(ATLASES, "")

"""fALFF against an independent loop implementation of the DPABI definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bidsfusion.errors import InputDataError
from bidsfusion.preprocess.falff import band_bins, falff


def reference_falff(series: np.ndarray, tr: float, band: tuple[float, float]) -> float:
    """One voxel, straight from the definition: polyfit detrend, padded FFT, bin loops."""
    n = len(series)
    time = np.arange(n, dtype=np.float64)
    slope, intercept = np.polyfit(time, series.astype(np.float64), 1)
    detrended = series - (slope * time + intercept)
    padded = 1
    while padded < n:
        padded *= 2
    amplitude = np.abs(np.fft.fft(detrended, n=padded))
    low = math.ceil(band[0] * padded * tr)
    high = min(math.floor(band[1] * padded * tr), padded // 2)
    numerator = 0.0
    for k in range(low, high + 1):
        numerator += amplitude[k]
    denominator = 0.0
    for k in range(1, padded // 2 + 1):
        denominator += amplitude[k]
    return numerator / denominator


def _series(shape: tuple[int, ...], n_volumes: int, seed: int = 0) -> np.ndarray:
    """Noise with per-voxel offsets, linear drifts and a low-frequency component."""
    rng = np.random.default_rng(seed)
    time = np.arange(n_volumes)
    offsets = rng.uniform(500, 1500, shape)[..., None]
    drifts = rng.normal(0, 0.5, shape)[..., None] * time
    slow = rng.uniform(0, 20, shape)[..., None] * np.sin(2 * np.pi * 0.03 * 2.0 * time)
    return offsets + drifts + slow + rng.normal(0, 10, (*shape, n_volumes))


@pytest.mark.parametrize(("n_volumes", "tr"), [(150, 2.0), (128, 2.5), (131, 0.8)])
def test_matches_loop_reference(n_volumes: int, tr: float) -> None:
    data = _series((4, 3, 2), n_volumes)
    result = falff(data, tr)
    expected = np.zeros(data.shape[:3])
    for index in np.ndindex(data.shape[:3]):
        expected[index] = reference_falff(data[index], tr, (0.01, 0.1))
    np.testing.assert_allclose(result, expected, atol=1e-6, rtol=0)


def test_layouts_and_dtypes_agree() -> None:
    data = _series((5, 4, 3), 120, seed=1)
    mask = np.random.default_rng(2).random(data.shape[:3]) > 0.3
    reference = falff(data, 2.0, mask=mask)
    assert np.all(reference[~mask] == 0) and np.all(reference[mask] > 0)
    np.testing.assert_allclose(falff(np.asfortranarray(data), 2.0, mask=mask), reference, atol=1e-6)
    np.testing.assert_allclose(falff(data, 2.0)[mask], reference[mask], atol=1e-6)
    single = data.astype(np.float32)
    np.testing.assert_allclose(falff(single, 2.0, mask=mask), reference, atol=1e-5)
    np.testing.assert_allclose(falff(np.asfortranarray(single), 2.0), falff(single, 2.0), atol=1e-6)
    rounded = np.round(data)
    np.testing.assert_allclose(
        falff(rounded.astype(np.int16), 2.0, mask=mask), falff(rounded, 2.0, mask=mask), atol=1e-6
    )


def test_mask_constant_and_nan_voxels_are_zero() -> None:
    data = _series((3, 3, 3), 100)
    data[0, 0, 0] = 42.0
    data[1, 1, 1, 5] = np.nan
    mask = np.ones(data.shape[:3], dtype=bool)
    mask[2, 2, 2] = False
    result = falff(data, 2.0, mask=mask)
    assert result.dtype == np.float32
    assert result[0, 0, 0] == 0.0
    assert result[1, 1, 1] == 0.0
    assert result[2, 2, 2] == 0.0
    assert np.all(result[0, 1:] > 0)


def test_planted_sinusoids() -> None:
    tr, n_volumes = 1.0, 200
    time = np.arange(n_volumes) * tr
    rng = np.random.default_rng(3)
    data = np.empty((2, 1, 1, n_volumes))
    data[0, 0, 0] = 100 + 10 * np.sin(2 * np.pi * 0.05 * time) + rng.normal(0, 0.5, n_volumes)
    data[1, 0, 0] = 100 + 10 * np.sin(2 * np.pi * 0.2 * time) + rng.normal(0, 0.5, n_volumes)
    result = falff(data, tr)
    assert result[0, 0, 0] > 0.6  # measured 0.76
    assert result[1, 0, 0] < 0.15  # measured 0.08


def test_band_bins_by_hand() -> None:
    # T = 200 -> P = 256; 0.01 * 256 * 2 = 5.12 -> 6; 0.1 * 256 * 2 = 51.2 -> 51
    assert band_bins(200, 2.0) == (6, 51)
    # P = 16, TR 10: 1.6 -> 2, 16 -> clipped to the Nyquist bin 8
    assert band_bins(10, 10.0) == (2, 8)
    # the upper edge is clipped to the Nyquist bin P / 2
    assert band_bins(100, 2.0, (0.01, 10.0)) == (3, 64)


@pytest.mark.parametrize(
    ("n_volumes", "tr", "band", "words"),
    [
        (49, 2.0, (0.01, 0.1), "needs one full period, 100 s = 50 volumes"),
        (3, 2.0, (0.01, 0.1), "6 s of data"),
        (200, 2.0, (0.01, 0.0101), "no frequency bin"),
        (100, 0.0, (0.01, 0.1), "tr=0.0"),
        (100, -2.0, (0.01, 0.1), "tr=-2.0"),
        (100, 2.0, (0.1, 0.01), "0 < low < high"),
        (2, 20.0, (0.01, 0.1), "at least 3 volumes"),
        (100, 2.0, (0.0, 0.1), "0 < low < high"),
    ],
)
def test_band_errors(n_volumes: int, tr: float, band: tuple[float, float], words: str) -> None:
    with pytest.raises(InputDataError, match=words) as error:
        falff(np.ones((2, 2, 2, n_volumes)), tr, band)
    assert error.value.exit_code == 65
    assert "\n" not in str(error.value)


def test_shape_errors() -> None:
    with pytest.raises(InputDataError, match="4D"):
        falff(np.ones((4, 4, 100)), 2.0)
    with pytest.raises(InputDataError, match="mask shape"):
        falff(np.ones((4, 4, 4, 100)), 2.0, mask=np.ones((4, 4, 3), dtype=bool))

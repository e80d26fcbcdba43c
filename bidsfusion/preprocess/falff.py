"""Fractional amplitude of low-frequency fluctuations (fALFF), DPABI definition.

For each voxel time series of ``T`` volumes sampled every ``tr`` seconds:

1. remove mean and linear trend (least squares, as ``scipy.signal.detrend(type='linear')``);
2. zero-pad to ``P``, the smallest power of two with ``P >= T``;
3. take amplitudes ``|X[k]|`` of the real FFT, ``k = 0 .. P/2`` (bin ``k`` is
   ``k / (P * tr)`` Hz);
4. fALFF = sum of ``|X[k]|`` for ``k`` in ``ceil(f_low*P*tr) .. floor(f_high*P*tr)``
   (inclusive, 0-based, upper bin clipped to ``P/2``) divided by the sum over
   ``k = 1 .. P/2`` (DC excluded, Nyquist included).

The amplitude scale used by DPABI (``2 |X| / T``) cancels in the ratio.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from bidsfusion.errors import InputDataError
from bidsfusion.modality import FALFF_BAND


def padded_length(n_timepoints: int) -> int:
    """Return ``P``, the smallest power of two ``>= n_timepoints`` (at least 1)."""
    return 1 << max(int(n_timepoints) - 1, 0).bit_length()


def minimum_volumes(tr: float, f_low: float) -> int:
    """The fewest volumes whose duration ``T * tr`` holds one period of ``f_low`` (Hz).

    The rule: a band's lowest frequency must complete at least one cycle in the run
    (0.01 Hz: 100 s, 50 volumes at TR 2 s); shorter runs are refused.
    """
    return math.ceil(1 / (f_low * tr) - 1e-9)


def band_bins(
    n_timepoints: int, tr: float, band: tuple[float, float] = FALFF_BAND
) -> tuple[int, int]:
    """Return the first and last (inclusive, 0-based) rfft bins inside ``band``.

    Args:
        n_timepoints: number of volumes ``T``.
        tr: repetition time in seconds.
        band: ``(f_low, f_high)`` in Hz, ``0 < f_low < f_high``.

    Returns:
        ``(k_low, k_high)`` with ``k_low = ceil(f_low*P*tr)`` and
        ``k_high = min(floor(f_high*P*tr), P//2)``, ``P = padded_length(T)``.

    Raises:
        InputDataError: ``tr <= 0``, an invalid band, fewer than 3 volumes, a run
            shorter than one period of ``f_low`` (:func:`minimum_volumes`), or no
            bin in the band (too few volumes for the band's frequency resolution).
    """
    f_low, f_high = (float(f) for f in band)
    if not tr > 0:
        raise InputDataError(f"fALFF needs a positive repetition time, got tr={tr}")
    if not 0 < f_low < f_high:
        raise InputDataError(f"fALFF band must satisfy 0 < low < high Hz, got {band}")
    if n_timepoints < 3:
        raise InputDataError(f"fALFF needs at least 3 volumes after detrending, got {n_timepoints}")
    needed = minimum_volumes(tr, f_low)
    if n_timepoints < needed:
        raise InputDataError(
            f"{n_timepoints} volumes at TR {tr:g} s are {n_timepoints * tr:g} s of data; fALFF "
            f"from {f_low:g} Hz needs one full period, {1 / f_low:g} s = {needed} volumes"
        )
    n_padded = padded_length(n_timepoints)
    k_low = math.ceil(f_low * n_padded * tr)
    k_high = min(math.floor(f_high * n_padded * tr), n_padded // 2)
    if k_low > k_high:
        raise InputDataError(
            f"fALFF band {f_low}-{f_high} Hz holds no frequency bin for {n_timepoints} volumes "
            f"at tr={tr} s (resolution {1 / (n_padded * tr):.4g} Hz); more volumes are needed"
        )
    return k_low, k_high


def falff(
    data: np.ndarray,
    tr: float,
    band: tuple[float, float] = FALFF_BAND,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Compute the fALFF map of a 4D BOLD series.

    Args:
        data: BOLD series, shape ``(X, Y, Z, T)``, any real dtype.
        tr: repetition time in seconds.
        band: ``(f_low, f_high)`` in Hz.
        mask: optional boolean array of shape ``(X, Y, Z)``; voxels outside
            are 0 in the result. ``None`` computes every voxel.

    Returns:
        fALFF, shape ``(X, Y, Z)``, float32, unitless in ``[0, 1]``; voxels with a
        zero or non-finite denominator (e.g. constant series) are 0.

    Raises:
        InputDataError: data not 4D, a mask of the wrong shape, or see :func:`band_bins`.
    """
    if data.ndim != 4:
        raise InputDataError(f"fALFF needs a 4D (X, Y, Z, T) series, got shape {data.shape}")
    n_timepoints = data.shape[3]
    k_low, k_high = band_bins(n_timepoints, tr, band)
    if mask is not None and mask.shape != data.shape[:3]:
        raise InputDataError(f"fALFF mask shape {mask.shape} does not match data {data.shape}")

    # The series as (T, V), read along the input's memory layout: nibabel arrays are
    # Fortran-ordered (each volume contiguous), numpy's default is C order.
    time_first = data.flags.f_contiguous and not data.flags.c_contiguous
    if mask is None:  # views, no copy
        series = (
            data.T.reshape(n_timepoints, -1) if time_first else data.reshape(-1, n_timepoints).T
        )
    else:
        mask = mask.astype(bool, copy=False)
        series = data.T[:, mask.T] if time_first else data[mask].T
    # Remove the mean in float64, then work in float32 (the FFT's rounding is ~1e-7 of
    # the ratio) and sum in float64.
    mean = series.mean(axis=0, dtype=np.float64)
    work = np.empty(series.shape, dtype=np.float32, order="F" if not time_first else "C")
    np.subtract(series, mean, out=work, casting="unsafe")
    del series
    centred_time = np.arange(n_timepoints, dtype=np.float32) - (n_timepoints - 1) / 2
    slope = (centred_time @ work) / np.float32(centred_time @ centred_time)
    work -= centred_time[:, None] * slope
    amplitude = np.abs(scipy.fft.rfft(work, n=padded_length(n_timepoints), axis=0, workers=-1))
    del work
    total = amplitude[1:].sum(axis=0, dtype=np.float64)
    in_band = amplitude[k_low : k_high + 1].sum(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = in_band / total
    ratio[~np.isfinite(ratio)] = 0.0

    if mask is None:
        return ratio.reshape(data.shape[:3], order="F" if time_first else "C").astype(np.float32)
    out = np.zeros(data.shape[:3], dtype=np.float32)
    if time_first:
        out.T[mask.T] = ratio
    else:
        out[mask] = ratio
    return out

"""ALFF of resting BOLD as a bidsfusion modality: a third map to fuse with T1w and fALFF.

Installed, it registers the modality ``alff``: the participant level writes
``sub-<L>[_ses-<S>]_task-rest[_run-<R>]_space-MNI152NLin2009aSym_res-3mm_stat-alff_boldmap.nii.gz``
(with its JSON sidecar) beside the fALFF map of every BOLD run, and the group level
fuses it when selected: ``--modality T1w --modality falff --modality alff``. It uses
only bidsfusion's public hooks and the pieces the built-in falff modality uses
(motion correction and registration come from the shared BOLD chain).

ALFF (amplitude of low-frequency fluctuations, Zang et al. 2007) per voxel series of
``T`` volumes every ``tr`` seconds: the series detrended (mean and linear trend) and
zero-padded to ``P`` (a power of two) as for fALFF
(:mod:`bidsfusion.preprocess.falff`), amplitudes ``2 |X[k]| / T`` of its real FFT
(the amplitude of a sinusoid at bin ``k``, in the BOLD's units), and ALFF their mean
over the bins of the band (0.01-0.1 Hz by default): fALFF without the division by
the amplitude of the whole spectrum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft
import scipy.signal

from bidsfusion.api import (
    FALFF,
    FALFF_BAND,
    InputDataError,
    Modality,
    ModalityRegister,
    band_bins,
    check_band,
    hookimpl,
    padded_length,
)


def alff(
    data: np.ndarray,
    tr: float,
    band: tuple[float, float] = FALFF_BAND,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """The ALFF map of a 4D BOLD series (see the module docstring).

    Args:
        data: BOLD series ``(X, Y, Z, T)``.
        tr: repetition time in seconds.
        band: ``(f_low, f_high)`` in Hz.
        mask: optional bool ``(X, Y, Z)``; voxels outside are 0.

    Returns:
        ALFF ``(X, Y, Z)`` float32, in the units of ``data``.

    Raises:
        InputDataError: data not 4D, a mask of the wrong shape, or a run the band
            cannot be measured in (:func:`~bidsfusion.preprocess.falff.band_bins`).
    """
    if data.ndim != 4:
        raise InputDataError(f"ALFF needs a 4D (X, Y, Z, T) series, got shape {data.shape}")
    if mask is None:
        mask = np.ones(data.shape[:3], dtype=bool)
    if mask.shape != data.shape[:3]:
        raise InputDataError(f"ALFF mask shape {mask.shape} does not match data {data.shape}")
    n_timepoints = data.shape[3]
    k_low, k_high = band_bins(n_timepoints, tr, band)
    series = scipy.signal.detrend(data[mask.astype(bool)].astype(np.float64), axis=1)
    spectrum = scipy.fft.rfft(series, n=padded_length(n_timepoints), axis=1)
    amplitude = 2 * np.abs(spectrum[:, k_low : k_high + 1]) / n_timepoints
    out = np.zeros(data.shape[:3], dtype=np.float32)
    out[mask.astype(bool)] = amplitude.mean(axis=1)
    return out


class ALFF(FALFF):
    """ALFF of a motion-corrected BOLD run, inside a brain mask (the inputs and outputs
    of the core's fALFF interface)."""

    out_name = "alff.nii.gz"
    measure = staticmethod(alff)


def alff_interface(**inputs: Any) -> ALFF:
    """The modality's map interface: :class:`ALFF` with ``inputs`` set."""
    return ALFF(**inputs)


ALFF_MODALITY = Modality(
    name="alff",
    source="bold",
    datatype="func",
    entities={"stat": "alff", "suffix": "boldmap"},
    map_interface=alff_interface,
    description="amplitude of low-frequency fluctuations (mean 2|X|/T in the band) of resting BOLD",
    parameters={"band": FALFF_BAND},
    check=check_band,
)


@hookimpl
def register_modalities(register: ModalityRegister) -> None:
    """Register ``alff``."""
    register(ALFF_MODALITY.name, ALFF_MODALITY)

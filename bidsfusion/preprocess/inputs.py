"""Checks of raw T1w and BOLD scans before any work, from their headers and sidecars.

Each check raises :class:`~bidsfusion.errors.InputDataError` (exit 65) naming the
file and what is wrong; the participant level then skips that scan and goes on
with the others. Checks that need the voxel data (a constant image) run in the
workflow step that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bidsfusion.errors import InputDataError
from bidsfusion.preprocess.falff import band_bins
from bidsfusion.preprocess.images import geometry_from_affine

MIN_COVERAGE_MM = 60.0
"""Smallest field of view (mm, along every axis) that registration can work with."""
VOXEL_SIZE_RANGE_MM = (0.1, 10.0)
"""Accepted voxel sides (mm): anything outside is a header error, not an MRI scan."""


def check_image(path: Path, image: Any, ndim: int) -> None:
    """Dimensions, voxel sizes, axes (no shear) and coverage of a scan's header.

    ``ndim`` is 3 for a T1w and 4 for a BOLD run (then at least 2 volumes).
    """
    shape = image.shape
    if len(shape) != ndim or (ndim == 4 and shape[3] < 2):
        kind = "T1w must be 3D" if ndim == 3 else "BOLD must be a 4D series"
        raise InputDataError(f"{path}: {kind}, got shape {shape}")
    zooms = [float(z) for z in np.linalg.norm(np.asarray(image.affine)[:3, :3], axis=0)]
    low, high = VOXEL_SIZE_RANGE_MM
    if not all(low <= z <= high for z in zooms):
        raise InputDataError(
            f"{path}: voxel size {' x '.join(f'{z:g}' for z in zooms)} mm is outside "
            f"{low:g}-{high:g} mm; fix the header (pixdim) or exclude the scan"
        )
    try:
        geometry_from_affine(np.asarray(image.affine))
    except InputDataError as error:
        raise InputDataError(f"{path}: {error}") from None
    extent = [n * z for n, z in zip(shape[:3], zooms, strict=True)]
    if min(extent) < MIN_COVERAGE_MM:
        raise InputDataError(
            f"{path}: too little coverage to register: field of view "
            f"{' x '.join(f'{e:.0f}' for e in extent)} mm, need at least {MIN_COVERAGE_MM:.0f} mm "
            "along every axis"
        )


def repetition_time(path: Path, metadata: Mapping[str, Any]) -> float:
    """The run's RepetitionTime (s) from its sidecar metadata; missing or bad: 65."""
    value = metadata.get("RepetitionTime")
    if value is None:
        raise InputDataError(
            f"{path}: RepetitionTime is missing from the JSON sidecar; add it (seconds)"
        )
    try:
        tr = float(value)
    except (TypeError, ValueError):
        raise InputDataError(f"{path}: RepetitionTime {value!r} is not a number") from None
    if not (np.isfinite(tr) and tr > 0):
        raise InputDataError(f"{path}: RepetitionTime {tr} must be a positive number of seconds")
    return tr


def check_duration(path: Path, n_volumes: int, tr: float, band: tuple[float, float]) -> None:
    """Refuse a run too short for the fALFF band (see :func:`bidsfusion.preprocess.falff.
    minimum_volumes`: at least one period of the band's lowest frequency)."""
    try:
        band_bins(n_volumes, tr, band)
    except InputDataError as error:
        raise InputDataError(f"{path}: {error}") from None

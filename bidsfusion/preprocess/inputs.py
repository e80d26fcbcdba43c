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

import nibabel as nib
import numpy as np

from bidsfusion.errors import InputDataError
from bidsfusion.nifti import is_singleton_4d
from bidsfusion.preprocess.falff import band_bins
from bidsfusion.preprocess.images import geometry_from_affine

MAX_VOLUME_VOXELS = 1024**3
"""The most voxels one 3D volume may have (a 0.25 mm whole head has about 0.7e9)."""
MAX_TR_S = 100.0
"""A RepetitionTime above this many seconds is one given in milliseconds."""
DEFLATE_RATIO = 1032
"""The most gzip's deflate can compress: a .nii.gz smaller than its header's data divided by
this cannot hold it."""
MIN_COVERAGE_MM = 60.0
"""Smallest field of view (mm, along every axis) that registration can work with."""
VOXEL_SIZE_RANGE_MM = (0.1, 10.0)
"""Accepted voxel sides (mm): anything outside is a header error, not an MRI scan."""


def check_image(path: Path, image: Any, ndim: int) -> None:
    """Dimensions, voxel sizes, axes (no shear) and coverage of a scan's header.

    ``ndim`` is 3 for a T1w (a ``(x, y, z, 1)`` image counts as 3D) and 4 for a BOLD run
    (then at least 2 volumes). A header that claims more voxels than
    :data:`MAX_VOLUME_VOXELS` per volume, or more data than the file can hold, is refused
    before any voxel is read.
    """
    shape = tuple(image.shape)
    if ndim == 3 and is_singleton_4d(shape):
        shape = shape[:3]
    if len(shape) != ndim or (ndim == 4 and shape[3] < 2):
        kind = "T1w must be 3D" if ndim == 3 else "BOLD must be a 4D series"
        raise InputDataError(f"{path}: {kind}, got shape {image.shape}")
    _check_size(path, image)
    _check_values(path, image.header)
    _check_pixdim(path, image.header)
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


def _check_values(path: Path, header: Any) -> None:
    """Refuse voxels that are not real numbers (complex, RGB)."""
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise InputDataError(
            f"{path}: voxels of data type {dtype} are not real numbers (a complex or RGB "
            "image); give the magnitude scan"
        )


def _check_pixdim(path: Path, header: Any) -> None:
    """Refuse a zero or non-finite voxel side in the file's own pixdim, which nibabel reads
    as 1 mm (it mends the loaded header, so the file's is read again)."""
    if not isinstance(header, nib.Nifti1Header):
        return
    with nib.openers.ImageOpener(path) as opened:
        raw = type(header).from_fileobj(opened, check=False)
    pixdim = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    if not (np.isfinite(pixdim).all() and (pixdim != 0).all()):
        raise InputDataError(
            f"{path}: the header's voxel size (pixdim) is {' x '.join(f'{v:g}' for v in pixdim)} "
            "mm; fix the header or exclude the scan"
        )


def _check_size(path: Path, image: Any) -> None:
    """Refuse a header whose volumes are implausibly large or whose data the file cannot
    hold (uncompressed: its size; gzip: the most deflate can compress)."""
    shape = tuple(int(n) for n in image.shape)
    if int(np.prod(shape[:3], dtype=np.float64)) > MAX_VOLUME_VOXELS:
        raise InputDataError(
            f"{path}: the header claims {' x '.join(map(str, shape))} voxels, more than any "
            "MRI volume; the header is damaged: fix or exclude the scan"
        )
    header = image.header
    needed = float(np.prod(shape, dtype=np.float64)) * header.get_data_dtype().itemsize
    size = Path(path).stat().st_size
    offset = float(header.get("vox_offset", 0)) if hasattr(header, "get") else 0.0
    gzipped = str(path).endswith(".gz")
    if (size * DEFLATE_RATIO if gzipped else size - offset) < needed:
        raise InputDataError(
            f"{path}: the header claims {' x '.join(map(str, shape))} voxels "
            f"({needed / 1e9:.3g} GB) but the file is {size / 1e6:.3g} MB: it is truncated or "
            "its header is damaged; fix or exclude the scan"
        )


def repetition_time(path: Path, metadata: Mapping[str, Any]) -> float:
    """The run's RepetitionTime (s) from its sidecar metadata; missing or bad: 65."""
    value = metadata.get("RepetitionTime")
    if value is None:
        raise InputDataError(
            f"{path}: RepetitionTime is missing from the JSON sidecar; add it (seconds)"
        )
    try:
        if isinstance(value, bool):  # JSON true is no number, though float(True) is 1
            raise TypeError(value)
        tr = float(value)
    except (TypeError, ValueError):
        raise InputDataError(f"{path}: RepetitionTime {value!r} is not a number") from None
    if not (np.isfinite(tr) and tr > 0):
        raise InputDataError(f"{path}: RepetitionTime {tr} must be a positive number of seconds")
    if tr > MAX_TR_S:
        raise InputDataError(
            f"{path}: RepetitionTime {tr:g} looks like milliseconds; BIDS gives it in seconds "
            f"({tr / 1000:g}): fix the sidecar"
        )
    return tr


def check_duration(path: Path, n_volumes: int, tr: float, band: tuple[float, float]) -> None:
    """Refuse a run too short for the fALFF band (see :func:`bidsfusion.preprocess.falff.
    minimum_volumes`: at least one period of the band's lowest frequency)."""
    try:
        band_bins(n_volumes, tr, band)
    except InputDataError as error:
        raise InputDataError(f"{path}: {error}") from None

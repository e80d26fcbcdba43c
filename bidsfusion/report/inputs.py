"""Reading a group run's files for the report: every malformed input raises a
:class:`~bidsfusion.errors.BidsFusionError` whose one-line message names the file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bidsfusion.config import RECORD, SECTIONS
from bidsfusion.errors import InputDataError, InputMissingError
from bidsfusion.layout import GroupLayout
from bidsfusion.tsv import NA, read_tsv


def read_table(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a TSV that has at least the ``required`` columns."""
    columns, rows = read_tsv(path)
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputDataError(f"{path}: no column {', '.join(missing)} (columns: {columns})")
    return rows


def number(text: str, path: Path, column: str) -> float:
    """``text`` as a float (``n/a``: NaN), else an error naming the file and column."""
    if text == NA:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise InputDataError(f"{path}: column {column}: {text!r} is not a number") from None


def read_history(path: Path) -> dict[str, np.ndarray]:
    """A ``history.tsv`` as one float array per column; ``epoch`` and a ``train_<term>``
    column required."""
    rows = read_table(path, ["epoch"])
    if not rows:
        raise InputDataError(f"{path}: no epochs")
    if not any(c.startswith("train_") for c in rows[0]):
        raise InputDataError(f"{path}: no train_<term> column")
    return {c: np.array([number(r[c], path, c) for r in rows]) for c in rows[0]}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputMissingError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputDataError(f"{path}: unreadable JSON ({error})") from None
    if not isinstance(document, dict):
        raise InputDataError(f"{path}: expected a JSON object")
    return document


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML document."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputMissingError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputDataError(f"{path}: unreadable TOML ({error})") from None


def read_config(path: Path) -> dict[str, Any]:
    """A written configuration (``config.toml``) as one flat table: the settings of its
    sections and the entries of its ``[record]`` (a file written before the sections,
    whose keys are all at the top, reads the same)."""
    flat: dict[str, Any] = {}
    for key, value in read_toml(path).items():
        if isinstance(value, dict) and (key in SECTIONS or key == RECORD):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def volume(path: Path, index: int | None = None) -> Any:
    """The 3D image ``path`` (``index`` None) or volume ``index`` of the 4D image ``path``."""
    import nibabel as nib

    from bidsfusion.errors import one_line
    from bidsfusion.nifti import READ_ERRORS, load_image

    image = load_image(path)
    if index is None and len(image.shape) == 3:
        return image
    if index is None or len(image.shape) != 4 or not 0 <= index < image.shape[-1]:
        wanted = "a 3D image" if index is None else f"a 4D image with a volume {index}"
        raise InputDataError(f"{path}: expected {wanted}, got shape {image.shape}")
    try:
        data = np.asarray(image.dataobj[..., index], dtype=np.float32)
    except READ_ERRORS as error:
        raise InputDataError(f"{path}: unreadable NIfTI ({one_line(error)})") from None
    return nib.Nifti1Image(data, image.affine)


def retrained_after(output: Path, layout: GroupLayout, spec: str) -> bool:
    """Whether a fold of objective ``spec`` was trained again after ``output`` (an analysis
    result) was written: a ``representations.npz`` of it is newer, so ``output`` shows an
    earlier model."""
    written = output.stat().st_mtime_ns
    found = (files.representations for files in layout.folds(spec).values())
    return any(p.is_file() and p.stat().st_mtime_ns > written for p in found)

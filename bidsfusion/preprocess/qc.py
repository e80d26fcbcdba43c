"""Quality control of every scan: registration similarity, head motion, temporal SNR.

Measures, recorded in every sidecar of the scan under ``"QC"``:

- ``RegistrationSimilarity``: Pearson correlation between the scan on the 64^3
  grid before skull stripping (the T1w; the mean motion-corrected BOLD of a run)
  and the MNI template, over the template brain mask dilated by
  :data:`MARGIN_VOXELS` (9 mm), so the outline of the brain counts. On the real
  studyforrest subject: T1w 0.70 and mean BOLD 0.63 when registered; moved 10 mm
  0.52 / 0.54, rotated 15 degrees 0.54 / 0.58, 25 degrees and 15 mm 0.36 / 0.43.
- ``Flagged``: the similarity is below :data:`THRESHOLDS` (T1w 0.5, BOLD 0.45):
  a gross registration failure. It is warned about in the log, marked in the
  tables, and the group level leaves the scan out unless ``--include-flagged``.
- ``MeanFramewiseDisplacement`` (mm, Power et al. 2012) and ``TemporalSNR`` (the
  median over an EPI brain mask of each voxel's temporal mean divided by the
  standard deviation of its linearly detrended, motion-corrected series), for
  BOLD runs only.

Tables, rebuilt from the sidecars at the end of every participant run:
``sub-<L>/sub-<L>_qc.tsv`` per subject and ``qc.tsv`` for the dataset (built
under a lock, so concurrent jobs never drop each other's subjects).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from scipy import ndimage

from bidsfusion.atomic import locked
from bidsfusion.bids import QC_KEY
from bidsfusion.nifti import read_data
from bidsfusion.tsv import read_tsv, write_tsv

MARGIN_VOXELS = 3
"""Dilation of the template brain mask for the similarity (3 voxels = 9 mm)."""
THRESHOLDS = {"T1w": 0.5, "bold": 0.45}
"""Registration similarity below which a scan is flagged, by source."""
COLUMNS = (
    "subject",
    "session",
    "source",
    "registration_similarity",
    "similarity_threshold",
    "flagged",
    "mean_fd_mm",
    "tsnr",
)
"""Columns of the QC tables, one row per scan."""


def template_similarity(grid: np.ndarray) -> float:
    """Pearson correlation of a 64^3 grid image with the template over the dilated brain mask."""
    from bidsfusion.preprocess.mask import grid_brain_mask
    from bidsfusion.space import grid_template

    region = ndimage.binary_dilation(grid_brain_mask(), iterations=MARGIN_VOXELS)
    values, template = grid[region].astype(np.float64), grid_template()[region]
    if values.std() == 0:
        return 0.0
    return float(np.corrcoef(values, template)[0, 1])


def temporal_snr(mean: np.ndarray, residual_sd: np.ndarray) -> float:
    """Median of ``mean / residual_sd`` over the EPI mask of ``mean`` (both (X, Y, Z))."""
    from bidsfusion.preprocess.mask import epi_mask

    mask = epi_mask(mean) & (residual_sd > 0)
    return float(np.median(mean[mask] / residual_sd[mask])) if mask.any() else 0.0


def residual_sd(series: np.ndarray) -> np.ndarray:
    """Standard deviation over time of each voxel after removing its mean and linear trend.

    ``series`` (X, Y, Z, T) -> float32 (X, Y, Z), one slab of constant Z at a time in
    float64, from sums: ``var(y) - cov(y, t)^2 / var(t)``, with T - 2 degrees of freedom.
    """
    n = series.shape[3]
    time = np.arange(n, dtype=np.float64) - (n - 1) / 2
    out = np.empty(series.shape[:3], dtype=np.float32)
    for k in range(series.shape[2]):
        slab = np.asarray(series[:, :, k], dtype=np.float64)
        centred = slab - slab.mean(axis=2, keepdims=True)
        residual = np.square(centred).sum(axis=2) - (centred @ time) ** 2 / (time @ time)
        out[:, :, k] = np.sqrt(np.clip(residual, 0, None) / max(n - 2, 1))
    return out


def measures(source: str, similarity: float, **extra: float) -> dict[str, Any]:
    """The QC record of one scan: similarity, threshold, flag, and ``extra`` measures."""
    threshold = THRESHOLDS[source]
    return {
        "RegistrationSimilarity": round(similarity, 4),
        "SimilarityThreshold": threshold,
        "Flagged": bool(similarity < threshold),
        **{key: round(value, 4) for key, value in extra.items()},
    }


class _QCInputSpec(BaseInterfaceInputSpec):
    grid_file = File(exists=True, mandatory=True, desc="the scan on the 64^3 grid, unmasked")
    source = traits.Enum("T1w", "bold", mandatory=True, desc="the kind of raw scan")
    confounds_file = File(exists=True, desc="BOLD: the confounds TSV (framewise_displacement)")
    mean_file = File(exists=True, desc="BOLD: the mean motion-corrected volume, native space")
    sd_file = File(exists=True, desc="BOLD: the residual temporal sd (residual_sd), native")


class _QCOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON of the QC measures")


class ScanQC(SimpleInterface):
    """The QC measures of one scan (see the module docstring), as a JSON file."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        similarity = template_similarity(read_data(self.inputs.grid_file, ndim=3)[0])
        extra = {}
        if self.inputs.source == "bold":
            _, rows = read_tsv(Path(self.inputs.confounds_file))
            fd = [float(row["framewise_displacement"]) for row in rows]
            mean = read_data(self.inputs.mean_file, ndim=3)[0]
            sd = read_data(self.inputs.sd_file, ndim=3)[0]
            extra = {
                "MeanFramewiseDisplacement": float(np.mean(fd)),
                "TemporalSNR": temporal_snr(mean, sd),
            }
        out = Path(os.getcwd()) / "qc.json"
        out.write_text(json.dumps(measures(self.inputs.source, similarity, **extra)))
        self._results["out_file"] = str(out)
        return runtime


def subject_rows(output_dir: Path, subject: str) -> list[list[object]]:
    """One QC row per scan of ``subject``, from the sidecars under ``sub-<subject>/``."""
    rows: dict[str, list[object]] = {}
    for sidecar in sorted((output_dir / f"sub-{subject}").rglob("*.json")):
        content = _read_json(sidecar)
        qc, sources = content.get(QC_KEY), content.get("Sources")
        if not isinstance(qc, dict) or not sources or sources[0] in rows:
            continue
        rows[sources[0]] = _row(subject, sidecar, sources[0], qc)
    return list(rows.values())


def _row(subject: str, sidecar: Path, source: str, qc: Mapping[str, Any]) -> list[object]:
    session = next((p[4:] for p in sidecar.parts if p.startswith("ses-")), None)
    return [
        subject,
        session,
        source,
        qc.get("RegistrationSimilarity"),
        qc.get("SimilarityThreshold"),
        qc.get("Flagged"),
        qc.get("MeanFramewiseDisplacement"),
        qc.get("TemporalSNR"),
    ]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def write_tables(output_dir: Path, subjects: list[str]) -> list[list[object]]:
    """Rewrite the QC tables of ``subjects`` and the dataset's ``qc.tsv``, all from the
    sidecars (a damaged or stale table is never read); returns the rows of ``subjects``."""
    mine = []
    for subject in subjects:
        rows = subject_rows(output_dir, subject)
        table = output_dir / f"sub-{subject}" / f"sub-{subject}_qc.tsv"
        if rows:
            write_tsv(table, COLUMNS, rows)
        else:
            table.unlink(missing_ok=True)
        mine += rows
    with locked(output_dir / ".qc.lock"):
        folders = sorted(p for p in output_dir.glob("sub-*") if p.is_dir())
        rows = [row for folder in folders for row in subject_rows(output_dir, folder.name[4:])]
        write_tsv(output_dir / "qc.tsv", COLUMNS, rows)
    return mine

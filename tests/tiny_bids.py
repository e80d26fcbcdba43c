"""A minimal valid BIDS dataset for tests that need a dataset but no real images."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np


def write_tiny_bids(root: Path, subjects: tuple[str, ...] = ("01", "02")) -> Path:
    """A minimal valid BIDS dataset: per subject a 8^3 T1w and a 8^3x20 bold."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.8.0"})
    )
    rows = ["participant_id\tdiagnosis"] + [f"sub-{s}\tHC" for s in subjects]
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    for sub in subjects:
        anat, func = root / f"sub-{sub}" / "anat", root / f"sub-{sub}" / "func"
        anat.mkdir(parents=True)
        func.mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(rng.random((8, 8, 8), dtype=np.float32), np.eye(4)),
            anat / f"sub-{sub}_T1w.nii.gz",
        )
        nib.save(
            nib.Nifti1Image(rng.random((8, 8, 8, 20), dtype=np.float32), np.eye(4)),
            func / f"sub-{sub}_task-rest_bold.nii.gz",
        )
        (func / f"sub-{sub}_task-rest_bold.json").write_text(
            json.dumps({"RepetitionTime": 2.0, "TaskName": "rest"})
        )
    return root

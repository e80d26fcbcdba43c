"""Shared fixtures: plugin autoload off, a tiny BIDS dataset, and an in-process CLI runner."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

os.environ["BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from bidsfusion.cli import main


@dataclass
class CliResult:
    """Exit code and captured streams of one CLI call."""

    code: int
    out: str
    err: str


def run_main(*args: object) -> CliResult:
    """Run ``bidsfusion ARGS...`` in-process, capturing the streams (usable outside tests)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_info:
            code = int(exit_info.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``bidsfusion ARGS...`` in-process through the real entry point."""

    def _run(*args: object) -> CliResult:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(int(exit_info.value.code or 0), captured.out, captured.err)

    return _run


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


@pytest.fixture
def tiny_bids(tmp_path: Path) -> Path:
    """A fresh minimal BIDS dataset under tmp_path/bids."""
    return write_tiny_bids(tmp_path / "bids")

"""The FSL backend without FSL: the participant level refuses it before any work, the
check names what is missing, and ``bidsfusion plugins`` lists it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bidsfusion_fsl import check_fsl

from bidsfusion.errors import InputMissingError


def _env(**changes: str) -> dict[str, str]:
    """This environment with entry-point plugins on, FSLDIR unset, and ``changes``."""
    skip = ("BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD", "FSLDIR")
    return {**{k: v for k, v in os.environ.items() if k not in skip}, **changes}


def _bidsfusion(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bidsfusion", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def _tiny_bids(root: Path) -> Path:
    """One subject: a 24^3 T1w and a 24^3 x 20 BOLD run of task rest (3 mm voxels)."""
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-01" / "func").mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.8.0"})
    )
    (root / "participants.tsv").write_text("participant_id\tdiagnosis\nsub-01\tHC\n")
    rng = np.random.default_rng(0)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    t1w = nib.Nifti1Image(rng.random((24, 24, 24), dtype=np.float32), affine)
    nib.save(t1w, root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    bold = nib.Nifti1Image(rng.random((24, 24, 24, 20), dtype=np.float32), affine)
    nib.save(bold, root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
    sidecar = {"RepetitionTime": 2.0, "TaskName": "rest"}
    (root / "sub-01" / "func" / "sub-01_task-rest_bold.json").write_text(json.dumps(sidecar))
    return root


def test_without_fsl_the_participant_level_exits_66_before_any_work(tmp_path: Path) -> None:
    bids, out, work = _tiny_bids(tmp_path / "bids"), tmp_path / "out", tmp_path / "work"
    (tmp_path / "empty").mkdir()
    env = _env(PATH=str(tmp_path / "empty"))
    result = _bidsfusion(bids, out, "participant", "--backend", "fsl", "--work-dir", work, env=env)
    assert result.returncode == 66, result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "--backend fsl needs FSL, but no mcflirt, bet, flirt on PATH and FSLDIR is unset" in (
        message
    )
    assert "install FSL" in message and "source $FSLDIR/etc/fslconf/fsl.sh" in message
    assert not (out / "dataset_description.json").exists() and not work.exists()


def _fake_programs(folder: Path, names: tuple[str, ...]) -> str:
    folder.mkdir()
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return str(folder)


def test_the_check_names_only_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _fake_programs(tmp_path / "bin", ("flirt",)))
    monkeypatch.setenv("FSLDIR", str(tmp_path))
    with pytest.raises(InputMissingError, match=r"but no mcflirt, bet on PATH: install FSL"):
        check_fsl()
    monkeypatch.setenv("PATH", _fake_programs(tmp_path / "all", ("flirt", "mcflirt", "bet")))
    check_fsl()
    monkeypatch.delenv("FSLDIR")
    with pytest.raises(InputMissingError, match=r"but FSLDIR is unset: install FSL"):
        check_fsl()


def test_entry_point_is_listed_by_bidsfusion_plugins() -> None:
    result = _bidsfusion("plugins", env=_env())
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("fsl  [", 1)[1].splitlines()
    assert block[0].startswith("bidsfusion-fsl 0.1.0")
    assert "preprocessing_backends: fsl" in block[1]

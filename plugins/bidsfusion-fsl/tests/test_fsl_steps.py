"""The backend's steps end to end with stand-ins for FSL's programs, which copy their
input and write identity matrices: the nested workflows run and give the outputs the
participant level expects."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from bidsfusion_fsl import FSL

from bidsfusion.errors import BidsFusionError
from bidsfusion.preprocess.images import matrix_from_transform
from bidsfusion.tsv import read_tsv

STAND_IN = f"""#!{sys.executable}
import os, shutil, sys
import numpy as np
import nibabel as nib
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1]
if name == "bet":
    shutil.copy(args[0], args[1] if args[1].endswith(".nii.gz") else args[1] + ".nii.gz")
elif name == "flirt":
    shutil.copy(value("-in"), value("-out"))
    np.savetxt(value("-omat"), np.eye(4))
elif name == "mcflirt":
    out = value("-out")
    shutil.copy(value("-in"), out)
    os.mkdir(out + ".mat")
    for t in range(nib.load(out).shape[3]):
        np.savetxt(os.path.join(out + ".mat", f"MAT_{{t:04d}}"), np.eye(4))
    for kind in ("abs", "rel"):
        open(f"{{out}}_{{kind}}.rms", "w").close()
"""


@pytest.fixture
def stand_in_fsl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bet``, ``flirt`` and ``mcflirt`` stand-ins on PATH, FSLDIR set."""
    folder = tmp_path / "fsl" / "bin"
    folder.mkdir(parents=True)
    for name in ("bet", "flirt", "mcflirt"):
        (folder / name).write_text(STAND_IN)
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{Path(sys.executable).parent}")
    monkeypatch.setenv("FSLDIR", str(folder.parent))
    monkeypatch.setenv("FSLOUTPUTTYPE", "NIFTI_GZ")


def _save(path: Path, shape: tuple[int, ...]) -> str:
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])), path)
    return str(path)


def test_realign_gives_the_series_its_mean_sd_and_confounds(
    stand_in_fsl: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bold = _save(tmp_path / "bold.nii.gz", (8, 8, 8, 5))
    monkeypatch.chdir(tmp_path)
    outputs = FSL.realign().run(in_file=bold).outputs
    assert nib.load(outputs.out_file).shape == (8, 8, 8, 5)
    assert nib.load(outputs.mean_file).shape == nib.load(outputs.sd_file).shape == (8, 8, 8)
    columns, rows = read_tsv(Path(outputs.confounds_file))
    assert len(columns) == 7 and len(rows) == 5
    assert all(float(v) == 0.0 for row in rows for v in row.values())


def test_registrations_give_itk_transforms(
    stand_in_fsl: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t1w = _save(tmp_path / "t1w.nii.gz", (24, 24, 24))
    mean = _save(tmp_path / "mean.nii.gz", (8, 8, 8))
    monkeypatch.chdir(tmp_path)
    coregistered = FSL.coregister().run(in_file=mean, reference_file=t1w).outputs
    to_template = FSL.register_anat().run(in_file=t1w, skull_strip="template").outputs
    for outputs in (coregistered, to_template):
        matrix = matrix_from_transform(sitk.ReadTransform(outputs.transform_file))
        assert np.isfinite(matrix).all() and abs(np.linalg.det(matrix[:3, :3]) - 1) < 1e-6


def test_a_failing_program_is_a_one_line_error(
    stand_in_fsl: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fsl" / "bin" / "bet").write_text("#!/bin/sh\necho 'bet: no brain' >&2\nexit 1\n")
    t1w = _save(tmp_path / "t1w.nii.gz", (24, 24, 24))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BidsFusionError, match=r"^step \S*bet failed: .*\(details: ") as error:
        FSL.register_anat().run(in_file=t1w)
    assert "\n" not in str(error.value)

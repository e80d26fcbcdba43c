"""Participant-level accuracy against the ground truth that ``bidsfusion synth`` plants.

One run over four simulated subjects (2 AD, 2 HC, one session each) through the
real CLI; the recovered motion, the T1w registration and the fALFF maps are then
checked against ``sourcedata/synth``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from runner import run_main
from scipy import ndimage

from bidsfusion.preprocess.images import matrix_from_transform
from bidsfusion.space import MNI_GRID_AFFINE, MNI_GRID_SHAPE
from bidsfusion.synth.dataset import make_dataset

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

GRID = "space-MNI152NLin2009aSym_res-3mm"
MASK = "sourcedata/synth/masks/space-MNI152NLin2009aSym_res-2mm_desc-{}_mask.nii.gz"
MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synth-participant")
    bids, out = root / "bids", root / "out"
    make_dataset(bids, n_subjects=4, seed=3, max_sessions=1, n_jobs=2)
    result = run_main(bids, out, "participant", "-w", root / "work", "--nprocs", "2")
    assert result.code == 0, result.err
    return bids, out


def _truth(bids: Path, scan: Path) -> dict:
    relative = scan.relative_to(bids)
    name = relative.name.replace(".nii.gz", "_xfm.json")
    return json.loads((bids / "sourcedata/synth" / relative.parent.parent / name).read_text())


def _table(path: Path) -> np.ndarray:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return np.array([[float(r[c]) for c in MOTION_COLUMNS] for r in rows])


def _diagnoses(bids: Path) -> dict[str, str]:
    with (bids / "participants.tsv").open(newline="") as handle:
        return {
            r["participant_id"][4:]: r["diagnosis"] for r in csv.DictReader(handle, delimiter="\t")
        }


def _grid_points() -> np.ndarray:
    """RAS mm of every voxel centre of the 64^3 grid, (4, N) homogeneous."""
    index = np.indices(MNI_GRID_SHAPE).reshape(3, -1)
    return MNI_GRID_AFFINE @ np.vstack([index, np.ones(index.shape[1])])


def _sample(mask: nib.Nifti1Image, world: np.ndarray) -> np.ndarray:
    """Nearest-neighbour values of ``mask`` at RAS points (4, N), reshaped to the grid."""
    voxel = np.linalg.inv(mask.affine) @ world
    values = ndimage.map_coordinates(np.asarray(mask.dataobj), voxel[:3], order=0)
    return values.reshape(MNI_GRID_SHAPE) > 0


def _mask_on_grid(bids: Path, name: str) -> np.ndarray:
    return _sample(nib.load(bids / MASK.format(name)), _grid_points())


def test_recovered_motion_matches_the_planted_motion(synth_run) -> None:
    bids, out = synth_run
    runs = sorted(bids.glob("sub-*/ses-*/func/*_bold.nii.gz"))
    assert len(runs) == 4
    for run in runs:
        truth = _truth(bids, run)
        planted = np.loadtxt(
            bids / "sourcedata/synth" / run.relative_to(bids).parent.parent / truth["motion"],
            skiprows=1,
        )
        name = run.name.replace("_bold.nii.gz", "_desc-confounds_timeseries.tsv")
        found = _table(out / run.relative_to(bids).parent / name)
        assert found.shape == planted.shape
        assert np.abs(found[:, :3] - planted[:, :3]).max() < 0.5  # mm
        assert np.rad2deg(np.abs(found[:, 3:] - planted[:, 3:])).max() < 0.5  # degrees


def test_registered_brain_overlaps_the_template_brain(synth_run) -> None:
    """The subject's true brain, carried to MNI by the estimated transform: Dice >= 0.90."""
    bids, out = synth_run
    brain = nib.load(bids / MASK.format("brain"))
    for t1w in sorted(bids.glob("sub-*/ses-*/anat/*_T1w.nii.gz")):
        to_mni = np.array(_truth(bids, t1w)["to_mni"])
        derivative = out / t1w.relative_to(bids).parent
        stem = t1w.name.replace("_T1w.nii.gz", "")
        tfm = derivative / f"{stem}_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.tfm"
        mni_to_native = matrix_from_transform(sitk.ReadTransform(str(tfm)))
        true_brain = _sample(brain, to_mni @ mni_to_native @ _grid_points())
        mask = (
            np.asarray(nib.load(derivative / f"{stem}_{GRID}_desc-brain_mask.nii.gz").dataobj) > 0
        )
        dice = 2 * (true_brain & mask).sum() / (true_brain.sum() + mask.sum())
        assert dice >= 0.90, (t1w.name, dice)


def test_falff_shows_the_planted_ad_decrease(synth_run) -> None:
    bids, out = synth_run
    pcc = _mask_on_grid(bids, "pcc")
    rest = _mask_on_grid(bids, "brain") & ~ndimage.binary_dilation(pcc, iterations=2)
    means: dict[str, list[tuple[float, float]]] = {"AD": [], "HC": []}
    for subject, diagnosis in _diagnoses(bids).items():
        (path,) = out.glob(f"sub-{subject}/ses-*/func/*_{GRID}_stat-falff_boldmap.nii.gz")
        falff = nib.load(path).get_fdata()
        means[diagnosis].append((falff[pcc].mean(), falff[rest].mean()))
    ad, hc = np.array(means["AD"]), np.array(means["HC"])
    assert len(ad) == len(hc) == 2
    pcc_difference = ad[:, 0].mean() - hc[:, 0].mean()
    rest_difference = ad[:, 1].mean() - hc[:, 1].mean()
    assert pcc_difference < 0
    assert pcc_difference < rest_difference - 0.02
    assert ad[:, 0].max() < hc[:, 0].min()

"""The participant level end to end on real data, reruns, and bad inputs (real CLI)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path
from nilearn.image import resample_img
from runner import run_main

from bidsfusion.preprocess.mask import grid_brain_mask
from bidsfusion.space import MNI_GRID_AFFINE, MNI_GRID_SHAPE, mni_template

STUDYFORREST = Path(__file__).resolve().parents[2] / "shared" / "data" / "studyforrest-sub02"
GRID = "space-MNI152NLin2009aSym_res-3mm"
T1_OUT = f"sub-02/anat/sub-02_{GRID}_desc-brain_T1w.nii.gz"
FALFF_OUT = f"sub-02/func/sub-02_task-oneback_run-1_{GRID}_stat-falff_boldmap.nii.gz"

pytestmark = pytest.mark.skipif(not STUDYFORREST.is_dir(), reason="../shared/data is missing")


def _copy_dataset(tmp_path: Path) -> Path:
    bids = tmp_path / "bids"
    shutil.copytree(STUDYFORREST, bids)
    for path in bids.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return bids


def _add_subject(
    bids: Path, label: str, bold: nib.Nifti1Image | bytes, sidecar: dict | None
) -> Path:
    func = bids / f"sub-{label}" / "func"
    func.mkdir(parents=True)
    path = func / f"sub-{label}_task-oneback_run-1_bold.nii.gz"
    if isinstance(bold, bytes):
        path.write_bytes(bold)
    else:
        nib.save(bold, path)
    if sidecar is not None:
        (func / f"sub-{label}_task-oneback_run-1_bold.json").write_text(json.dumps(sidecar))
    with (bids / "participants.tsv").open("a") as table:
        table.write(f"sub-{label}\tn/a\tn/a\n")
    return path


def _error_line(result) -> str:
    """The last stderr line: the one-line error (log lines come before it)."""
    return result.err.strip().splitlines()[-1]


def _template_on_grid() -> np.ndarray:
    return resample_img(
        mni_template(1),
        target_affine=MNI_GRID_AFFINE,
        target_shape=MNI_GRID_SHAPE,
        force_resample=True,
        copy_header=True,
    ).get_fdata()


@pytest.fixture(scope="module")
def studyforrest_run(tmp_path_factory):
    """One participant run over the real subject plus five broken ones."""
    tmp = tmp_path_factory.mktemp("participant")
    bids = _copy_dataset(tmp)
    real = nib.load(STUDYFORREST / "sub-02/func/sub-02_task-oneback_run-1_bold.nii.gz")
    data = np.asarray(real.dataobj, dtype=np.float32)
    ok = {"RepetitionTime": 2.0, "TaskName": "oneback"}
    _add_subject(bids, "3d", nib.Nifti1Image(data[..., 0], real.affine), ok)
    _add_subject(bids, "short", nib.Nifti1Image(data[..., :4], real.affine), ok)
    _add_subject(bids, "notr", nib.Nifti1Image(data, real.affine), {"TaskName": "oneback"})
    nan = data.copy()
    nan[5, 5, 5, 5] = np.nan
    _add_subject(bids, "nan", nib.Nifti1Image(nan, real.affine), ok)
    _add_subject(bids, "corrupt", gzip.compress(b"\x00" * 4000)[:60], ok)
    _add_subject(bids, "boldonly", nib.Nifti1Image(data, real.affine), ok)
    out, work = tmp / "out", tmp / "work"
    result = run_main(
        bids, out, "participant", "--task", "oneback", "-w", work, "--skip-bids-validation"
    )
    return bids, out, work, result


def test_real_subject_and_bad_inputs(studyforrest_run):
    _bids, out, _work, result = studyforrest_run
    assert result.code == 1, result.err
    assert "failed, the others finished" in result.err
    assert "sub-02: done after" in result.err  # progress: its last step finished
    assert "sub-nan: step" in result.err and "failed" in result.err
    assert _error_line(result).count("bidsfusion: error:") == 1
    assert "Traceback" not in result.err
    assert (out / T1_OUT).is_file() and (out / FALFF_OUT).is_file()
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bidsfusion"


def test_registered_t1_matches_the_template(studyforrest_run, run_cli):
    _, out, _, _ = studyforrest_run
    t1 = nib.load(out / T1_OUT)
    assert t1.shape == MNI_GRID_SHAPE
    np.testing.assert_allclose(t1.affine, MNI_GRID_AFFINE)
    data, template, mask = t1.get_fdata(), _template_on_grid(), grid_brain_mask()
    aligned = np.corrcoef(data[mask], template[mask])[0, 1]
    shifted = np.corrcoef(np.roll(data, 3, axis=2)[mask], template[mask])[0, 1]
    assert aligned > 0.5
    assert aligned > shifted + 0.1
    assert np.all(data[~mask] == 0)


def test_falff_map_sidecar_and_figures(studyforrest_run):
    _, out, _, _ = studyforrest_run
    falff = nib.load(out / FALFF_OUT).get_fdata()
    mask = grid_brain_mask()
    assert falff.min() >= 0 and falff.max() <= 1
    assert (falff[mask] > 0).mean() > 0.7
    sidecar = json.loads((out / FALFF_OUT.replace(".nii.gz", ".json")).read_text())
    assert sidecar["RepetitionTime"] == 2.0 and sidecar["Band"] == [0.01, 0.1]
    assert sidecar["Resolution"] == "3 mm isotropic, 64x64x64"
    assert any("sub-02_T1w" in source for source in sidecar["Sources"])
    figures = sorted(p.name for p in (out / "sub-02" / "figures").glob("*.png"))
    assert len(figures) == 3
    confounds = np.genfromtxt(
        out / "sub-02/func/sub-02_task-oneback_run-1_desc-confounds_timeseries.tsv",
        names=True,
        delimiter="\t",
    )
    assert len(confounds) == 100 and confounds["framewise_displacement"][0] == 0


def test_bold_without_any_t1w_is_registered_to_the_template(studyforrest_run):
    _, out, _, _ = studyforrest_run
    direct = out / FALFF_OUT.replace("sub-02", "sub-boldonly")
    sidecar = json.loads(direct.with_name(direct.name.replace(".nii.gz", ".json")).read_text())
    assert any("no T1w" in warning for warning in sidecar["Warnings"])
    # the same BOLD run, through the T1w or straight to MNI, gives a similar map
    mask = grid_brain_mask()
    via_t1w = nib.load(out / FALFF_OUT).get_fdata()[mask]
    assert np.corrcoef(nib.load(direct).get_fdata()[mask], via_t1w)[0, 1] > 0.6


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("3d", "must be a 4D series"),
        ("short", "needs one full period"),
        ("notr", "RepetitionTime is missing"),
        ("nan", "NaN"),
        ("corrupt", "unreadable NIfTI"),
    ],
)
def test_each_bad_input_fails_alone_with_exit_65(
    studyforrest_run, run_cli, tmp_path, label, reason
):
    bids, _, _, _ = studyforrest_run
    result = run_cli(
        bids,
        tmp_path / "out",
        "participant",
        "--task",
        "oneback",
        "--participant-label",
        label,
        "-w",
        tmp_path / "work",
        "--skip-bids-validation",
    )
    assert result.code == 65, result.err
    assert reason in _error_line(result) and f"sub-{label}" in _error_line(result)
    assert "Traceback" not in result.err


def test_rerun_skips_complete_and_redoes_missing(studyforrest_run, run_cli):
    bids, out, work, _ = studyforrest_run
    before = (out / FALFF_OUT).stat().st_mtime_ns
    (out / T1_OUT).write_bytes(b"half-written")
    mask = out / T1_OUT.replace("desc-brain_T1w", "desc-brain_mask")
    xfm = out / "sub-02/anat/sub-02_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.tfm"
    mask.unlink()
    xfm.unlink()
    result = run_cli(
        bids, out, "participant", "--task", "oneback", "-w", work, "--participant-label", "02"
    )
    assert result.code == 0, result.err
    assert nib.load(out / T1_OUT).shape == MNI_GRID_SHAPE
    assert nib.load(mask).shape == MNI_GRID_SHAPE and xfm.is_file()
    assert (out / FALFF_OUT).stat().st_mtime_ns == before
    again = run_cli(
        bids, out, "participant", "--task", "oneback", "-w", work, "--participant-label", "02"
    )
    assert again.code == 0
    assert "skipped (complete) 1: sub-02" in again.err
    assert "processed 0" in again.err


def test_a_subject_another_run_is_processing_is_refused_with_73(studyforrest_run, run_cli):
    from bidsfusion.atomic import try_lock

    bids, out, work, _ = studyforrest_run
    before = (out / FALFF_OUT).stat().st_mtime_ns
    held = try_lock(work / "locks" / "sub-02.lock")
    assert held is not None
    try:
        result = run_cli(
            bids, out, "participant", "--task", "oneback", "-w", work, "--participant-label", "02"
        )
    finally:
        held.close()
    assert result.code == 73
    assert "sub-02: another bidsfusion run is processing it" in result.err.splitlines()[-1]
    assert (out / FALFF_OUT).stat().st_mtime_ns == before
    again = run_cli(
        bids, out, "participant", "--task", "oneback", "-w", work, "--participant-label", "02"
    )
    assert again.code == 0 and "skipped (complete) 1: sub-02" in again.err


def test_unknown_task_is_18_listing_tasks(run_cli, tmp_path):
    result = run_cli(STUDYFORREST, tmp_path / "out", "participant")
    assert result.code == 18
    assert "'rest'" in result.err and "oneback" in result.err


def test_nibabel_functional_is_refused_for_coverage(run_cli, tmp_path):
    bids = tmp_path / "bids"
    (bids / "sub-01" / "func").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "f", "BIDSVersion": "1.8.0"}')
    shutil.copy(
        Path(data_path) / "functional.nii", bids / "sub-01" / "func" / "sub-01_task-rest_bold.nii"
    )
    (bids / "sub-01" / "func" / "sub-01_task-rest_bold.json").write_text(
        '{"RepetitionTime": 2.0, "TaskName": "rest"}'
    )
    result = run_cli(bids, tmp_path / "out", "participant")
    assert result.code == 65
    assert "too little coverage to register" in result.err
    assert "Traceback" not in result.err


def test_progress_reports_tenths_subjects_and_failures(caplog):
    from types import SimpleNamespace

    from bidsfusion.participant import SubjectProgress

    progress = SubjectProgress()
    progress.expect("sub_01", 4)
    progress.expect("sub_02", 6)
    node = SimpleNamespace(fullname="participant.sub_01.anat", name="anat")
    other = SimpleNamespace(fullname="participant.sub_02.func", name="func")
    with caplog.at_level("INFO", logger="bidsfusion.participant"):
        for _ in range(4):
            progress(node, "start")
            progress(node, "end")
        progress(other, "exception")
        progress(other, "end")
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" after")[0] for line in lines] == [
        "1/10 steps done (10 %)",
        "2/10 steps done (20 %)",
        "3/10 steps done (30 %)",
        "4/10 steps done (40 %)",
        "sub-01: done",
        "sub-02: step func failed",
        "5/10 steps done (50 %)",
    ]
    assert lines[0].endswith(" left") and ", about " in lines[0]

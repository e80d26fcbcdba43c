"""Participant outputs as sets: fingerprints, verification on rerun, QC, names, failures.

A fast dataset of smooth 16^3 "heads" (5 mm voxels) that registration handles in
seconds (their QC flags them: they look nothing like a brain):

- sub-01: T1w ``acq-mprage`` and ``acq-fast``; BOLD runs ``dir-AP`` and ``dir-PA``;
- sub-02: a T1w, and a BOLD run whose sidecar is invalid JSON;
- sub-03: an all-zero T1w and a BOLD run that coregisters to it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tomllib
from runner import run_main
from scipy import ndimage

from bidsfusion.bids import FINGERPRINT_KEY, QC_KEY, sidecar_path
from bidsfusion.data.derivatives import find_scans
from bidsfusion.data.pairs import build_pairs
from bidsfusion.plugins import refresh, registered
from bidsfusion.preprocess.backend import SIMPLEITK

AFFINE = np.diag([5.0, 5.0, 5.0, 1.0])
AFFINE[:3, 3] = -40.0
GRID = "space-MNI152NLin2009aSym_res-3mm"


def _head(path: Path, seed: int, volumes: int = 0, scale: float = 1.0) -> None:
    rng = np.random.default_rng(seed)
    radius = np.linalg.norm(np.indices((16, 16, 16)) - 7.5, axis=0)
    data = (radius < 6) * (1 + ndimage.gaussian_filter(rng.random((16, 16, 16)), 2)) * scale
    if volumes:
        data = data[..., None] * (100 + rng.normal(0, 1, (16, 16, 16, volumes)))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), path)


def _bold(root: Path, stem: str, seed: int, sidecar: str | None = None) -> None:
    subject = stem.split("_")[0]
    path = root / subject / "func" / f"{stem}_bold.nii.gz"
    _head(path, seed, volumes=50)
    text = sidecar or '{"RepetitionTime": 2.0, "TaskName": "rest"}'
    sidecar_path(path).write_text(text)


def write_dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "heads", "BIDSVersion": "1.8.0"}')
    rows = ["participant_id\tdiagnosis", "sub-01\tAD", "sub-02\tHC", "sub-03\tHC"]
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    _head(root / "sub-01/anat/sub-01_acq-mprage_T1w.nii.gz", 1)
    _head(root / "sub-01/anat/sub-01_acq-fast_T1w.nii.gz", 2)
    _bold(root, "sub-01_task-rest_dir-AP", 3)
    _bold(root, "sub-01_task-rest_dir-PA", 4)
    _head(root / "sub-02/anat/sub-02_T1w.nii.gz", 5)
    _bold(root, "sub-02_task-rest", 6, sidecar='{"RepetitionTime": 2.0,')
    _head(root / "sub-03/anat/sub-03_T1w.nii.gz", 7, scale=0.0)
    _bold(root, "sub-03_task-rest", 8)
    return root


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    bids = write_dataset(root / "bids")
    result = run_main(bids, root / "out", "participant", "-w", root / "work", "--nprocs", "2")
    return bids, root / "out", root / "work", result


@pytest.fixture
def rerun(first_run, tmp_path):
    """Run again on copies of the first run's outputs and work dir: ``rerun(*options)``."""
    bids, out, work, _ = first_run
    shutil.copytree(out, tmp_path / "out")
    shutil.copytree(work, tmp_path / "work")

    def again(*options):
        return run_main(bids, tmp_path / "out", "participant", "-w", tmp_path / "work", *options)

    return tmp_path / "out", again


def _derivatives(folder: Path) -> dict[str, int]:
    """Published derivatives and figures by path relative to ``folder``: modification time."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.glob("sub-*/*/*")
        if p.parent.name in ("anat", "func", "figures")
    }


def test_bad_scans_fail_alone_and_the_run_exits_1(first_run):
    _, out, _, result = first_run
    assert result.code == 1, result.err
    assert "sub-02_task-rest_bold.json: invalid JSON sidecar" in result.err
    assert "sub-03_T1w.nii.gz: every voxel is 0" in result.err
    # the run coregistered to that T1w is named, with the T1w's reason, not SimpleITK's
    # "Refusing to change spacing"; the T1w's own failure is reported once
    bold = "sub-03_task-rest_bold.nii.gz: not processed: the T1w it is registered to failed"
    assert f"{bold} (" in result.err and "failed 3" in result.err  # sub-02's sidecar too
    assert result.err.count("sub-03_T1w.nii.gz: every voxel is 0") == 2
    assert "spacing" not in result.err
    assert (out / "sub-02" / "anat" / f"sub-02_{GRID}_desc-brain_T1w.nii.gz").is_file()
    assert "Traceback" not in result.err


def test_a_failed_t1w_publishes_nothing_of_its_set_nor_of_runs_needing_it(first_run):
    _, out, _, _ = first_run
    assert not (out / "sub-03").exists()  # no mask, no confounds, no motion figure


def test_entities_that_distinguish_sources_give_distinct_derivatives_the_group_pairs(first_run):
    _, out, _, _ = first_run
    func, anat = out / "sub-01" / "func", out / "sub-01" / "anat"
    for direction in ("AP", "PA"):
        assert (
            func / f"sub-01_task-rest_dir-{direction}_{GRID}_stat-falff_boldmap.nii.gz"
        ).is_file()
    for acq in ("mprage", "fast"):
        assert (anat / f"sub-01_acq-{acq}_{GRID}_desc-brain_T1w.nii.gz").is_file()
    modalities = [registered("modalities")[m] for m in ("T1w", "falff")]
    found = find_scans(out, modalities, {})
    scans = [s for s in found.flagged if s.subject == "01"]  # flagged by QC: kept apart
    assert len(scans) == 4 and not [s for s in found.scans if s.subject == "01"]
    pairs = build_pairs(scans, ["T1w", "falff"])
    assert {p.paths["T1w"].name.split("_")[1] for p in pairs} == {"acq-fast", "acq-mprage"}
    assert {p.paths["falff"].name.split("_")[2] for p in pairs} == {"dir-AP", "dir-PA"}


def test_outputs_record_links_space_fingerprint_qc_and_configuration(first_run):
    bids, out, _, _ = first_run
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetLinks"] == {"raw": bids.resolve().as_uri()}
    t1w = out / "sub-02" / "anat" / f"sub-02_{GRID}_desc-brain_T1w.nii.gz"
    header = nib.load(t1w).header
    assert int(header["sform_code"]) == 4 and int(header["qform_code"]) == 4  # MNI152
    sidecar = json.loads(sidecar_path(t1w).read_text())
    assert len(sidecar[FINGERPRINT_KEY]) == 64
    assert sidecar[QC_KEY]["Flagged"] is True and sidecar[QC_KEY]["SimilarityThreshold"] == 0.5
    (record,) = (out / "logs").glob("participant_*.toml")
    settings = tomllib.loads(record.read_text())
    assert settings["participant"]["falff_band"] == [0.01, 0.1]
    assert settings["record"]["subjects"] == ["01", "02", "03"] and "train" not in settings


def test_qc_tables_have_a_row_per_scan(first_run):
    _, out, _, _ = first_run
    dataset = (out / "qc.tsv").read_text().splitlines()
    assert dataset[0].split("\t")[:4] == ["subject", "session", "source", "registration_similarity"]
    sources = sorted(line.split("\t")[2].rsplit("/", 1)[1] for line in dataset[1:])
    assert sources == [
        "sub-01_acq-fast_T1w.nii.gz",
        "sub-01_acq-mprage_T1w.nii.gz",
        "sub-01_task-rest_dir-AP_bold.nii.gz",
        "sub-01_task-rest_dir-PA_bold.nii.gz",
        "sub-02_T1w.nii.gz",
    ]
    bold = next(line.split("\t") for line in dataset if "dir-AP" in line)
    assert bold[5] == "True" and float(bold[6]) >= 0 and float(bold[7]) > 10  # flagged, FD, tSNR
    assert len((out / "sub-01" / "sub-01_qc.tsv").read_text().splitlines()) == 5


def test_an_unchanged_rerun_skips_every_complete_scan(rerun):
    out, again = rerun
    before = _derivatives(out)
    result = again()
    assert result.code == 1  # sub-02's sidecar is still invalid
    assert "skipped (complete) 1: sub-01" in result.err
    assert _derivatives(out) == before


def test_other_processing_options_redo_exactly_what_they_change(rerun):
    out, again = rerun
    t1w = out / "sub-01" / "anat" / f"sub-01_acq-fast_{GRID}_desc-brain_T1w.nii.gz"
    falff = out / "sub-01" / "func" / f"sub-01_task-rest_dir-AP_{GRID}_stat-falff_boldmap.nii.gz"
    t1w_time, falff_time = t1w.stat().st_mtime_ns, falff.stat().st_mtime_ns
    result = again("--participant-label", "01", "--falff-band", "0.02", "0.08")
    assert result.code == 0, result.err
    assert "redoing its outputs" in result.err
    assert json.loads(sidecar_path(falff).read_text())["Band"] == [0.02, 0.08]
    assert falff.stat().st_mtime_ns > falff_time and t1w.stat().st_mtime_ns == t1w_time
    result = again(
        "--participant-label", "01", "--falff-band", "0.02", "0.08", "--skull-strip", "none"
    )
    assert result.code == 0, result.err
    assert json.loads(sidecar_path(t1w).read_text())["SkullStripping"] == "none"
    assert t1w.stat().st_mtime_ns > t1w_time


def test_another_registration_method_redoes_the_t1w_and_the_bold_through_it(rerun, monkeypatch):
    out, again = rerun
    t1w = out / "sub-01" / "anat" / f"sub-01_acq-fast_{GRID}_desc-brain_T1w.nii.gz"
    falff = out / "sub-01" / "func" / f"sub-01_task-rest_dir-AP_{GRID}_stat-falff_boldmap.nii.gz"
    t1w_time, falff_time = t1w.stat().st_mtime_ns, falff.stat().st_mtime_ns
    earlier = dataclasses.replace(SIMPLEITK, description="an earlier method")
    monkeypatch.setattr("bidsfusion.preprocess.backend.SIMPLEITK", earlier)
    refresh()  # the registry holds the backend as its hook registered it
    try:
        result = again("--participant-label", "01")
    finally:
        monkeypatch.undo()
        refresh()
    assert result.code == 0, result.err
    assert "redoing its outputs" in result.err
    assert t1w.stat().st_mtime_ns > t1w_time and falff.stat().st_mtime_ns > falff_time
    assert json.loads(sidecar_path(t1w).read_text())["Backend"] == "an earlier method"
    assert json.loads(sidecar_path(falff).read_text())["Backend"] == "an earlier method"


@pytest.mark.parametrize(
    ("damaged", "damage"),
    [
        (f"sub-01/anat/sub-01_acq-fast_{GRID}_desc-brain_T1w.json", b"{garbage"),
        ("sub-01/func/sub-01_task-rest_dir-AP_desc-confounds_timeseries.tsv", b""),
        (f"sub-01/figures/sub-01_acq-fast_{GRID}_desc-registration_T1w.png", b"\x89PNG\r\n"),
        (f"sub-01/anat/sub-01_acq-fast_{GRID}_desc-brain_mask.nii.gz", b"\x1f\x8b\x08"),
    ],
)
def test_a_damaged_output_is_redone_with_its_set(rerun, damaged, damage):
    out, again = rerun
    (out / damaged).write_bytes(damage)
    untouched = out / "sub-01" / "anat" / f"sub-01_acq-mprage_{GRID}_desc-brain_T1w.nii.gz"
    kept = untouched.stat().st_mtime_ns
    result = again("--participant-label", "01")
    assert result.code == 0, result.err
    assert "redoing its outputs: " + Path(damaged).name.split(".")[0] in result.err
    assert (out / damaged).read_bytes() != damage
    assert untouched.stat().st_mtime_ns == kept


def test_a_full_disk_publishes_nothing_of_the_scan_and_exits_73(rerun, monkeypatch):
    import errno
    import shutil as shutil_module

    out, again = rerun
    for path in (out / "sub-01").rglob("*dir-PA*"):
        path.unlink()
    copy = shutil_module.copyfile

    def full(source, destination, *args, **kwargs):
        if "dir-PA" in str(destination) and "boldmap" in str(destination):
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(source, destination, *args, **kwargs)

    monkeypatch.setattr(shutil_module, "copyfile", full)
    result = again("--participant-label", "01")
    assert result.code == 73, result.err
    assert "No space left on device" in result.err.strip().splitlines()[-1]
    assert not list((out / "sub-01").rglob("*dir-PA*"))  # no sidecar, confounds or figure


def test_a_damaged_qc_table_is_rebuilt_from_the_sidecars(rerun):
    out, again = rerun
    intact = (out / "qc.tsv").read_text()
    (out / "sub-01" / "sub-01_qc.tsv").write_text("garbage\twith\ttabs\n1\n")
    (out / "qc.tsv").write_bytes(b"")
    result = again("--participant-label", "01")
    assert result.code == 0, result.err
    assert (out / "qc.tsv").read_text() == intact
    assert len((out / "sub-01" / "sub-01_qc.tsv").read_text().splitlines()) == 5
    assert "registration flagged by QC" in result.err

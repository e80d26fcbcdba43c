"""Planning a subject: which T1w each BOLD run coregisters to, and what is already done."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bidsfusion import hookimpl
from bidsfusion.bids import load_layout
from bidsfusion.config import make_config
from bidsfusion.modality import Modality
from bidsfusion.plugins import registered
from bidsfusion.preprocess.backend import SIMPLEITK, Backend
from bidsfusion.preprocess.plan import plan_subject

AFFINE = np.diag([10.0, 10.0, 10.0, 1.0])  # 8 voxels of 10 mm: enough coverage


def _image(path: Path, shape: tuple[int, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).random(shape, dtype=np.float32) + 1
    nib.save(nib.Nifti1Image(data, AFFINE), path)


def _bold(root: Path, subject: str, session: str) -> None:
    stem = root / f"sub-{subject}" / f"ses-{session}" / "func" / f"sub-{subject}_ses-{session}"
    _image(Path(f"{stem}_task-rest_bold.nii.gz"), (8, 8, 8, 50))
    Path(f"{stem}_task-rest_bold.json").write_text('{"RepetitionTime": 2.0, "TaskName": "rest"}')


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """sub-01: T1w at days 0 and 300, BOLD at day 250 and 0; sub-02: BOLD only."""
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "p", "BIDSVersion": "1.8.0"}')
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    (root / "sub-01").mkdir()
    (root / "sub-01" / "sub-01_sessions.tsv").write_text(
        "session_id\tdays_since_entry\nses-1\t0\nses-2\t250\nses-3\t300\n"
    )
    for session in ("1", "3"):
        _image(root / f"sub-01/ses-{session}/anat/sub-01_ses-{session}_T1w.nii.gz", (8, 8, 8))
    _bold(root, "01", "1")
    _bold(root, "01", "2")
    _bold(root, "02", "1")
    return root


def _plan(root: Path, subject: str, backend: Backend = SIMPLEITK):
    config = make_config(
        {"bids_dir": root, "output_dir": root.parent / "out", "analysis_level": "participant"}
    )
    layout = load_layout(root, validate=False)
    modalities = list(registered("modalities").values())
    return plan_subject(layout, config, subject, (), modalities, backend)


@pytest.mark.parametrize("changed", [{"name": "other"}, {"description": "another method"}])
def test_the_backend_is_in_every_fingerprint_and_sidecar(dataset: Path, changed) -> None:
    other = dataclasses.replace(SIMPLEITK, **changed)
    plans = [_plan(dataset, "01", backend)[0] for backend in (SIMPLEITK, other)]
    for backend, plan in zip((SIMPLEITK, other), plans, strict=True):
        for job in (*plan.anat, *plan.func):
            assert all(o.sidecar["Backend"] == backend.description for o in job.outputs.values()
                       if o.sidecar is not None)  # fmt: skip
    for kind in ("anat", "func"):
        before, after = (getattr(plan, kind) for plan in plans)
        assert len(before) == len(after) == 2
        assert all(a.fingerprint != b.fingerprint for a, b in zip(before, after, strict=True))


def test_bold_takes_the_same_session_else_the_nearest_t1w_in_days(dataset: Path) -> None:
    plan, problems = _plan(dataset, "01")
    assert problems == []
    partner = {job.bold.name: job.anat_key for job in plan.func}
    anat = {job.key: job.t1w.name for job in plan.anat}
    assert anat[partner["sub-01_ses-1_task-rest_bold.nii.gz"]] == "sub-01_ses-1_T1w.nii.gz"
    # day 250 is 50 days from ses-3 (day 300) and 250 from ses-1 (day 0)
    assert anat[partner["sub-01_ses-2_task-rest_bold.nii.gz"]] == "sub-01_ses-3_T1w.nii.gz"


def test_a_subject_without_t1w_goes_straight_to_the_template(dataset: Path, caplog) -> None:
    plan, problems = _plan(dataset, "02")
    assert problems == [] and plan.anat == []
    (job,) = plan.func
    assert job.anat_key is None
    assert "has no T1w" in caplog.text
    sidecar = job.outputs["falff"].sidecar
    assert any("no T1w" in warning for warning in sidecar["Warnings"])
    assert job.repetition_time == 2.0


def test_workflow_marks_heavy_and_quick_nodes(dataset: Path) -> None:
    from bidsfusion.preprocess.workflow import HEAVY_MEM_GB, init_subject_wf

    plan, _ = _plan(dataset, "01")
    backend = registered("preprocessing_backends")["simpleitk"]
    wf = init_subject_wf(plan, backend, list(registered("modalities").values()))
    nodes = {name: wf.get_node(name) for name in wf.list_node_names()}
    heavy = {n for n, node in nodes.items() if node.mem_gb == HEAVY_MEM_GB}
    expected = {n for n in nodes if n.endswith(("_register", "_realign", "_falff"))}
    assert heavy == expected and len(heavy) == 2 + 2 * 2  # 2 T1w; per BOLD: realign, fALFF
    quick = {n for n, node in nodes.items() if node.run_without_submitting}
    cheap = ("_sink", "_outputs", "_chain", "_resample", "_mask", "_qc")
    assert quick == {n for n in nodes if n.endswith(cheap)}
    sinks = [n for n in nodes if n.endswith("_sink")]
    assert len(sinks) == 2 + 2  # one per scan: its outputs are published as a set


def test_an_unknown_session_label_is_18_listing_the_sessions(dataset: Path, run_cli) -> None:
    out = dataset.parent / "out"
    result = run_cli(dataset, out, "participant", "--session-label", "09", "--skip-bids-validation")
    assert result.code == 18, result.err
    assert "session label(s) 09 not found" in result.err and "they have: 1, 2, 3" in result.err
    assert not out.exists()


@pytest.mark.parametrize(
    ("affine", "words"),
    [
        (np.diag([108.0, 1.0, 1.0, 1.0]), "voxel size 108 x 1 x 1 mm is outside 0.1-10 mm"),
        (np.array([[10, 3, 0, 0], [0, 10, 0, 0], [0, 0, 10, 0], [0, 0, 0, 1.0]]), "shear"),
    ],
)
def test_absurd_voxels_and_sheared_axes_are_refused_naming_the_file(dataset, affine, words):
    t1w = dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((80, 8, 8), dtype=np.float32), affine), t1w)
    plan, problems = _plan(dataset, "01")
    (problem,) = problems
    assert str(t1w) in str(problem) and words in str(problem) and problem.exit_code == 65
    assert [job.t1w.name for job in plan.anat] == ["sub-01_ses-3_T1w.nii.gz"]


def _lying_header(path: Path, shape: tuple[int, ...]) -> None:
    """A small image whose header claims ``shape`` (the data stay 8^3)."""
    image = nib.Nifti1Image(np.ones((8, 8, 8), dtype=np.float32), AFFINE)
    image.header.set_data_shape(shape)
    raw = image.header.binaryblock + b"\0" * 4 + np.ones(512, np.float32).tobytes()
    path.write_bytes(raw)


@pytest.mark.parametrize(
    ("shape", "words"),
    [((10000, 10000, 10000), "more than any MRI volume"), ((64, 64, 64), "but the file is")],
)
def test_a_header_that_claims_more_data_than_the_file_holds_is_refused(
    dataset, shape, words
) -> None:
    t1w = dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii"
    (dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz").unlink()
    _lying_header(t1w, shape)
    _, problems = _plan(dataset, "01")
    (problem,) = problems
    assert str(t1w) in str(problem) and words in str(problem) and problem.exit_code == 65
    assert "\n" not in str(problem)


def _complex(image: nib.Nifti1Image) -> nib.Nifti1Image:
    return nib.Nifti1Image(image.get_fdata().astype(np.complex64), image.affine)


def _rgb(image: nib.Nifti1Image) -> nib.Nifti1Image:
    rgb = np.zeros(image.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return nib.Nifti1Image(rgb, image.affine)


def _zero_voxel_side(image: nib.Nifti1Image) -> bytes:
    """The file's bytes with pixdim[1] zeroed (nibabel mends it on saving and loading)."""
    raw = bytearray(image.to_bytes())
    raw[80:84] = np.float32(0).tobytes()
    return gzip.compress(bytes(raw))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_complex, "data type complex64 are not real numbers"),
        (_rgb, "are not real numbers (a complex or RGB image)"),
        (_zero_voxel_side, "voxel size (pixdim) is 0 x"),
    ],
)
def test_voxels_that_are_not_real_numbers_or_a_zero_voxel_side_are_refused(
    dataset, damage, words
) -> None:
    t1w = dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"
    damaged = damage(nib.load(t1w))
    if isinstance(damaged, bytes):
        t1w.write_bytes(damaged)
    else:
        nib.save(damaged, t1w)
    _, problems = _plan(dataset, "01")
    (problem,) = problems
    assert str(t1w) in str(problem) and words in str(problem) and problem.exit_code == 65


def test_a_repetition_time_of_true_is_no_number(dataset) -> None:
    sidecar = dataset / "sub-02/ses-1/func/sub-02_ses-1_task-rest_bold.json"
    sidecar.write_text('{"RepetitionTime": true, "TaskName": "rest"}')
    _, problems = _plan(dataset, "02")
    (problem,) = problems
    assert "RepetitionTime True is not a number" in str(problem) and problem.exit_code == 65


def test_a_repetition_time_in_milliseconds_is_named_as_such(dataset) -> None:
    sidecar = dataset / "sub-02/ses-1/func/sub-02_ses-1_task-rest_bold.json"
    sidecar.write_text('{"RepetitionTime": 2000, "TaskName": "rest"}')
    _, problems = _plan(dataset, "02")
    (problem,) = problems
    assert "RepetitionTime 2000 looks like milliseconds" in str(problem) and "(2)" in str(problem)


def test_a_t1w_of_one_volume_in_4d_is_read_as_3d(dataset, tmp_path: Path) -> None:
    from bidsfusion.nifti import read_data

    t1w = dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"
    data = np.random.default_rng(1).random((8, 8, 8, 1), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, AFFINE), t1w)
    plan, problems = _plan(dataset, "01")
    assert not problems and len(plan.anat) == 2
    job = next(j for j in plan.anat if j.t1w == t1w)
    assert "read as its 3D volume" in json.dumps([o.sidecar for o in job.outputs.values()])
    volume, _ = read_data(t1w, ndim=3)
    assert volume.shape == (8, 8, 8) and np.array_equal(volume, data[..., 0])


def test_raw_scans_that_differ_only_in_replaced_entities_are_refused_naming_each_other(
    dataset,
) -> None:
    anat = dataset / "sub-01/ses-1/anat"
    for space in ("MNI", "T1w", "orig"):
        _image(anat / f"sub-01_ses-1_space-{space}_desc-preproc_T1w.nii.gz", (8, 8, 8))
    plan, problems = _plan(dataset, "01")
    refused = sorted(str(p) for p in problems)  # with the plain T1w of ses-1: one name
    assert len(refused) == 4 and all("differ only in space/res/desc" in p for p in refused)
    assert refused[0].startswith(str(anat / "sub-01_ses-1_T1w.nii.gz: it and sub-01_ses-1_"))
    assert "space-T1w_desc-preproc_T1w.nii.gz" in refused[0] and "\n" not in refused[0]
    assert [job.t1w.name for job in plan.anat] == ["sub-01_ses-3_T1w.nii.gz"]
    outputs = [o.path for job in plan.anat for o in job.outputs.values()]
    assert len(outputs) == len(set(outputs))


def _negate(**inputs):
    """A map's interface, given its ``inputs`` (nipype Function: out_file = -in_file)."""
    from nipype.interfaces.utility import Function

    def negate(in_file, repetition_time=None, extra=None):
        import os

        import nibabel as nib

        image = nib.load(in_file)
        out_file = os.path.abspath("negated.nii.gz")
        nib.save(nib.Nifti1Image(-image.get_fdata(), image.affine), out_file)
        return out_file

    return Function(["in_file", *inputs], ["out_file"], negate, **inputs)


def test_each_modality_gets_its_own_inputs_and_t1w_derived_maps_are_planned(dataset) -> None:
    from bidsfusion.preprocess.workflow import init_subject_wf

    negated = Modality("negT1w", "T1w", "anat", {"desc": "neg", "suffix": "T1w"}, _negate)
    plain = Modality(
        "plain", "bold", "func", {"stat": "plain", "suffix": "boldmap"}, _negate,
        parameters={"extra": 3},
    )  # fmt: skip
    config = make_config(
        {"bids_dir": dataset, "output_dir": dataset.parent / "out", "analysis_level": "participant",
         "falff_band": (0.02, 0.08)}
    )  # fmt: skip
    modalities = [*registered("modalities").values(), negated, plain]
    plan, problems = plan_subject(
        load_layout(dataset, validate=False), config, "01", (), modalities, SIMPLEITK
    )
    assert problems == []
    anat, func = plan.anat[0], plan.func[0]
    assert anat.maps == {"negT1w": {}}
    assert anat.outputs["negT1w"].path.name == (
        "sub-01_ses-1_space-MNI152NLin2009aSym_res-3mm_desc-neg_T1w.nii.gz"
    )
    assert func.maps == {"falff": {"band": (0.02, 0.08)}, "plain": {"extra": 3}}
    assert func.outputs["falff"].sidecar["Band"] == [0.02, 0.08]
    assert "Band" not in func.outputs["plain"].sidecar
    assert func.outputs["plain"].sidecar["Parameters"] == {"extra": 3}
    backend = registered("preprocessing_backends")["simpleitk"]
    wf = init_subject_wf(plan, backend, modalities)
    names = wf.list_node_names()
    assert f"{anat.key}_negT1w_resample" in names
    assert wf.get_node(f"{anat.key}_negT1w").inputs.in_file == str(anat.t1w)
    assert wf.get_node(f"{func.key}_falff").inputs.band == (0.02, 0.08)
    plain_node = wf.get_node(f"{func.key}_plain")
    assert not hasattr(plain_node.inputs, "band") and plain_node.inputs.repetition_time == 2.0


class _NegatedT1wPlugin:
    """A plugin registering a T1w-derived modality: the negated T1w."""

    @hookimpl
    def register_modalities(self, register) -> None:
        register("negT1w", Modality("negT1w", "T1w", "anat", {"desc": "neg", "suffix": "T1w"},
                                    _negate, description="negated T1w"))  # fmt: skip


@pytest.mark.slow
def test_a_t1w_derived_map_is_made_beside_the_t1w(run_cli, tmp_path: Path) -> None:
    from bidsfusion.plugins import get_plugin_manager
    from bidsfusion.synth.dataset import make_dataset

    bids, out = tmp_path / "bids", tmp_path / "out"
    make_dataset(bids, n_subjects=1, seed=2, max_sessions=1, n_volumes=50, n_jobs=1)
    get_plugin_manager().register(_NegatedT1wPlugin(), name="negated-t1w")
    try:
        result = run_cli(bids, out, "participant", "-w", tmp_path / "work", "--nprocs", "2")
    finally:
        get_plugin_manager().unregister(name="negated-t1w")
    assert result.code == 0, result.err
    (t1w,) = out.glob("sub-*/**/anat/*_desc-brain_T1w.nii.gz")
    (negated,) = out.glob("sub-*/**/anat/*_desc-neg_T1w.nii.gz")
    np.testing.assert_allclose(nib.load(negated).get_fdata(), -nib.load(t1w).get_fdata(), atol=1e-4)
    sidecar = json.loads(negated.with_name(negated.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Description"] == "negated T1w" and sidecar["QC"]
    # its figure keeps its own desc: desc-registration alone would be the T1w's figure
    assert len(list(out.glob("sub-*/figures/*_desc-registration*_T1w.png"))) == 2
    assert list(out.glob("sub-*/figures/*_desc-registrationNeg_T1w.png"))

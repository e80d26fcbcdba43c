"""The synthetic dataset: BIDS validity, metadata, ground truth, planted effects, determinism."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids import BIDSLayout
from bids_validator import BIDSValidator

from bidsfusion.errors import OutputError, UsageError
from bidsfusion.rigid import rigid_matrix
from bidsfusion.synth.anatomy import MNI_SHAPE, PHANTOM_SHAPE, Effects, load_phantom, subject_maps
from bidsfusion.synth.dataset import (
    AD_FRACTION,
    EFFECT_STRENGTH,
    MIN_VOLUMES,
    MOTION_COLUMNS,
    SynthSummary,
    assign_diagnoses,
    make_dataset,
    plan_dataset,
    synth_settings,
)
from bidsfusion.synth.individuality import draw_individuality

N_SUBJECTS = 6
N_VOLUMES = 120
MASKS = "sourcedata/synth/masks/space-MNI152NLin2009aSym_res-2mm_desc-{}_mask.nii.gz"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    """One dataset with strong planted effects on otherwise identical subjects (their
    individuality is tested on its own), shared by the tests of this module."""
    out = tmp_path_factory.mktemp("synth") / "bids"
    return make_dataset(
        out,
        n_subjects=N_SUBJECTS,
        seed=3,
        max_sessions=2,
        effect_strength=1.5,
        n_jobs=2,
        variability=0.0,
    )


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _images(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(f"sub-*/ses-*/*/*{pattern}.nii.gz"))


def _xfm(root: Path, image: Path) -> dict:
    relative = image.relative_to(root)
    name = relative.name.replace(".nii.gz", "_xfm.json")
    return json.loads((root / "sourcedata/synth" / relative.parent.parent / name).read_text())


def _in_mask(image: nib.Nifti1Image, to_mni: np.ndarray, mask: nib.Nifti1Image) -> np.ndarray:
    """Boolean map over the image grid: which voxel centres fall in an MNI mask (nearest)."""
    shape = image.shape[:3]
    ijk = np.vstack([np.indices(shape).reshape(3, -1), np.ones((1, int(np.prod(shape))))])
    mask_ijk = np.rint(np.linalg.inv(mask.affine) @ to_mni @ image.affine @ ijk)[:3].astype(int)
    inside = np.all((mask_ijk >= 0) & (mask_ijk < np.array(mask.shape)[:, None]), axis=0)
    out = np.zeros(ijk.shape[1], dtype=bool)
    out[inside] = np.asarray(mask.dataobj)[tuple(mask_ijk[:, inside])] > 0
    return out.reshape(shape)


def _diagnoses(root: Path) -> dict[str, str]:
    return {r["participant_id"]: r["diagnosis"] for r in _read_tsv(root / "participants.tsv")}


def test_dataset_is_valid_bids(synth: SynthSummary) -> None:
    root = synth.out_dir
    layout = BIDSLayout(root, validate=True)
    assert len(layout.get_subjects()) == N_SUBJECTS
    assert len(layout.get(suffix="T1w", extension=".nii.gz")) == synth.n_t1w
    assert len(layout.get(suffix="bold", extension=".nii.gz")) == synth.n_bold
    validator = BIDSValidator()
    for folder, _, files in os.walk(root):
        if Path(folder).relative_to(root).parts[:1] == ("sourcedata",):
            continue
        for name in files:
            assert validator.is_bids("/" + (Path(folder) / name).relative_to(root).as_posix())
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["BIDSVersion"] == "1.8.0"
    assert description["DatasetType"] == "raw"
    assert "seed=3" in description["GeneratedBy"][0]["Description"]
    assert (root / "README").read_text().strip()
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]


def test_participants_and_groups(synth: SynthSummary) -> None:
    rows = _read_tsv(synth.out_dir / "participants.tsv")
    assert [r["participant_id"] for r in rows] == [f"sub-{i:02d}" for i in range(1, N_SUBJECTS + 1)]
    assert tuple(rows) == synth.participants
    groups = Counter(r["diagnosis"] for r in rows)
    assert groups["AD"] >= 2 and groups["HC"] >= 2
    assert all(55 <= float(r["age"]) <= 95 and r["sex"] in {"F", "M"} for r in rows)
    sidecar = json.loads((synth.out_dir / "participants.json").read_text())
    assert set(sidecar) == set(rows[0])
    assert set(sidecar["diagnosis"]["Levels"]) == {"AD", "HC", "other"}
    assert {r["site"] for r in rows} <= set(sidecar["site"]["Levels"])


def test_ad_fraction_sets_the_group_sizes() -> None:
    counts = Counter(assign_diagnoses(50, seed=2, ad_fraction=0.4))
    assert counts == {"AD": 20, "other": 8, "HC": 22}
    counts = Counter(assign_diagnoses(10, seed=2, ad_fraction=0.95))
    assert counts["HC"] >= 2 and counts["AD"] == 8


def test_site_confound_ties_the_site_to_the_diagnosis() -> None:
    def fraction_at_b(plans: list, diagnosis: str) -> float:
        sites = [p.site for p in plans if p.diagnosis == diagnosis]
        return sites.count("B") / len(sites)

    confounded = plan_dataset(200, seed=4, ad_fraction=0.4, site_confound=1.0)
    assert fraction_at_b(confounded, "AD") == 1.0 and fraction_at_b(confounded, "HC") == 0.0
    free = plan_dataset(200, seed=4, ad_fraction=0.4)
    assert abs(fraction_at_b(free, "AD") - fraction_at_b(free, "HC")) < 0.2
    assert 0.3 < fraction_at_b(free, "other") < 0.7


def _brain_maps(seed: int, variability: float) -> tuple[np.ndarray, np.ndarray]:
    """One subject's T1 and LF amplitude where the template brain has grey matter or CSF
    but little white matter (there more grey matter raises both)."""
    phantom = load_phantom()
    individual = draw_individuality(np.random.default_rng(seed), PHANTOM_SHAPE, variability)
    maps = subject_maps(phantom, Effects(), individual)
    cortex = phantom.brain & (phantom.wm < 0.1)
    return maps.t1[cortex], maps.lf_amplitude[cortex]


def test_subjects_differ_and_their_modalities_share_the_difference() -> None:
    template_t1, template_lf = _brain_maps(0, variability=0.0)
    assert np.array_equal(_brain_maps(1, variability=0.0)[0], template_t1)
    (t1_a, lf_a), (t1_b, lf_b) = _brain_maps(1, 1.0), _brain_maps(2, 1.0)
    assert np.abs(t1_a - template_t1).mean() > 0.02 * template_t1.mean()
    assert np.corrcoef(t1_a - template_t1, t1_b - template_t1)[0, 1] < 0.4
    same = np.corrcoef(t1_a - template_t1, lf_a - template_lf)[0, 1]
    other = np.corrcoef(t1_a - template_t1, lf_b - template_lf)[0, 1]
    assert same > 0.4 and abs(other) < 0.2 and same > abs(other) + 0.3, (same, other)


def test_coupling_scales_only_the_shared_factors() -> None:
    base, coupled = (
        draw_individuality(np.random.default_rng(5), PHANTOM_SHAPE, 1.0, coupling)
        for coupling in (1.0, 2.5)
    )
    assert np.allclose(np.log(coupled.gm_density), 2.5 * np.log(base.gm_density), atol=1e-5)
    assert coupled.ventricle_mm == pytest.approx(2.5 * base.ventricle_mm)
    assert np.array_equal(coupled.displacement_mm, base.displacement_mm)
    assert np.array_equal(coupled.lf_pattern, base.lf_pattern)
    template = draw_individuality(np.random.default_rng(5), PHANTOM_SHAPE, 0.0, 2.5)
    assert np.all(template.gm_density == 1.0) and template.ventricle_mm == 0.0


def test_cli_defaults_are_the_calibrated_ones() -> None:
    from bidsfusion.cli import cli

    defaults = {p.name: p.default for p in cli.commands["synth"].params}
    assert defaults["effect_strength"] == EFFECT_STRENGTH
    assert defaults["ad_fraction"] == AD_FRACTION


@pytest.mark.parametrize("n", [4, 5, 9, 100])
def test_diagnosis_counts(n: int) -> None:
    counts = Counter(assign_diagnoses(n, seed=11))
    assert counts["AD"] >= 2 and counts["HC"] >= 2
    assert sum(counts.values()) == n
    if n == 100:
        assert counts == {"AD": 15, "HC": 70, "other": 15}
    assert assign_diagnoses(n, seed=11) == assign_diagnoses(n, seed=11)
    assert plan_dataset(n, seed=0)[0].label == ("001" if n == 100 else "01")


def test_sessions_split_modalities(synth: SynthSummary) -> None:
    for sub in sorted(synth.out_dir.glob("sub-*")):
        rows = _read_tsv(sub / f"{sub.name}_sessions.tsv")
        days = [int(r["days_since_entry"]) for r in rows]
        assert days[0] == 0 and days == sorted(set(days))
        assert [r["session_id"] for r in rows] == sorted(p.name for p in sub.glob("ses-*"))
        assert list(sub.glob("ses-*/anat/*_T1w.nii.gz")) and list(sub.glob("ses-*/func/*.nii.gz"))
    for plan in plan_dataset(N_SUBJECTS, seed=3, max_sessions=2):
        written = {
            (path.parent.parent.name, "T1w" if "T1w" in path.name else "bold")
            for path in (synth.out_dir / f"sub-{plan.label}").glob("ses-*/*/*.nii.gz")
        }
        assert written == {(f"ses-{s.label}", m) for s in plan.sessions for m in s.modalities}
    plans = plan_dataset(60, seed=3)
    split = [p for p in plans if any(len(s.modalities) == 1 for s in p.sessions)]
    assert split, "some subject must have T1w and bold in different sessions"
    for plan in plans:
        assert 1 <= len(plan.sessions) <= 3
        assert {m for s in plan.sessions for m in s.modalities} == {"T1w", "bold"}
    assert all(len(p.sessions) == 1 for p in plan_dataset(20, seed=3, max_sessions=1))


def test_images_shapes_and_metadata(synth: SynthSummary) -> None:
    root = synth.out_dir
    for path in _images(root, "T1w"):
        image = nib.load(path)
        zooms = image.header.get_zooms()
        assert image.ndim == 3 and image.get_data_dtype() == np.int16
        assert 1.5 <= zooms[0] <= 2.0 and zooms[0] == zooms[1] == zooms[2]
        assert int(image.header["qform_code"]) == int(image.header["sform_code"]) == 1
        assert image.header.get_xyzt_units() == ("mm", "sec")
        data = np.asarray(image.dataobj, dtype=np.float32)
        faces = [data[0], data[-1], data[:, 0], data[:, -1], data[:, :, 0], data[:, :, -1]]
        assert max(float(face.mean()) for face in faces) < 100, "FOV must cover the head"
        assert np.percentile(data, 99) > 700
    for path in _images(root, "bold"):
        image = nib.load(path)
        zooms = image.header.get_zooms()
        sidecar = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert image.ndim == 4 and image.shape[3] == N_VOLUMES
        assert 3.0 <= zooms[0] <= 4.0 and zooms[0] == zooms[1] == zooms[2]
        assert sidecar["TaskName"] == "rest"
        assert sidecar["RepetitionTime"] in (2.0, 2.5)
        assert zooms[3] == pytest.approx(sidecar["RepetitionTime"])
        assert image.header.get_xyzt_units() == ("mm", "sec")


def test_ground_truth_files(synth: SynthSummary) -> None:
    root = synth.out_dir
    truth = json.loads((root / "sourcedata/synth/truth.json").read_text())
    diagnoses = _diagnoses(root)
    assert {s: v["diagnosis"] for s, v in truth["subjects"].items()} == diagnoses
    for subject, entry in truth["subjects"].items():
        assert (entry["effect"] > 0) == (diagnoses[subject] != "HC")
        assert (entry["ventricle_dilation_mm"] > 0) == (diagnoses[subject] != "HC")
    for name in ("brain", "ventricles", "hippocampus", "pcc"):
        mask = nib.load(root / MASKS.format(name))
        assert mask.shape == MNI_SHAPE
        assert set(np.unique(np.asarray(mask.dataobj))) == {0, 1}
        assert root / "sourcedata/synth" / truth["masks"][name] == root / MASKS.format(name)
    for path in _images(root, "T1w") + _images(root, "bold"):
        xfm = _xfm(root, path)
        to_mni = np.array(xfm["to_mni"])
        assert to_mni.shape == (4, 4) and np.allclose(to_mni[3], [0, 0, 0, 1])
        scale = abs(np.linalg.det(to_mni[:3, :3])) ** (1 / 3)
        assert scale == pytest.approx(1 / xfm["head_scale"])
        assert root / xfm["source"] == path
    for path in _images(root, "bold"):
        xfm = _xfm(root, path)
        motion_path = root / "sourcedata/synth" / path.relative_to(root).parent.parent
        rows = _read_tsv(motion_path / xfm["motion"])
        motion = np.array([[float(r[c]) for c in MOTION_COLUMNS] for r in rows])
        assert tuple(rows[0]) == MOTION_COLUMNS and motion.shape == (N_VOLUMES, 6)
        assert not motion[0].any() and motion[1:].any()
        assert np.abs(motion[:, :3]).max() < 1.0 and np.abs(motion[:, 3:]).max() < np.deg2rad(1)


def _to_template_grid(image: nib.Nifti1Image, to_mni: np.ndarray, grid: nib.Nifti1Image):
    """The scan's first volume resampled onto an MNI grid through ``to_mni`` (trilinear)."""
    from scipy import ndimage

    data = np.asarray(image.dataobj[..., 0] if image.ndim == 4 else image.dataobj, np.float32)
    voxel = np.linalg.inv(image.affine) @ np.linalg.inv(to_mni) @ grid.affine
    return ndimage.affine_transform(data, voxel[:3, :3], voxel[:3, 3], grid.shape, order=1)


def test_transform_maps_scans_onto_the_template(synth: SynthSummary) -> None:
    """Through ``to_mni`` every scan matches nilearn's template (up to the subject's own
    anatomy); through its inverse not."""
    from nilearn.datasets import load_mni152_template

    root = synth.out_dir
    template = load_mni152_template(resolution=2)
    brain = np.asarray(nib.load(root / MASKS.format("brain")).dataobj) > 0
    reference = template.get_fdata()[brain]
    for path in _images(root, "T1w")[:3] + _images(root, "bold")[:3]:
        image, to_mni = nib.load(path), np.array(_xfm(root, path)["to_mni"])
        right = _to_template_grid(image, to_mni, template)[brain]
        wrong = _to_template_grid(image, np.linalg.inv(to_mni), template)[brain]
        assert np.corrcoef(right, reference)[0, 1] > 0.6
        assert np.corrcoef(wrong, reference)[0, 1] < 0.3


def _motion(root: Path, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A bold run's planted motion (n_volumes, 6) and motion centre (3,) from the truth files."""
    xfm = _xfm(root, path)
    folder = root / "sourcedata/synth" / path.relative_to(root).parent.parent
    return np.loadtxt(folder / xfm["motion"], skiprows=1), np.array(xfm["motion_centre_mm"])


def test_motion_convention(synth: SynthSummary) -> None:
    """Resampling volume t at inv(T_t) @ y realigns it to volume 0 (the documented convention)."""
    from scipy import ndimage

    root = synth.out_dir

    def displacement(path: Path) -> float:
        motion = _motion(root, path)[0]
        return float(np.max(np.abs(motion[:, :3]).sum(axis=1) + 50 * np.abs(motion[:, 3:]).sum(1)))

    path = max(_images(root, "bold"), key=displacement)
    motion, centre = _motion(root, path)
    t = int(np.argmax(np.abs(motion[:, :3]).sum(axis=1) + 50 * np.abs(motion[:, 3:]).sum(axis=1)))
    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float32)
    reference = ndimage.gaussian_filter(data[..., 0], 1.0)
    matrix = rigid_matrix(motion[t], centre)

    def error(world: np.ndarray) -> float:
        voxel = np.linalg.inv(image.affine) @ world @ image.affine
        moved = ndimage.affine_transform(data[..., t], voxel[:3, :3], voxel[:3, 3], order=1)
        return float(np.mean((ndimage.gaussian_filter(moved, 1.0) - reference) ** 2))

    right, unmoved, wrong = error(np.linalg.inv(matrix)), error(np.eye(4)), error(matrix)
    assert right < 0.7 * unmoved
    assert right < 0.3 * wrong


def _lf_fraction(image: nib.Nifti1Image, region: np.ndarray) -> float:
    """Mean over region voxels of the 0.01-0.1 Hz share of the (non-DC) power."""
    series = np.asarray(image.dataobj, dtype=np.float32)[region].astype(np.float64)
    power = np.abs(np.fft.rfft(series - series.mean(axis=1, keepdims=True), axis=1)) ** 2
    freqs = np.fft.rfftfreq(series.shape[1], float(image.header["pixdim"][4]))
    band = (freqs >= 0.01) & (freqs <= 0.1)
    return float(np.mean(power[:, band].sum(axis=1) / power[:, 1:].sum(axis=1)))


def test_planted_effects_are_measurable_in_raw_images(synth: SynthSummary) -> None:
    root = synth.out_dir
    diagnoses = _diagnoses(root)
    ventricles = nib.load(root / MASKS.format("ventricles"))
    pcc = nib.load(root / MASKS.format("pcc"))
    dark: dict[str, list[float]] = {"AD": [], "HC": []}
    lf: dict[str, list[float]] = {"AD": [], "HC": []}
    for path in _images(root, "T1w") + _images(root, "bold"):
        group = diagnoses[path.name.split("_")[0]]
        if group == "other":
            continue
        image = nib.load(path)
        to_mni = np.array(_xfm(root, path)["to_mni"])
        if image.ndim == 3:
            values = np.asarray(image.dataobj)[_in_mask(image, to_mni, ventricles)]
            dark[group].append(float(np.mean(values < 400)))
        else:
            lf[group].append(_lf_fraction(image, _in_mask(image, to_mni, pcc)))
    assert np.mean(dark["AD"]) > 1.2 * np.mean(dark["HC"])
    assert np.mean(lf["AD"]) < np.mean(lf["HC"]) - 0.1


def test_effect_strength_zero_plants_nothing() -> None:
    plans = plan_dataset(12, seed=1, effect_strength=0.0)
    assert {p.diagnosis for p in plans} >= {"AD", "HC"}
    assert all(p.effect == 0.0 for p in plans)
    strong = {p.label: p.effect for p in plan_dataset(12, seed=1, effect_strength=2.0)}
    assert all((strong[p.label] > 0) == (p.diagnosis != "HC") for p in plans)


def _arrays(root: Path) -> dict[str, np.ndarray]:
    return {
        p.relative_to(root).as_posix(): np.asarray(nib.load(p).dataobj)
        for p in sorted(root.rglob("*.nii.gz"))
    }


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    first = make_dataset(
        tmp_path / "empty", n_subjects=2, seed=5, max_sessions=1, n_volumes=50, n_jobs=1
    )
    again = make_dataset(
        tmp_path / "b", n_subjects=2, seed=5, max_sessions=1, n_volumes=50, n_jobs=2
    )
    other = make_dataset(
        tmp_path / "c", n_subjects=2, seed=6, max_sessions=1, n_volumes=50, n_jobs=1
    )
    a, b, c = _arrays(first.out_dir), _arrays(again.out_dir), _arrays(other.out_dir)
    assert a.keys() == b.keys() and len(a) >= 6
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (first.out_dir / "participants.tsv").read_bytes() == (
        again.out_dir / "participants.tsv"
    ).read_bytes()
    assert not any(
        k in c and c[k].shape == a[k].shape and np.array_equal(a[k], c[k])
        for k in a
        if "/masks/" not in k
    )


def test_fills_an_existing_empty_folder_without_writing_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container's mount point: the folder is writable, its parent may not be (root
    ignores permissions, so the test records where the dataset is built)."""
    from bidsfusion.synth import dataset

    parent = tmp_path / "mount"
    out = parent / "data"
    out.mkdir(parents=True)
    (out / ".synth-0123456789ab").mkdir()  # left by a run killed midway
    built_in = []
    write = dataset._write_dataset_files

    def recorded(root: Path, *args: object) -> None:
        built_in.append(root)
        write(root, *args)

    monkeypatch.setattr(dataset, "_write_dataset_files", recorded)
    summary = make_dataset(out, n_subjects=1, max_sessions=1, n_volumes=MIN_VOLUMES)
    assert built_in[0].parent == out.absolute() and built_in[0].name.startswith(".synth-")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README", "dataset_description.json", "participants.json",
                     "participants.tsv", "sourcedata", "sub-01"]  # fmt: skip
    assert summary.n_subjects == 1 and (out / "sub-01").is_dir()
    assert sorted(p.name for p in parent.iterdir()) == ["data"]


def test_refuses_a_non_empty_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an empty folder"):
        make_dataset(out, n_subjects=1)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        make_dataset(tmp_path / "file", n_subjects=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_subjects": 0},
        {"max_sessions": 0},
        {"max_sessions": 4},
        {"effect_strength": -1.0},
        {"n_volumes": 5},
        {"ad_fraction": 0.0},
        {"ad_fraction": 1.0},
        {"site_confound": 1.5},
        {"variability": -1.0},
        {"coupling": -0.5},
        {"coupling": float("nan")},
        {"coupling": 10.5},
        {"variability": 1e9},
        {"effect_strength": float("inf")},
    ],
)
def test_rejects_nonsense_numbers(tmp_path: Path, kwargs: dict) -> None:
    name = "--" + next(iter(kwargs)).replace("n_", "").replace("max_", "").replace("_", "-")
    with pytest.raises(UsageError, match=name):
        make_dataset(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_shared_severity_shows_in_both_modalities_each_with_its_own_noise() -> None:
    without = plan_dataset(60, seed=4)
    with_it = plan_dataset(60, seed=4, shared_severity=1.0)
    assert all(p.severity is None for p in without)
    assert [dataclasses.replace(p, severity=None) for p in with_it] == without  # nothing else
    assert (
        "shared_severity" not in synth_settings()
        and synth_settings(shared_severity=1.0)["shared_severity"] == 1.0
    )
    values = np.array([p.severity.value for p in with_it])
    t1w, bold = (np.array([getattr(p.severity, m) for p in with_it]) for m in ("t1w", "bold"))
    ad = np.array([p.diagnosis == "AD" for p in with_it])
    assert values[ad].mean() - values[~ad].mean() > 0.5  # it follows the diagnosis
    shared = np.corrcoef(t1w, bold)[0, 1]
    assert 0.3 < shared < 0.95  # the two expressions share the severity, with their own noise
    assert np.corrcoef(values, t1w)[0, 1] > shared
    phantom = load_phantom()
    region = phantom.severity_t1w > 0.9
    mild, severe = (subject_maps(phantom, Effects(severity_gm_loss=loss)).t1 for loss in (0.0, 0.5))
    assert np.abs(mild - severe)[~(phantom.severity_t1w > 0)].max() == 0  # only there
    assert (mild - severe)[region & phantom.brain].mean() != 0
    amplitude = subject_maps(phantom, Effects(severity_lf_factor=0.5)).lf_amplitude
    reference = subject_maps(phantom, Effects()).lf_amplitude
    expected = reference * (1.0 - 0.5 * phantom.severity_bold)
    np.testing.assert_allclose(amplitude, expected, rtol=1e-5, atol=1e-9)
    assert (amplitude < reference).sum() > 100

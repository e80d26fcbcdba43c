"""The ALFF plugin: its formula, its map at the participant level, and a 3-modality group run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD", "1")

import bidsfusion_alff
import nibabel as nib
import numpy as np
import pytest
import scipy.fft
import scipy.signal
from bidsfusion_alff import alff

from bidsfusion.bids import GRID_RES, TEMPLATE_SPACE
from bidsfusion.cli import main
from bidsfusion.locations import write_dataset_description
from bidsfusion.plugins import get_plugin_manager, registered

GRID = f"space-{TEMPLATE_SPACE}_res-{GRID_RES}"


@pytest.fixture
def alff_registered() -> Iterator[None]:
    """The plugin registered for the test (autoload is off in the test suite)."""
    pm = get_plugin_manager()
    added = "alff" not in registered("modalities")
    if added:
        pm.register(bidsfusion_alff, name="alff-under-test")
    yield
    if added:
        pm.unregister(name="alff-under-test")


def run(*args: object) -> int:
    """``bidsfusion ARGS...`` in-process; its exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return int(exit_info.value.code or 0)


def test_alff_of_a_planted_sinusoid_equals_the_formula() -> None:
    rng = np.random.default_rng(0)
    n, tr, amplitude, k = 256, 2.0, 3.0, 20  # bin 20 of 256 at TR 2 s: 0.039 Hz
    t = np.arange(n)
    signal = amplitude * np.cos(2 * np.pi * k * t / n + 0.3) + 100 + 0.01 * t
    data = np.stack([signal, rng.normal(size=n), signal + rng.normal(size=n)]).reshape(3, 1, 1, n)
    result = alff(data, tr)
    k_low, k_high = int(np.ceil(0.01 * n * tr)), int(np.floor(0.1 * n * tr))
    series = scipy.signal.detrend(data.reshape(3, n), axis=1)
    expected = (2 * np.abs(scipy.fft.rfft(series, axis=1)) / n)[:, k_low : k_high + 1].mean(1)
    np.testing.assert_allclose(result.ravel(), expected, rtol=1e-5)
    # the sinusoid's amplitude spread over the band's bins (detrending leaks < 1 %)
    assert result[0, 0, 0] == pytest.approx(amplitude / (k_high - k_low + 1), rel=0.01)
    out_of_band = np.cos(2 * np.pi * 100 * t / n).reshape(1, 1, 1, n)  # 0.195 Hz
    assert alff(out_of_band, tr)[0, 0, 0] < 0.01 * result[0, 0, 0]


def test_alff_masks_and_refuses_a_run_too_short_for_the_band() -> None:
    data = np.random.default_rng(1).normal(size=(2, 2, 1, 64))
    mask = np.array([[[True], [False]], [[False], [True]]])
    result = alff(data, 2.0, mask=mask)
    assert (result[~mask] == 0).all() and (result[mask] > 0).all()
    with pytest.raises(Exception, match="needs one full period"):
        alff(data[..., :20], 2.0)


def test_entry_point_is_listed_by_bidsfusion_plugins() -> None:
    env = {k: v for k, v in os.environ.items() if k != "BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD"}
    listing = subprocess.run(
        [sys.executable, "-m", "bidsfusion", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    block = listing.split("alff  [", 1)[1].splitlines()
    assert block[0].startswith("bidsfusion-alff 0.1.0")
    assert "modalities: alff" in block[1]


@pytest.mark.slow
def test_participant_level_writes_the_alff_map(alff_registered, tmp_path: Path) -> None:
    from bidsfusion.synth.dataset import make_dataset

    bids, out = tmp_path / "bids", tmp_path / "out"
    make_dataset(bids, n_subjects=1, seed=1, max_sessions=1, n_volumes=50, n_jobs=1)
    assert run(bids, out, "participant", "-w", tmp_path / "work", "--nprocs", "2") == 0
    (falff_map,) = out.glob(f"sub-*/**/func/*_{GRID}_stat-falff_boldmap.nii.gz")
    (alff_map,) = out.glob(f"sub-*/**/func/*_{GRID}_stat-alff_boldmap.nii.gz")
    sidecar = json.loads(alff_map.with_name(alff_map.name[: -len(".nii.gz")] + ".json").read_text())
    assert sidecar["Parameters"] == {"band": [0.01, 0.1]} and "Band" not in sidecar
    assert "amplitude of low-frequency" in sidecar["Description"]
    values = np.asarray(nib.load(alff_map).dataobj)
    brain = np.asarray(nib.load(falff_map).dataobj) > 0
    assert values.shape == (64, 64, 64) and np.isfinite(values).all()
    assert (values[brain] > 0).mean() > 0.9 and (values[~brain] == 0).all()
    assert list(out.glob("sub-*/figures/*_desc-registration_stat-alff_boldmap.png"))


def _write_derivatives(root: Path, n_subjects: int) -> tuple[Path, Path]:
    """A raw dataset (participants.tsv) and OUTPUT_DIR with planted 16^3 T1w, fALFF and
    ALFF maps (AD subjects: a darker block)."""
    bids, out = root / "bids", root / "out"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "a", "BIDSVersion": "1.8.0"}')
    write_dataset_description(out)
    rng = np.random.default_rng(0)
    rows = ["participant_id\tdiagnosis"]
    stems = {"desc-brain_T1w": "anat", "stat-falff_boldmap": "func", "stat-alff_boldmap": "func"}
    for i in range(1, n_subjects + 1):
        label, diagnosis = f"{i:02d}", "AD" if i % 2 else "HC"
        rows.append(f"sub-{label}\t{diagnosis}")
        (bids / f"sub-{label}").mkdir()
        for stem, folder in stems.items():
            data = rng.normal(size=(16, 16, 16)).astype(np.float32) + 2
            data[4:8, 4:8, 4:8] -= diagnosis == "AD"
            task = "_task-rest" if folder == "func" else ""
            path = out / f"sub-{label}" / folder / f"sub-{label}{task}_{GRID}_{stem}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, np.diag([12.0, 12.0, 12.0, 1.0])), path)
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    return bids, out


@pytest.mark.slow
def test_three_modalities_train_end_to_end(alff_registered, tmp_path: Path) -> None:
    bids, out = _write_derivatives(tmp_path, 8)
    args = [bids, out, "group", "-w", tmp_path / "work", "--skip-bids-validation",
            "--modality", "T1w", "falff", "alff", "--objective", "L-CL", "--input-size", "16",
            "--epochs", "1", "--batch-size", "4", "--latent-dim", "8", "--folds", "2",
            "--holdout", "2", "--n-trials", "2", "--analysis", "similarity",
            "--device", "cpu"]  # fmt: skip
    assert run(*args) == 0
    group = out / "group"
    z = np.load(group / "objective-L-CL" / "fold-0" / "representations.npz")
    assert {k for k in z.files if k.startswith("z_")} == {"z_T1w", "z_falff", "z_alff"}
    assert all(z[k].shape == (8, 8) and np.isfinite(z[k]).all() for k in z.files if k[:2] == "z_")
    with (group / "pairs.tsv").open(newline="") as handle:
        pairs = list(csv.DictReader(handle, delimiter="\t"))
    assert len(pairs) == 8 and all(Path(p["path_alff"]).is_file() for p in pairs)
    with (group / "evaluation.tsv").open(newline="") as handle:
        evaluated = {(r["modality"], r["fold"]) for r in csv.DictReader(handle, delimiter="\t")}
    assert evaluated == {(m, f) for m in ("T1w", "falff", "alff") for f in ("0", "1")}
    with (group / "similarity.tsv").open(newline="") as handle:
        compared = {r["modalities"] for r in csv.DictReader(handle, delimiter="\t")}
    assert compared == {"T1w-falff", "T1w-alff", "falff-alff"}
    import tomllib

    record = tomllib.loads((group / "config.toml").read_text())
    assert record["data"]["modality"] == ["T1w", "falff", "alff"]
    history = (group / "objective-L-CL" / "fold-0" / "history.tsv").read_text()
    assert "CL_chance" in history.splitlines()[0]

"""A trained model carried out of its run: ``bidsfusion.load_model`` (the same latents as the
group level), ``export-model`` (a model folder with its card, refusals) and ``--pretrained``
on a new cohort (its own landmarks, never refit; checks of the cohort)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from runner import run_main
from test_group import GROUP_ARGS, write_group_inputs

import bidsfusion
from bidsfusion.errors import InputDataError, InputMissingError, UsageError
from bidsfusion.layout import GroupLayout
from bidsfusion.models.folder import read_record
from bidsfusion.space import MNI_GRID_AFFINE

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

SPECS = ("S", "Random")
QUICK = (*GROUP_ARGS, "--epochs", "2", "--folds", "2", "--skip-bids-validation")
PROCESSING = {
    "Resolution": "3 mm isotropic, 64x64x64",
    "SpatialReference": "MNI152NLin2009aSym",
    "Template": "the bundled ICBM 2009a",
    "Backend": "SimpleITK",
}


def with_sidecars(out: Path, **changes: object) -> None:
    """A sidecar beside every derivative, with the processing keys a model records."""
    for image in out.rglob("*.nii.gz"):
        sidecar = image.with_name(image.name.removesuffix(".nii.gz") + ".json")
        sidecar.write_text(json.dumps({**PROCESSING, **changes}))


def group(bids: Path, out: Path, work: Path, *options: object):
    return run_main(bids, out, "group", "-w", work, *QUICK, *options)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained run (S, Random) on one planted cohort: (root, bids, out)."""
    root = tmp_path_factory.mktemp("pretrained")
    bids, out = write_group_inputs(root / "first")
    with_sidecars(out)
    objectives = [a for spec in SPECS for a in ("--objective", spec)]
    result = group(bids, out, root / "work", *objectives)
    assert result.code == 0, result.err
    return root, bids, out


def evaluated_paths(out: Path, modality: str) -> dict[str, str]:
    with (out / "group" / "pairs.tsv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if "evaluation" in r["role"]]
    return {r["subject"]: r[f"path_{modality}"] for r in rows}


def test_the_api_gives_the_group_levels_latents(trained) -> None:
    _, _, out = trained
    fold = GroupLayout.of(out).fold("S", 1)
    model = bidsfusion.load_model(fold.path)
    arrays = np.load(fold.representations)
    for modality in ("T1w", "falff"):
        paths = evaluated_paths(out, modality)
        z = model.encode({modality: [paths[s] for s in arrays["subject"]]})[modality]
        np.testing.assert_allclose(z, arrays[f"z_{modality}"], atol=1e-6, rtol=0)
    first = evaluated_paths(out, "T1w")[str(arrays["subject"][0])]
    image = nib.load(first)
    as_array = model.encode({"T1w": [np.asarray(image.dataobj)]})["T1w"]
    np.testing.assert_allclose(as_array[0], arrays["z_T1w"][0], atol=1e-6, rtol=0)
    maps = model.saliency({"T1w": [first]}, "T1w", dims=[0, 3])
    assert maps.shape == (1, 2, 64, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0


def test_the_api_refuses_bad_inputs_in_one_line(trained, tmp_path) -> None:
    _, _, out = trained
    model = bidsfusion.load_model(GroupLayout.of(out).fold("S", 0).path)
    nan = np.full((16, 16, 16), np.nan, dtype=np.float32)
    off_grid = nib.Nifti1Image(np.ones((64, 64, 64), np.float32), np.diag([2.0, 2, 2, 1]))
    cases = [
        ({"alff": [np.ones((16,) * 3)]}, UsageError, "the model encodes T1w, falff, not alff"),
        ({"T1w": [tmp_path / "none.nii.gz"]}, InputMissingError, "file not found"),
        ({"T1w": [nan]}, InputDataError, "NaN or infinite values"),
        ({"T1w": [np.ones((15, 15, 15))]}, InputDataError, "not a cube whose side"),
        ({"T1w": [np.ones((16, 16, 16))]}, InputDataError, "constant volume"),
        ({"T1w": [off_grid]}, InputDataError, "not on the 3 mm 64^3 MNI grid"),
        ({"T1w": []}, UsageError, "no T1w volume given"),
    ]
    for inputs, error, words in cases:
        with pytest.raises(error, match=re.escape(words)):
            model.encode(inputs)
    with pytest.raises(UsageError, match="give latent dimensions 0 to 7"):
        model.saliency({"T1w": [np.ones((16,) * 3)]}, "T1w", dims=[8])
    on_grid = nib.Nifti1Image(np.random.default_rng(0).random((64,) * 3, np.float32),
                              MNI_GRID_AFFINE)  # fmt: skip
    assert model.encode({"T1w": [on_grid]})["T1w"].shape == (1, 8)


def test_export_writes_a_model_folder_and_its_card(trained, run_cli) -> None:
    root, _, out = trained
    dest = root / "exported" / "S"
    result = run_cli("export-model", out, dest, "--objective", "S", "--fold", "1")
    assert result.code == 0, result.err
    assert sorted(p.name for p in dest.iterdir()) == [
        "README.md", "model.json", "model.safetensors", "objective.safetensors"
    ]  # fmt: skip
    source = GroupLayout.of(out).fold("S", 1)
    assert (dest / "model.json").read_bytes() == source.metadata.read_bytes()
    card = (dest / "README.md").read_text()
    assert "# bidsfusion model: S, fold 1" in card and "## Limits" in card
    assert 'bidsfusion.load_model("S")' in card
    assert re.search(r"\| T1w \| \d\.\d{3} \| \d\.\d{3} \|", card)  # S beside Random
    assert re.search(r"\| S \| \d+\.\d{3} \| \d+\.\d{3} \|", card)  # the term against chance
    assert "training and" in card and "hold-out subjects never seen" in card
    every = run_cli("export-model", out, root / "exported" / "all", "--objective", "S")
    assert every.code == 0, every.err
    assert sorted(p.name for p in (root / "exported" / "all").iterdir()) == ["fold-0", "fold-1"]
    again = run_cli("export-model", out, dest, "--objective", "S", "--fold", "1")
    assert again.code == 0, again.err  # an earlier export is replaced


def test_export_refuses_what_it_must_not_overwrite(trained, run_cli, tmp_path) -> None:
    _, _, out = trained
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cases = [
        ((out, foreign, "--objective", "S", "--fold", "0"), 73, "holds notes.txt, which is not"),
        ((out, tmp_path / "d", "--objective", "L"), 66, "holds no trained model folder"),
        ((out, tmp_path / "d", "--objective", "S", "--fold", "5"), 64, "S has trained folds 0 1"),
        ((tmp_path / "nothing", tmp_path / "d", "--objective", "S"), 66, "no trained model"),
    ]
    for args, code, words in cases:
        result = run_cli("export-model", *args)
        assert result.code == code and words in result.err, result.err
        assert len(result.err.splitlines()) == 1
    assert (foreign / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "d").exists()


def test_a_pretrained_model_on_a_new_cohort(trained, run_cli) -> None:
    root, _, out = trained
    model_dir = root / "models" / "S-planted"
    assert run_cli("export-model", out, model_dir, "--objective", "S", "--fold", "0").code == 0
    bids2, out2 = write_group_inputs(root / "second", seed=7)
    with_sidecars(out2, Backend="FSL")
    result = group(bids2, out2, root / "work2", "--pretrained", model_dir, "--objective", "S")
    assert result.code == 0, result.err
    assert "pretrained-S-planted was trained on T1w derivatives made otherwise (Backend" in (
        result.err
    )
    layout = GroupLayout.of(out2)
    assert set(layout.objectives()) == {"pretrained-S-planted", "Random", "S"}
    source = read_record(model_dir)
    for k, files in layout.folds("pretrained-S-planted").items():
        applied = read_record(files.path)
        assert applied.modalities == source.modalities  # the model's own landmarks: not refit
        assert (
            applied.data["applied"]["fold"] == k and applied.data["train"] == source.data["train"]
        )
        assert not files.last.exists() and not files.history.exists()  # never trained here
        own = read_record(layout.fold("S", k).path)  # trained on this cohort: its own landmarks
        assert own.modalities[0].landmarks != source.modalities[0].landmarks
    rows = {(r["objective"], r["modality"], r["fold"]) for r in csv.DictReader(
        layout.evaluation.open(newline=""), delimiter="\t")}  # fmt: skip
    assert ("pretrained-S-planted", "T1w", "0") in rows and ("Random", "falff", "1") in rows
    report = layout.report.read_text()
    assert "pretrained model pretrained-S-planted" in report and "S trained on" in report


def test_a_pretrained_model_is_checked_before_any_work(trained, run_cli, tmp_path) -> None:
    root, _, out = trained
    model_dir = root / "models" / "S-checked"
    assert run_cli("export-model", out, model_dir, "--objective", "S", "--fold", "0").code == 0
    bids, target = write_group_inputs(tmp_path / "cohort", seed=3)
    cases = [
        (("--pretrained", model_dir, "--input-size", "32"), 64, "--input-size 32 contradicts"),
        (("--pretrained", tmp_path / "nothing"), 66, "does not exist or is not a folder"),
        (("--pretrained", model_dir, "--pretrained", model_dir), 64, "is given twice"),
        (("--objective", "S", "--finetune", "3"), 64, "fine-tunes --pretrained models"),
    ]
    for options, code, words in cases:
        result = group(bids, target, tmp_path / "work", *options)
        assert result.code == code and words in result.err, result.err
        assert not (target / "group").exists()
    with_sidecars(target, SpatialReference="MNI152NLin6Asym")
    other_space = group(bids, target, tmp_path / "work", "--pretrained", model_dir)
    assert other_space.code == 65 and "in another space (SpatialReference" in other_space.err


def test_a_pretrained_model_is_fine_tuned_with_its_own_landmarks(trained, run_cli) -> None:
    root, _, out = trained
    model_dir = root / "models" / "S-tuned"
    assert run_cli("export-model", out, model_dir, "--objective", "S", "--fold", "0").code == 0
    bids2, out2 = write_group_inputs(root / "third", seed=11)  # no sidecars: not checked
    result = group(bids2, out2, root / "work3", "--pretrained", model_dir, "--finetune", "3",
                   "--analysis", "none")  # fmt: skip
    assert result.code == 0, result.err
    assert "sidecars do not say Backend, Resolution, SpatialReference, Template" in result.err
    files = GroupLayout.of(out2).fold("pretrained-S-tuned", 0)
    assert len(files.history.read_text().splitlines()) == 1 + 3
    tuned = read_record(files.path)
    assert tuned.modalities == read_record(model_dir).modalities
    assert tuned.data["applied"]["training"]["epochs"] == 3


def test_the_api_guide_runs_as_written(trained) -> None:
    _, _, out = trained
    guide = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", guide, re.MULTILINE | re.DOTALL)
    assert blocks
    t1w, falff = evaluated_paths(out, "T1w"), evaluated_paths(out, "falff")
    namespace = {
        "model_dir": GroupLayout.of(out).fold("S", 0).path,
        "t1w": list(t1w.values())[:3],
        "falff": list(falff.values())[:3],
    }
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert namespace["latents"]["falff"].shape == (3, 8)

"""The group level end to end through the real CLI, on planted 16^3 derivatives.

Running the participant level for enough subjects takes minutes, so these tests
write grid derivatives directly (named as the participant level names them) with
a planted AD effect, and a raw dataset whose sessions.tsv makes pairing by days
matter.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from group_outputs import check_evaluation, check_group_outputs, read_pairs
from runner import run_main
from scipy import ndimage

from bidsfusion.bids import GRID_RES, TEMPLATE_SPACE
from bidsfusion.locations import write_dataset_description

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

SIDE = 16
GROUPS = ["AD"] * 6 + ["HC"] * 10 + ["other"] * 3
SPECS = ("L-CL", "S-AE", "Random")
FOLDS = 3
GROUP_ARGS = (
    "--n-trials",
    "8",
    "--input-size",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--latent-dim",
    "8",
    "--folds",
    str(FOLDS),
    "--holdout",
    "3",
    "--device",
    "cpu",
)


def _volume(rng: np.random.Generator, diagnosis: str) -> np.ndarray:
    data = ndimage.gaussian_filter(rng.normal(size=(SIDE,) * 3), 1.5) + 1.0
    if diagnosis == "AD":
        data[4:8, 4:8, 4:8] -= 0.5
    return data.astype(np.float32)


def _save(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([12.0, 12.0, 12.0, 1.0])), path)
    return path


def _write_subject(bids: Path, out: Path, label: str, diagnosis: str, rng) -> None:
    """Two sessions (days 0 and 400); T1w in both, BOLD only in the second for odd labels."""
    raw = bids / f"sub-{label}"
    raw.mkdir(parents=True)
    (raw / f"sub-{label}_sessions.tsv").write_text(
        "session_id\tdays_since_entry\nses-1\t0\nses-2\t400\n"
    )
    grid = f"space-{TEMPLATE_SPACE}_res-{GRID_RES}"
    bold_sessions = ["2"] if int(label) % 2 else ["1", "2"]
    for session in ("1", "2"):
        anat = out / f"sub-{label}" / f"ses-{session}" / "anat"
        _save(
            anat / f"sub-{label}_ses-{session}_{grid}_desc-brain_T1w.nii.gz",
            _volume(rng, diagnosis),
        )
    for session in bold_sessions:
        func = out / f"sub-{label}" / f"ses-{session}" / "func"
        name = f"sub-{label}_ses-{session}_task-rest_{grid}_stat-falff_boldmap.nii.gz"
        _save(func / name, _volume(rng, diagnosis))


def write_group_inputs(root: Path, groups: list[str] = GROUPS, seed: int = 0) -> tuple[Path, Path]:
    """A raw BIDS dataset (participants, sessions) and OUTPUT_DIR with grid derivatives."""
    bids, out = root / "bids", root / "out"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "g", "BIDSVersion": "1.8.0"}')
    write_dataset_description(out)
    rng = np.random.default_rng(seed)
    rows = ["participant_id\tdiagnosis"]
    for i, diagnosis in enumerate(groups, start=1):
        label = f"{i:02d}"
        rows.append(f"sub-{label}\t{diagnosis}")
        _write_subject(bids, out, label, diagnosis, rng)
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    return bids, out


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    """One group run with two objective specs; returns (bids, out, CliResult)."""
    root = tmp_path_factory.mktemp("group")
    bids, out = write_group_inputs(root)
    args = [bids, out, "group", "-w", root / "work", "--skip-bids-validation"]
    args += [a for spec in SPECS for a in ("--objective", spec)]
    return bids, out, run_main(*args, *GROUP_ARGS)


def test_group_run_succeeds(group_run) -> None:
    _, _, result = group_run
    assert result.code == 0, result.err


def test_pairs_take_the_closest_scan_and_one_evaluation_pair(group_run) -> None:
    _, out, _ = group_run
    rows = read_pairs(out)
    subjects = {f"{i:02d}" for i in range(1, len(GROUPS) + 1)}
    assert {r["subject"] for r in rows} == subjects
    evaluation = [r for r in rows if "evaluation" in r["role"]]
    assert sorted(r["subject"] for r in evaluation) == sorted(subjects)
    assert all(float(r["days_apart"]) == 0 for r in evaluation)
    for row in rows:
        assert f"ses-{row['session_T1w']}" in row["path_T1w"]
        assert f"ses-{row['session_falff']}" in row["path_falff"]
    # odd subjects have BOLD in ses-2 only: both T1w scans pair with it (0 and 400 days)
    odd = [r for r in rows if int(r["subject"]) % 2]
    assert sorted((r["session_T1w"], r["session_falff"], r["days_apart"]) for r in odd[:2]) == [
        ("1", "2", "400.0"),
        ("2", "2", "0.0"),
    ]
    even = [r for r in rows if not int(r["subject"]) % 2]
    assert all(r["session_T1w"] == r["session_falff"] for r in even)
    assert len(rows) == 2 * len(GROUPS)


def test_outputs_are_consistent(group_run) -> None:
    _, out, _ = group_run
    check_group_outputs(out, SPECS, epochs=2, latent_dim=8)
    splits = json.loads((out / "group" / "splits.json").read_text())
    assert len(splits["holdout"]) == 3 and len(splits["folds"]) == FOLDS
    z = np.load(out / "group" / f"objective-{SPECS[0]}" / "fold-0" / "representations.npz")
    diagnosis = dict(enumerate(GROUPS, start=1))
    assert all(
        group == diagnosis[int(s)] for s, group in zip(z["subject"], z["group"], strict=True)
    )


def test_config_record_lists_expanded_objectives(group_run) -> None:
    import tomllib

    _, out, _ = group_run
    saved = tomllib.loads((out / "group" / "config.toml").read_text())
    assert saved["record"]["expanded_objectives"] == list(SPECS)
    assert saved["record"]["versions"]["bidsfusion"]
    assert saved["record"]["analysis_level"] == "group"
    assert saved["train"]["epochs"] == 2 and saved["model"]["input_size"] == 16
    assert saved["objectives"]["objective"] == list(SPECS) and "participant" not in saved


def test_no_derivatives_is_66(run_cli, tmp_path) -> None:
    from tiny_bids import write_tiny_bids

    bids = write_tiny_bids(tmp_path / "bids")
    result = run_cli(bids, tmp_path / "out", "group", "--objective", "L")
    assert result.code == 66
    assert "run 'bidsfusion BIDS_DIR OUTPUT_DIR participant' first" in result.err
    # a participant run that wrote its dataset_description.json and stopped
    from bidsfusion.locations import write_dataset_description

    write_dataset_description(tmp_path / "out", None, None)
    result = run_cli(bids, tmp_path / "out", "group", "--objective", "L")
    assert result.code == 66 and result.err.count("\n") == 1
    assert "holds no derivatives of T1w, falff" in result.err


def test_unknown_term_is_64_listing_registered(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path, GROUPS[:2])
    result = run_cli(bids, out, "group", "--objective", "L-XYZ")
    assert result.code == 64
    assert "XYZ" in result.err and "CL" in result.err and "AE" in result.err


@pytest.mark.parametrize(
    ("modalities", "words"),
    [
        (["T1w", "bogus"], "unknown --modality bogus; registered: T1w, falff"),
        (["T1w"], "--modality T1w: the group level fuses at least two modalities"),
        (["falff", "falff"], "--modality falff: the group level fuses at least two"),
    ],
)
def test_unknown_or_fewer_than_two_modalities_are_64(run_cli, tmp_path, modalities, words):
    bids, out = write_group_inputs(tmp_path, GROUPS[:2])
    result = run_cli(bids, out, "group", "--objective", "L", "--modality", *modalities)
    assert result.code == 64 and words in result.err, result.err
    assert not (out / "group").exists()


def test_too_few_labelled_subjects_is_65_with_counts(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path, ["AD"] * 2 + ["HC"] * 6)
    result = run_cli(bids, out, "group", "--objective", "L", "--holdout", "1", *GROUP_ARGS[:-4])
    assert result.code == 65
    assert "need at least 3 subjects per group for 3 folds; have AD=2, HC=5" in result.err


def test_a_class_value_off_by_case_or_spaces_is_named_with_the_counts(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path, ["AD"] * 2 + ["ad", "HC "] + ["HC"] * 6)
    result = run_cli(bids, out, "group", "--objective", "L", "--holdout", "1", *GROUP_ARGS[:-4])
    assert result.code == 65  # only 2 AD: the near misses are not counted
    assert "diagnosis 'ad' (sub-03) is not --positive 'AD' (case or spaces differ)" in result.err
    assert "diagnosis 'HC ' (sub-04) is not --negative 'HC'" in result.err
    assert "diagnosis of the selected subjects: 'AD' 2, 'HC' 6, 'HC ' 1, 'ad' 1" in result.err


def test_a_subject_without_a_participants_row_is_named(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path, ["AD"] * 2 + ["HC"] * 6)
    table = bids / "participants.tsv"
    table.write_text("".join(line for line in table.read_text().splitlines(True)
                             if not line.startswith("sub-03")))  # fmt: skip
    result = run_cli(bids, out, "group", "--objective", "L", "--holdout", "1", *GROUP_ARGS[:-4])
    assert result.code == 65  # too few AD: stops before any training
    assert f"{table} has no row for sub-03: counted as other (pretraining only)" in result.err


@pytest.mark.parametrize("option", ["--positive", "--negative"])
def test_a_class_no_subject_has_is_64_listing_the_values(run_cli, tmp_path, option) -> None:
    bids, out = write_group_inputs(tmp_path, ["AD"] * 4 + ["HC"] * 4 + ["other"])
    result = run_cli(bids, out, "group", "--objective", "L", option, "MCI", *GROUP_ARGS)
    assert result.code == 64
    assert f"{option} MCI: no selected subject has diagnosis 'MCI'" in result.err
    assert "its values: AD, HC, other" in result.err


def test_a_label_column_of_many_values_lists_ten_of_them(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path, ["AD"] * 6 + ["HC"] * 6)
    result = run_cli(bids, out, "group", "--objective", "L", "--label-column", "participant_id",
                     *GROUP_ARGS)  # fmt: skip
    assert result.code == 64
    assert "its values: sub-01, sub-02," in result.err
    assert "sub-10 ... (12 in all)" in result.err and "sub-11" not in result.err


def test_corrupt_derivative_is_excluded_and_the_run_goes_on(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path)
    bad = next(out.glob("sub-02/ses-1/func/*_boldmap.nii.gz"))
    bad.write_bytes(b"not a nifti")
    result = run_cli(
        bids, out, "group", "--objective", "L", "-w", tmp_path / "work", *GROUP_ARGS, "--folds", "2"
    )
    assert result.code == 0, result.err
    assert str(bad) in result.err
    rows = read_pairs(out)
    assert str(bad) not in {r["path_falff"] for r in rows}
    sub02 = [r for r in rows if r["subject"] == "02"]
    assert [(r["session_T1w"], r["session_falff"]) for r in sub02] == [("1", "2"), ("2", "2")]


def test_holdout_zero_keeps_every_subject_in_the_folds(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path)
    result = run_cli(
        bids,
        out,
        "group",
        "--objective",
        "S",
        "-w",
        tmp_path / "work",
        *GROUP_ARGS,
        "--holdout",
        "0",
        "--epochs",
        "1",
    )
    assert result.code == 0, result.err
    splits = json.loads((out / "group" / "splits.json").read_text())
    assert splits["holdout"] == []
    assert sum(len(f["validation"]) for f in splits["folds"]) == len(GROUPS)


def test_a_rerun_resumes_only_folds_whose_data_are_unchanged(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path)
    args = [bids, out, "group", "--objective", "S", "-w", tmp_path / "work", *GROUP_ARGS]
    args += ["--epochs", "1"]
    assert run_cli(*args).code == 0
    again = run_cli(*args)
    assert again.code == 0 and again.err.count("not retraining") == FOLDS
    changed = next(out.glob("sub-05/ses-1/anat/*_T1w.nii.gz"))
    image = nib.load(changed)
    nib.save(nib.Nifti1Image(image.get_fdata() * 2, image.affine), changed)
    third = run_cli(*args)
    assert third.code == 0
    # the subject trains in every fold but the one that validates it: all folds retrain
    assert third.err.count("training from scratch") == FOLDS
    # other modalities (here the same in another order: another anchor, other encoders)
    fourth = run_cli(*args, "--modality", "falff", "T1w")
    assert fourth.code == 0 and fourth.err.count("training from scratch") == FOLDS
    assert np.load(out / "group/objective-S/fold-0/representations.npz")["z_falff"].shape[1] == 8


def test_a_training_that_stops_midway_leaves_no_stale_representations(
    run_cli, tmp_path, monkeypatch
) -> None:
    from bidsfusion.errors import OutputError
    from bidsfusion.train import pretrain

    bids, out = write_group_inputs(tmp_path)
    args = [bids, out, "group", "--objective", "S", "-w", tmp_path / "work", *GROUP_ARGS]
    assert run_cli(*args, "--epochs", "1").code == 0
    stale = out / "group/objective-S/fold-0/representations.npz"
    assert stale.is_file()

    def disk_full(*_args, **_kwargs):
        raise OutputError("no space left on device")

    monkeypatch.setattr(pretrain, "train_fold", disk_full)  # retraining for 2 epochs fails
    assert run_cli(*args, "--epochs", "2").code == 73
    assert not stale.exists()
    evaluated = run_cli(*args, "--epochs", "2", "--eval-only")
    assert evaluated.code == 66, evaluated.err
    assert f"{stale.parent} holds no representations.npz" in evaluated.err


def test_other_splits_beside_folds_trained_on_the_earlier_ones_are_64(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path)
    args = [bids, out, "group", "-w", tmp_path / "work", *GROUP_ARGS, "--epochs", "1"]
    assert run_cli(*args, "--objective", "S", "--objective", "Random").code == 0
    names = ("splits.json", "evaluation.tsv", "pairs.tsv")
    tables = {name: (out / "group" / name).read_text() for name in names}
    participants = bids / "participants.tsv"
    participants.write_text(participants.read_text().replace("sub-19\tother", "sub-19\tHC"))
    (out / "group" / "objective-CL" / "fold-0").mkdir(parents=True)  # killed before training
    changed = run_cli(*args, "--objective", "S", "--holdout", "4")
    assert changed.code == 64, changed.err
    assert "CL fold-0" not in changed.err
    assert "holds other splits than this run's" in changed.err
    assert "Random fold-0, Random fold-1, Random fold-2 were trained on them" in changed.err
    assert {name: (out / "group" / name).read_text() for name in tables} == tables
    assert "training" not in changed.err
    both = run_cli(*args, "--objective", "S", "--objective", "Random", "--holdout", "4")
    assert both.code == 0, both.err
    assert len(json.loads((out / "group" / "splits.json").read_text())["holdout"]) == 4


def _quick(bids: Path, out: Path, work: Path, *extra: object) -> list[object]:
    return [bids, out, "group", "--objective", "S", "-w", work, *GROUP_ARGS, "--epochs", "1",
            "--folds", "2", *extra]  # fmt: skip


def test_scans_flagged_by_qc_are_left_out_unless_included(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path)
    flagged = next(out.glob("sub-02/ses-1/func/*_boldmap.nii.gz"))
    qc = {"RegistrationSimilarity": 0.2, "SimilarityThreshold": 0.45, "Flagged": True}
    flagged.with_name(flagged.name.split(".")[0] + ".json").write_text(json.dumps({"QC": qc}))
    result = run_cli(*_quick(bids, out, tmp_path / "work"))
    assert result.code == 0, result.err
    assert f"excluded {flagged}: registration flagged by QC (similarity 0.2 < 0.45)" in result.err
    assert str(flagged) not in {r["path_falff"] for r in read_pairs(out)}
    included = run_cli(*_quick(bids, out, tmp_path / "work", "--include-flagged"))
    assert included.code == 0, included.err
    assert str(flagged) in {r["path_falff"] for r in read_pairs(out)}


def test_session_and_participant_labels_select_derivatives(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path)
    result = run_cli(*_quick(bids, out, tmp_path / "work", "--session-label", "2"))
    assert result.code == 0, result.err
    rows = read_pairs(out)
    assert {(r["session_T1w"], r["session_falff"]) for r in rows} == {("2", "2")}
    missing = run_cli(*_quick(bids, out, tmp_path / "work", "--session-label", "9"))
    assert missing.code == 18
    assert "session label(s) 9 not found" in missing.err and "they have: 1, 2" in missing.err
    nobody = run_cli(*_quick(bids, out, tmp_path / "work", "--participant-label", "77"))
    assert nobody.code == 18 and "participant label(s) 77 not found" in nobody.err


def test_omp_nthreads_sets_torch_threads(run_cli, tmp_path) -> None:
    import torch

    bids, out = write_group_inputs(tmp_path)
    before = torch.get_num_threads()
    try:
        result = run_cli(*_quick(bids, out, tmp_path / "work", "--omp-nthreads", "1"))
        assert result.code == 0, result.err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_evaluation_rows_are_reproduced_by_a_refit_and_summarised(group_run) -> None:
    _, out, result = group_run
    rows = check_evaluation(out, SPECS, FOLDS)
    assert all(int(r["n_trials"]) == 8 for r in rows)
    assert result.out.splitlines()[0].split() == ["objective", "T1w", "falff"]
    summary = (out / "group" / "evaluation_summary.tsv").read_text().splitlines()
    assert len(summary) == 1 + len(SPECS) * 2
    random_rows = [line for line in summary if line.startswith("Random\t")]
    assert all(line.endswith("\tn/a") for line in random_rows)
    assert summary[0].endswith("\tbeats_random\tp_vs_random")
    # this hold-out has one subject of a class: DeLong's variance needs two, so no p-value
    assert all(line.endswith("\tn/a") for line in summary[1:]) and "(p " not in result.out


def test_rows_whose_representations_are_unreadable_get_no_p_value(tmp_path, caplog) -> None:
    from bidsfusion.evaluate import EvaluationRow
    from bidsfusion.evaluate.run import scores_against_control
    from bidsfusion.layout import GroupLayout

    for spec in ("S", "Random"):
        fold = tmp_path / f"objective-{spec}" / "fold-0"
        fold.mkdir(parents=True)
        (fold / "representations.npz").write_text("truncated")
    row = dict(fold=0, n_train=4, n_validation=2, n_holdout=2, C=1.0, penalty="l2",
               l1_ratio=0.0, validation_auc=0.5, holdout_auc=0.5, holdout_bacc=0.5,
               n_trials=1, seed=0, max_iter=10, study="s")  # fmt: skip
    rows = [
        EvaluationRow(objective=spec, modality=m, **row)
        for spec in ("S", "Random")
        for m in ("T1w", "falff")
    ]
    assert scores_against_control(rows, GroupLayout(tmp_path)) == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings  # one per unreadable file, not per row
    assert all("representations.npz" in w and "leave this fold out" in w for w in warnings)


def test_rows_without_a_random_row_are_not_refit(tmp_path, monkeypatch) -> None:
    import bidsfusion.evaluate.run
    from bidsfusion.evaluate import EvaluationRow
    from bidsfusion.evaluate.run import scores_against_control
    from bidsfusion.layout import GroupLayout

    refit = []

    def holdout_scores(path, row):
        refit.append(row)
        return {"01": 1.0}

    monkeypatch.setattr(bidsfusion.evaluate.run, "holdout_scores", holdout_scores)
    row = dict(n_train=4, n_validation=2, n_holdout=2, C=1.0, penalty="l2",
               l1_ratio=0.0, validation_auc=0.5, holdout_auc=0.5, holdout_bacc=0.5,
               n_trials=1, seed=0, max_iter=10, study="s")  # fmt: skip
    rows = [
        EvaluationRow(objective="S", modality="T1w", fold=0, **row),
        EvaluationRow(objective="S", modality="falff", fold=0, **row),
        EvaluationRow(objective="Random", modality="T1w", fold=0, **row),
        EvaluationRow(objective="S", modality="T1w", fold=1, **row),
    ]
    scores = scores_against_control(rows, GroupLayout(tmp_path))
    assert set(scores) == {("S", "T1w", 0), ("Random", "T1w", 0)}
    assert len(refit) == 2


def test_a_row_its_representations_no_longer_give_is_named(tmp_path, caplog, monkeypatch):
    import bidsfusion.evaluate.run
    from bidsfusion.evaluate import EvaluationRow
    from bidsfusion.evaluate.run import scores_against_control
    from bidsfusion.layout import GroupLayout

    monkeypatch.setattr(bidsfusion.evaluate.run, "holdout_scores", lambda path, row: {})
    row = dict(fold=1, n_train=4, n_validation=2, n_holdout=2, C=1.0, penalty="l2",
               l1_ratio=0.0, validation_auc=0.5, holdout_auc=0.5, holdout_bacc=0.5,
               n_trials=1, seed=0, max_iter=10, study="s")  # fmt: skip
    rows = [EvaluationRow(objective=spec, modality="T1w", **row) for spec in ("S", "Random")]
    scores = scores_against_control(rows, GroupLayout(tmp_path))
    assert scores == {("S", "T1w", 1): {}, ("Random", "T1w", 1): {}}
    message = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "objective-S/fold-1/representations.npz" in message and "--eval-only" in message


@pytest.mark.parametrize(
    ("holdout", "warned"), [(3, False), (0.3, False), (4, True), (0.5, True), (0.2, True)]
)
def test_eval_only_names_another_holdout_count_or_fraction(holdout, warned) -> None:
    from bidsfusion.config import Data
    from bidsfusion.data.splits import make_splits
    from bidsfusion.evaluate.trained import unused_split_options

    subjects = [f"{i:02d}" for i in range(10)]
    splits = make_splits(subjects, ["AD", "HC"] * 5, n_folds=2, holdout=3)
    differing = unused_split_options(Data(folds=2, holdout=holdout), splits)
    assert differing == ([f"--holdout {holdout}"] if warned else [])
    assert unused_split_options(Data(folds=3, holdout=3), splits) == ["--folds 3"]


def test_eval_only_reuses_finished_studies_and_needs_representations(group_run, run_cli, tmp_path):
    bids, out, _ = group_run
    work = out.parent / "work"
    before = (out / "group" / "evaluation.tsv").read_text()
    again = run_cli(bids, out, "group", "--eval-only", "-w", work, *GROUP_ARGS,
                    *[a for spec in SPECS for a in ("--objective", spec)])  # fmt: skip
    assert again.code == 0, again.err
    assert not re.search(r"epoch \d+/\d+", again.err)  # nothing trained
    assert (out / "group" / "evaluation.tsv").read_text() == before
    assert "trained splits" not in again.err
    other_splits = run_cli(bids, out, "group", "--eval-only", "-w", work, *GROUP_ARGS,
                           "--folds", str(FOLDS + 1), "--holdout", "4",
                           *[a for spec in SPECS for a in ("--objective", spec)])  # fmt: skip
    assert other_splits.code == 0, other_splits.err
    assert (
        f"evaluates the trained splits of splits.json ({FOLDS} folds, 3 hold-out subjects), "
        f"not --folds {FOLDS + 1} and --holdout 4: retrain without --eval-only"
    ) in other_splits.err
    assert (out / "group" / "evaluation.tsv").read_text() == before
    missing = run_cli(bids, out, "group", "--eval-only", "--objective", "CS", "-w", work)
    assert missing.code == 66
    assert "objective-CS" in missing.err and "without --eval-only" in missing.err


def test_eval_only_names_derivatives_changed_since_training(group_run, run_cli, tmp_path):
    bids, trained, _ = group_run
    out = tmp_path / "out"
    shutil.copytree(trained, out)  # keeps the modification times
    pairs = out / "group" / "pairs.tsv"
    pairs.write_text(pairs.read_text().replace(str(trained), str(out)))
    args = (bids, out, "group", "--eval-only", "-w", tmp_path / "work", *GROUP_ARGS)
    unchanged = run_cli(*args, "--objective", "Random")
    assert unchanged.code == 0, unchanged.err
    assert "changed after" not in unchanged.err
    derivative = next(out.glob("sub-02/ses-1/func/*_boldmap.nii.gz"))
    later = time.time_ns() + 10**9
    os.utime(derivative, ns=(later, later))
    changed = run_cli(*args, "--objective", "Random")
    assert changed.code == 0, changed.err
    assert "1 derivative(s) changed after objective-Random/fold-" in changed.err
    assert f"was trained (e.g. {derivative}): --eval-only evaluates" in changed.err


def test_eval_only_with_damaged_tables_says_how_to_recover(group_run, run_cli, tmp_path):
    bids, trained, _ = group_run
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    splits, table = out / "group" / "splits.json", out / "group" / "evaluation.tsv"
    intact = splits.read_text()
    splits.write_text(intact[:40])
    args = (bids, out, "group", "--eval-only", "-w", tmp_path / "work", *GROUP_ARGS)
    damaged = run_cli(*args, "--objective", "Random")
    assert damaged.code == 65
    assert str(splits) in damaged.err and "without --eval-only" in damaged.err
    assert len(damaged.err.strip().splitlines()) == 1
    splits.write_text(intact)
    lines = table.read_text().splitlines()
    table.write_text("\n".join([*lines[:-1], lines[-1][:20]]) + "\n")
    rewritten = run_cli(*args, "--objective", "Random")
    assert rewritten.code == 0, rewritten.err
    assert "rows only" in rewritten.err and "every objective" in rewritten.err
    assert {r["objective"] for r in _rows(table)} == {"Random"}
    restored = run_cli(*args, *[a for spec in SPECS for a in ("--objective", spec)])
    assert restored.code == 0, restored.err
    assert {r["objective"] for r in _rows(table)} == set(SPECS)
    npz = out / "group" / "objective-Random" / "fold-0" / "representations.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    truncated = run_cli(*args, "--objective", "Random")
    assert truncated.code == 65
    assert f"{npz} is not a readable .npz" in truncated.err
    assert "without --eval-only" in truncated.err


def _rows(table: Path) -> list[dict[str, str]]:
    with table.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("XYZ.k=1", "term 'XYZ' is not in the requested objectives; their terms: AE, CCA"),
        ("CCA.k=1", "CCA has no option 'k'; its options: ridge=0.001"),
        ("CCA.ridge=big", "'big' is not a finite number"),
        ("CCA.ridge=inf", "'inf' is not a finite number"),
        ("CCA.ridge=0", "objective option CCA.ridge must be > 1e-09, got 0.0"),
        ("CCA", "expected TERM.KEY=VALUE"),
    ],
)
def test_bad_objective_options_are_64(run_cli, tmp_path, option, words) -> None:
    bids, out = write_group_inputs(tmp_path, GROUPS[:2])
    result = run_cli(bids, out, "group", "--objective", "DCCAE", "--objective-option", option,
                     "-w", tmp_path / "work")  # fmt: skip
    assert result.code == 64, result.err
    assert words in result.err.strip().splitlines()[-1]


def test_local_terms_told_apart_on_located_heads_are_64(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path, GROUPS[:2])
    result = run_cli(bids, out, "group", "--objective", "L-CL", "--objective-option",
                     "CL.located=false", "-w", tmp_path / "work")  # fmt: skip
    assert result.code == 64, result.err
    assert "CL.located=false but L.located=true" in result.err.strip().splitlines()[-1]
    assert not (out / "group" / "objective-L-CL").exists()


def test_objective_options_from_toml_are_used_recorded_and_retrain(run_cli, tmp_path) -> None:
    import tomllib

    bids, out = write_group_inputs(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text('objective = ["S"]\n[objective-option.S]\npenalty_weight = 0.1\n')
    args = [bids, out, "group", "--config", config, "-w", tmp_path / "work", *GROUP_ARGS]
    args += ["--epochs", "1", "--folds", "2"]
    assert run_cli(*args).code == 0
    saved = tomllib.loads((out / "group" / "config.toml").read_text())
    assert saved["record"]["objective_options"] == {"S": {"penalty_weight": 0.1}}
    assert saved["objectives"]["objective_option"] == ["S.penalty_weight=0.1"]
    again = run_cli(*args, "--objective-option", "S.penalty_weight=0.2")
    assert again.code == 0 and again.err.count("other settings or data") == 2


def test_an_unreachable_optuna_storage_is_73_with_the_password_masked(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path, GROUPS[:2])
    url = "postgresql://me:secret@127.0.0.1:1/db"
    result = run_cli(bids, out, "group", "--objective", "S", "--optuna-storage", url,
                     "-w", tmp_path / "work")  # fmt: skip
    assert result.code == 73, result.err
    assert "me:***@127.0.0.1" in result.err and "secret" not in result.err
    assert not (out / "group").exists()


def test_paper_expands_to_the_whole_grid_with_the_control() -> None:
    from bidsfusion.objectives.specs import objective_specs
    from bidsfusion.plugins import registered

    specs = objective_specs(["paper"], [], registered("objectives"))
    names = [spec.name for spec in specs]
    assert len(names) == 15 + 6 + 1 and names[-1] == "Random"
    assert {"L-CL-CS-S", "AE", "S-AE", "DCCAE", "L-CCA", "MMVAE", "Supervised"} <= set(names)
    assert [spec.name for spec in specs if not spec.trains] == ["Random"]


def test_other_labels_retrain(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path)
    args = _quick(bids, out, tmp_path / "work", "--holdout", "0")
    assert run_cli(*args).code == 0
    assert run_cli(*args).err.count("not retraining") == 2
    again = run_cli(*args, "--positive", "other")
    assert again.code == 0, again.err
    assert again.err.count("other settings or data") == 2


def test_training_summary_has_a_row_per_trained_objective_and_fold(group_run) -> None:
    _, out, result = group_run
    lines = (out / "group" / "training_summary.tsv").read_text().splitlines()
    columns = lines[0].split("\t")
    assert columns[:5] == ["objective", "fold", "epochs", "best_epoch", "best_validation_loss"]
    rows = [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[1:]]
    assert sorted((r["objective"], r["fold"]) for r in rows) == sorted(
        (spec, str(k)) for spec in SPECS if spec != "Random" for k in range(FOLDS)
    )
    assert all(0 <= float(r["probe_shared"]) <= 1 for r in rows)
    assert "retrieval T1w_falff" in result.err  # each epoch's line shows it beside chance


def _folds_of(table: Path) -> list[str]:
    with table.open() as handle:
        return sorted({row["fold"] for row in csv.DictReader(handle, delimiter="\t")})


def test_fold_jobs_then_one_eval_only_run_gather_every_fold(run_cli, tmp_path) -> None:
    bids, out = write_group_inputs(tmp_path)
    group_dir = out / "group"

    def group(*extra: object):
        return run_cli(bids, out, "group", "--objective", "S", "-w", tmp_path / "work",
                       *GROUP_ARGS, "--epochs", "1", "--n-trials", "2", *extra)  # fmt: skip

    first = group("--fold", "1", "--analysis", "similarity")
    assert first.code == 0, first.err
    assert [p.name for p in (group_dir / "objective-S").iterdir()] == ["fold-1"]
    assert _folds_of(group_dir / "evaluation.tsv") == ["1"]
    assert "analyses skipped" in first.err and not (group_dir / "similarity.tsv").exists()
    missing = group("--eval-only")
    assert missing.code == 66 and "fold-0" in missing.err
    second = group("--fold", "2", "0", "--analysis", "none")
    assert second.code == 0, second.err
    assert _folds_of(group_dir / "evaluation.tsv") == ["0", "1", "2"]
    assert _folds_of(group_dir / "training_summary.tsv") == ["0", "1", "2"]
    final = group("--eval-only", "--analysis", "similarity")
    assert final.code == 0 and not re.search(r"epoch \d+/\d+", final.err)
    assert _folds_of(group_dir / "similarity.tsv") == ["0", "1", "2"]
    unknown = group("--fold", "3", "--analysis", "none")
    assert unknown.code == 64 and "--fold 3: the splits have folds 0 to 2" in unknown.err


def test_every_group_file_is_documented_in_outputs_md(group_run) -> None:
    from bidsfusion.layout import GroupLayout

    _, out, _ = group_run
    documented = (Path(__file__).parent.parent / "docs" / "outputs.md").read_text()
    layout = GroupLayout.of(out)
    placeholders = {"desc": "<modality>", "group": "<G>", "dim": "<k>"}

    def general(name: str) -> str:
        for entity, placeholder in placeholders.items():
            name = re.sub(rf"{entity}-[^_]+", f"{entity}-{placeholder}", name)
        return name

    expected = [f"group/{p.name}" for p in layout.root.iterdir() if p.is_file()]
    expected += [
        f"group/objective-<SPEC>/fold-<k>/{p.name}"
        for run in layout.runs()
        for p in run.files.path.iterdir()
    ]
    for analysis in ("saliency", "group-differences"):
        for folder in layout.analysed_objectives(analysis).values():
            expected += [
                f"group/{analysis}/objective-<SPEC>/{general(p.name)}"
                for p in folder.iterdir()
                if not p.name.endswith(".json") or "crossmodal" in p.name
            ]
    missing = sorted({e for e in set(expected) if f"`{e}`" not in documented})
    assert len(expected) > 20 and not missing, missing


def test_eval_only_reads_the_model_settings_from_the_model_folders(group_run, run_cli) -> None:
    """Trained at 16^3 with 8 latent dimensions; evaluated and analysed a week later without
    repeating a training flag (the defaults, 64^3 and 64, would not fit the weights)."""
    bids, out, _ = group_run
    root = out.parent
    specs = [a for spec in SPECS for a in ("--objective", spec)]
    later = [bids, out, "group", *specs, "-w", root / "work", "--n-trials", "8", "--folds",
             str(FOLDS), "--holdout", "3", "--eval-only", "--device", "cpu"]  # fmt: skip
    result = run_cli(*later, "--epochs", "7")
    assert result.code == 0, result.err
    assert "--eval-only evaluates the models as trained; it ignores --epochs" in result.err
    assert (out / "group" / "saliency" / "objective-S-AE" / "crossmodal.json").is_file()
    contradicting = run_cli(*later, "--input-size", "32")
    assert contradicting.code == 64 and len(contradicting.err.splitlines()) == 1
    assert "--input-size 32 contradicts the models (" in contradicting.err
    assert "model.json says 16)" in contradicting.err
    modality = run_cli(*later, "--modality", "falff", "T1w")
    assert modality.code == 64 and "--modality falff T1w contradicts" in modality.err

"""Confound probes and confound-controlled evaluation: the variables found where a BIDS
dataset keeps them, probes against scikit-learn and planted signals, regression and
leave-site-out on planted shortcuts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from bidsfusion.analyses.controlled import controlled_aucs, regress_out
from bidsfusion.analyses.probes import AUC, R2, _scores, probe_score
from bidsfusion.data.nuisance import CATEGORICAL, CONTINUOUS, nuisance_variables, typed_variable
from bidsfusion.data.pairs import Pair
from bidsfusion.evaluate.logreg import EvaluationRow


def test_a_variable_is_typed_by_its_values() -> None:
    ages = {f"{i:02d}": 60 + i * 0.7 for i in range(20)}
    variable, _ = typed_variable("age", "participants.tsv", ages)
    assert variable is not None and variable.kind == CONTINUOUS and variable.values["03"] == 62.1
    sexes = {f"{i:02d}": "MF"[i % 2] for i in range(20)} | {"99": "n/a"}
    variable, _ = typed_variable("sex", "participants.tsv", sexes)
    assert (
        variable.kind == CATEGORICAL
        and variable.classes == ("F", "M")
        and "99" not in variable.values
    )
    # few distinct numbers are classes; a rare class is unknown, not a class
    fields = {f"{i:02d}": 3.0 if i < 17 else (1.5 if i < 19 else 7.0) for i in range(20)}
    variable, why = typed_variable("field", "sidecars", fields)
    assert variable is None and "fewer than two classes" in why and "1.5: 2" in why
    fields = {f"{i:02d}": 3.0 if i < 14 else 1.5 for i in range(20)}
    variable, _ = typed_variable("field", "sidecars", fields)
    assert variable.classes == ("1.5", "3") and len(variable.values) == 20
    assert typed_variable("site", "participants.tsv", dict.fromkeys("abcdefghij", "A"))[0] is None
    assert "no subject" in typed_variable("x", "qc", {"01": None, "02": " NaN "})[1]


def test_a_number_column_with_a_stray_text_stays_continuous() -> None:
    ages = {f"{i:02d}": str(60 + i) for i in range(15)} | {"98": "unknown", "99": "71,5"}
    variable, _ = typed_variable("age", "participants.tsv", ages)
    assert variable.kind == CONTINUOUS and len(variable.values) == 15


def _dataset(root: Path, n: int = 12) -> tuple[Path, list[Pair]]:
    """Raw scans with sidecars (scanner by inheritance) and derivatives with QC."""
    bids, out = root / "bids", root / "out"
    rows = ["participant_id\tdiagnosis\tage\tsex"]
    pairs = []
    (bids).mkdir(parents=True)
    (bids / "T1w.json").write_text(json.dumps({"Manufacturer": "Acme", "MagneticFieldStrength": 3}))
    for i in range(n):
        label = f"{i:02d}"
        rows.append(f"sub-{label}\t{'AD' if i % 2 else 'HC'}\t{50 + 2.5 * i}\t{'MF'[i % 2]}")
        anat = bids / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        raw = anat / f"sub-{label}_T1w.nii.gz"
        raw.write_bytes(b"")
        if i >= n // 2:  # the second half scanned at 1.5 T
            (anat / f"sub-{label}_T1w.json").write_text(json.dumps({"MagneticFieldStrength": 1.5}))
        derived = out / f"sub-{label}" / "anat" / f"sub-{label}_desc-brain_T1w.nii.gz"
        derived.parent.mkdir(parents=True)
        sidecar = {
            "Sources": [f"bids:raw:sub-{label}/anat/{raw.name}"],
            "QC": {"MeanFramewiseDisplacement": 0.1 + 0.01 * i, "TemporalSNR": 40 + i},
        }
        derived.with_name(derived.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
        pairs.append(Pair(label, {"T1w": None}, {"T1w": derived}, 0.0, evaluation=True))
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    return bids, pairs


def test_variables_come_from_participants_sidecars_and_qc(tmp_path: Path) -> None:
    bids, pairs = _dataset(tmp_path)
    variables, notes = nuisance_variables(bids, pairs)
    found = {v.name: v for v in variables}
    assert set(found) == {"age", "sex", "scanner", "mean_fd_mm", "tsnr"}  # site: no column
    assert found["scanner"].values["00"] == "Acme 3" and found["scanner"].values["11"] == "Acme 1.5"
    assert found["scanner"].source == "sidecars" and found["tsnr"].kind == CONTINUOUS
    assert found["mean_fd_mm"].values["02"] == pytest.approx(0.12)
    assert notes == []
    variables, notes = nuisance_variables(bids, pairs, ["handedness", "sex"])
    assert {v.name for v in variables} == {"sex", "scanner", "mean_fd_mm", "tsnr"}
    assert len(notes) == 1 and "confound handedness skipped" in notes[0] and "age, sex" in notes[0]
    variables, _ = nuisance_variables(bids, pairs, ["none"])
    assert {v.name for v in variables} == {"scanner", "mean_fd_mm", "tsnr"}
    variables, notes = nuisance_variables(bids, pairs, ["diagnosis", "age"], "diagnosis")
    assert "diagnosis" not in {v.name for v in variables}
    assert notes == ["confound diagnosis skipped: it is the --label-column, the label"]
    assert all("\n" not in n for n in notes)


def test_probe_scores_are_sklearn_scores_and_their_null() -> None:
    rng = np.random.default_rng(1)
    truth, predicted = rng.random(25) > 0.4, rng.normal(size=25).round(1)  # ties
    assert _scores(AUC, truth[None], predicted)[0] == pytest.approx(roc_auc_score(truth, predicted))
    values = rng.normal(size=25)
    assert _scores(R2, values[None], predicted)[0] == pytest.approx(r2_score(values, predicted))


def _sites(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(np.arange(n) % 2, "B", "A")[rng.permutation(n)]


def test_a_planted_site_is_found_and_no_site_sits_at_its_null() -> None:
    rng = np.random.default_rng(0)
    site = _sites(rng, 100)
    x = rng.normal(size=(100, 16))
    planted = x + 0.8 * (site == "B")[:, None] * rng.normal(size=16)
    found = probe_score(planted[:60], site[:60], planted[60:], site[60:], True, 0)
    assert (
        found.metric == AUC and found.score > 0.85 and found.score > found.null and found.p < 0.01
    )
    absent = probe_score(x[:60], site[:60], x[60:], site[60:], True, 0)
    assert abs(absent.score - 0.5) < 0.15 and absent.p > 0.05
    age = 70 + 5 * x[:, 0] + rng.normal(size=100)
    assert probe_score(x[:60], age[:60], x[60:], age[60:], False, 0).score > 0.8
    none = probe_score(x[:60], rng.normal(size=60), x[60:], rng.normal(size=40), False, 0)
    assert none.metric == R2 and none.score < 0.1 and none.p > 0.05
    assert probe_score(x[:60], site[:60], x[60:63], site[60:63], True, 0) is None  # 3 tested


def test_regressing_out_leaves_what_the_design_cannot_explain() -> None:
    rng = np.random.default_rng(2)
    design = np.stack([np.ones(50), rng.normal(size=50)], 1)
    z = design @ rng.normal(size=(2, 3)) + 0.01 * rng.normal(size=(50, 3))
    fitted = np.arange(50) < 30
    residual = regress_out(z, design, fitted)
    assert np.abs(residual).max() < 0.05
    assert np.allclose(design[fitted].T @ residual[fitted], 0, atol=1e-9)


def _row(modality: str = "site_only") -> EvaluationRow:
    return EvaluationRow("X", modality, 0, 0, 0, 0, 1.0, "l2", 0.0, 0.0, 0.0, 0.0, 1, 0, 20000, "s",
                         "cv")  # fmt: skip


def _shortcut_cohort(rng: np.random.Generator, n: int = 160):
    """AD mostly at site B (90 %); one representation holds the site only, another the
    diagnosis only."""
    from bidsfusion.data.nuisance import Nuisance

    label = (np.arange(n) % 2).astype(np.int64)
    at_b = np.where(rng.random(n) < 0.9, label == 1, label == 0)
    site = np.where(at_b, "B", "A")
    subjects = np.array([f"{i:03d}" for i in range(n)])
    role = np.array(["train", "validation", "holdout", "holdout"])[rng.permutation(n) % 4]
    arrays = {
        "subject": subjects,
        "label": label,
        "role": role,
        "z_site_only": rng.normal(size=(n, 4)) + 2.0 * at_b[:, None],
        "z_diagnosis": rng.normal(size=(n, 4)) + 1.5 * label[:, None],
    }
    values = dict(zip(subjects, site, strict=True))
    return arrays, Nuisance("site", CATEGORICAL, "participants.tsv", values)


def test_an_auc_that_rests_on_the_site_falls_when_the_site_is_controlled() -> None:
    arrays, site = _shortcut_cohort(np.random.default_rng(3))
    shortcut = {r.control: r for r in controlled_aucs(_row(), arrays, [site], site) if not r.site}
    assert shortcut["none"].auc > 0.8 and abs(shortcut["regressed"].auc - 0.5) < 0.12
    kept = {r.control: r for r in controlled_aucs(_row("diagnosis"), arrays, [site], site)}
    # with 90 % of AD at site B the site explains part of the diagnosis too: it falls less
    assert kept["none"].auc > 0.9 and kept["regressed"].auc > shortcut["regressed"].auc + 0.1
    coin = np.random.default_rng(4).random(len(site.values)) < 0.5
    unconfounded = {s: "AB"[int(c)] for s, c in zip(site.values, coin, strict=True)}
    independent = type(site)("site", CATEGORICAL, "participants.tsv", unconfounded)
    free = {r.control: r for r in controlled_aucs(_row("diagnosis"), arrays, [independent], None)}
    assert abs(free["regressed"].auc - free["none"].auc) < 0.03
    sites = [r for r in controlled_aucs(_row(), arrays, [site], site) if r.site]
    assert {r.site for r in sites} == {"A", "B"} and all(
        r.control == "leave-site-out" for r in sites
    )
    assert all(abs(r.auc - 0.5) < 0.25 for r in sites)  # within a site, the site says nothing
    assert all(r.n_test < 80 for r in sites)


def _cohort_with_sites(root: Path, planted: float) -> tuple[Path, Path]:
    """36 planted subjects (16 AD, 16 HC, 4 other), sites A and B drawn independently of
    the diagnosis, age in participants.tsv; site B's maps carry ``planted`` in one block."""
    import nibabel as nib
    from test_group import write_group_inputs

    bids, out = write_group_inputs(root, ["AD", "HC"] * 16 + ["other"] * 4, seed=1)
    rng = np.random.default_rng(5)
    rows = (bids / "participants.tsv").read_text().splitlines()
    lines = [rows[0] + "\tage\tsite"]
    for row in rows[1:]:
        site = "AB"[int(rng.random() < 0.5)]
        lines.append(f"{row}\t{rng.normal(70, 6):.1f}\t{site}")
        if site == "B":
            for path in (out / row.split("\t")[0]).rglob("*.nii.gz"):
                image = nib.load(path)
                data = np.asarray(image.dataobj, dtype=np.float32)
                data[2:8, 8:14, 4:10] += planted
                nib.save(nib.Nifti1Image(data, image.affine), path)
    (bids / "participants.tsv").write_text("\n".join(lines) + "\n")
    return bids, out


@pytest.mark.slow
@pytest.mark.parametrize("planted", [0.0, 0.6])
def test_the_confounds_analysis_finds_a_planted_site_and_nothing_without_it(
    tmp_path: Path, planted: float
) -> None:
    from runner import run_main

    from bidsfusion.tsv import read_tsv

    bids, out = _cohort_with_sites(tmp_path, planted)
    result = run_main(bids, out, "group", "-w", tmp_path / "work", "--skip-bids-validation",
                      "--objective", "Random", "--input-size", "16", "--latent-dim", "8",
                      "--folds", "2", "--holdout", "0.5", "--n-trials", "4", "--device", "cpu",
                      "--analysis", "confounds")  # fmt: skip
    assert result.code == 0, result.err
    _, rows = read_tsv(out / "group" / "confounds.tsv")
    site = {(r["objective"], r["modality"], r["fold"]): r for r in rows if r["variable"] == "site"}
    assert {o for o, _, _ in site} == {"Random", "raw voxels"} and len(site) == 8
    ages = [r for r in rows if r["variable"] == "age"]
    assert ages and all(r["kind"] == "continuous" and r["metric"] == "r2" for r in ages)
    scores = np.array([float(r["score"]) for r in site.values()])
    if planted:
        assert scores.min() > 0.7 and all(float(r["p"]) < 0.05 for r in site.values())
    else:
        assert (
            abs(scores.mean() - 0.5) < 0.1 and np.mean([float(r["p"]) for r in site.values()]) > 0.2
        )
    _, controlled = read_tsv(out / "group" / "controlled_evaluation.tsv")
    kinds = {r["control"] for r in controlled}
    assert kinds == {"none", "regressed", "leave-site-out"}
    assert all(r["confounds"] == "age site" for r in controlled if r["control"] == "regressed")
    if planted:  # a rerun with nothing to probe leaves no table of the earlier settings
        again = run_main(bids, out, "group", "-w", tmp_path / "work", "--skip-bids-validation",
                         "--objective", "Random", "--input-size", "16", "--latent-dim", "8",
                         "--folds", "2", "--holdout", "0.5", "--n-trials", "4",
                         "--device", "cpu", "--eval-only", "--analysis", "confounds",
                         "--confound", "none")  # fmt: skip
        assert again.code == 65
        assert "no usable nuisance variable" in again.err
        assert not (out / "group" / "confounds.tsv").exists()
        assert not (out / "group" / "controlled_evaluation.tsv").exists()


def test_none_with_names_is_a_usage_error(run_cli, tmp_path: Path) -> None:
    result = run_cli(tmp_path, tmp_path / "out", "group", "--objective", "S", "--confound",
                     "none", "age")  # fmt: skip
    assert result.code == 64
    assert result.err.strip() == "bidsfusion: error: --confound none age: give none alone, or names"

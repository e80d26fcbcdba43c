"""The linear evaluation: planted truth, reproducible rows, resumable studies, errors,
and the evaluation tables."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from bidsfusion.errors import InputDataError, InputMissingError, OutputError, UsageError
from bidsfusion.evaluate import (
    COLUMNS,
    EvaluationRow,
    auc_standard_error,
    evaluate_representations,
    holdout_scores,
    logreg,
    mask_url,
    read_evaluation,
    summarize,
    summary_table,
    write_evaluation,
)
from bidsfusion.layout import GroupLayout
from bidsfusion.tsv import read_tsv

COUNTS = {"train": 60, "validation": 30, "holdout": 40}


def write_npz(path: Path, z: np.ndarray, label: np.ndarray, role: np.ndarray) -> Path:
    """A representations.npz as group.py writes it, with one modality ``m``."""
    np.savez(
        path,
        subject=np.array([f"{i:03d}" for i in range(len(label))]),
        group=np.array(["AD" if y == 1 else "HC" if y == 0 else "MCI" for y in label]),
        label=label.astype(np.int64),
        role=role,
        z_m=z.astype(np.float32),
    )
    return path


def planted(path: Path, shift: float, counts=COUNTS, dims: int = 8, seed: int = 0) -> Path:
    """Balanced labels; feature 0 is ``label * shift`` plus noise (0: pure noise), plus a
    few unlabelled (-1) and unused subjects that must be left out."""
    rng = np.random.default_rng(seed)
    role = np.repeat([*counts, "unused"], [*counts.values(), 5])
    label = np.concatenate([np.arange(n) % 2 for n in counts.values()] + [np.ones(5, int)])
    label[[0, 1]] = -1  # two "other" train subjects
    z = rng.normal(size=(len(role), dims)) + 50.0  # far from standardised
    z[:, 0] += shift * label
    return write_npz(path, z, label, role)


def separable(path: Path, seed: int = 0) -> Path:
    """Strictly linearly separable classes: feature 0 is +-(1 + |noise|)."""
    rng = np.random.default_rng(seed)
    role = np.repeat(list(COUNTS), list(COUNTS.values()))
    label = np.concatenate([np.arange(n) % 2 for n in COUNTS.values()])
    z = rng.normal(size=(len(role), 8))
    z[:, 0] = (2 * label - 1) * (1 + np.abs(z[:, 0]))
    return write_npz(path, z, label, role)


def evaluate(path: Path, n_trials: int = 12, **kwargs) -> EvaluationRow:
    return evaluate_representations(path, "S-AE", 0, "m", n_trials=n_trials, **kwargs)


def test_separable_classes_score_near_one_without_any_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ConvergenceWarning, FutureWarning, Deprecation...
        row = evaluate(separable(tmp_path / "r.npz"), storage=f"sqlite:///{tmp_path}/o.db")
    assert row.holdout_auc > 0.95 and row.validation_auc > 0.95
    assert (row.n_train, row.n_validation, row.n_holdout) == (60, 30, 40)
    assert row.penalty in {"l1", "l2", "elasticnet"} and 1e-6 <= row.C <= 1e3
    assert row.l1_ratio == {"l1": 1.0, "l2": 0.0}.get(row.penalty, row.l1_ratio)
    assert tuple(vars(row))[:12] == (
        "objective",
        "modality",
        "fold",
        "n_train",
        "n_validation",
        "n_holdout",
        "C",
        "penalty",
        "l1_ratio",
        "validation_auc",
        "holdout_auc",
        "holdout_bacc",
    )


def test_trials_that_do_not_converge_are_one_log_line_not_a_warning_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bidsfusion.evaluate import logreg

    monkeypatch.setattr(logreg, "MAX_ITER", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = evaluate(planted(tmp_path / "r.npz", shift=1.0), tuning="cv")
    converged = [r for r in caplog.records if "did not converge" in r.getMessage()]
    assert len(converged) == 1 and row.study in converged[0].getMessage()


def test_noise_scores_chance(tmp_path: Path) -> None:
    counts = {"train": 200, "validation": 100, "holdout": 200}
    row = evaluate(planted(tmp_path / "r.npz", 0.0, counts))
    # sd of the AUC of a score unrelated to the labels: sqrt((n1 + n0 + 1) / (12 n1 n0))
    sd = math.sqrt((100 + 100 + 1) / (12 * 100 * 100))
    assert abs(row.holdout_auc - 0.5) < 4 * sd  # 4 sd: 0.16


def test_a_classifier_without_coefficients_is_named(tmp_path: Path, caplog) -> None:
    path = planted(tmp_path / "r.npz", 3.0)
    with np.load(path) as data:
        arrays = dict(data)
    validation = arrays["role"] == "validation"
    arrays["z_m"][validation, 0] = 100.0 - arrays["z_m"][validation, 0]  # the relation reversed
    np.savez(path, **arrays)
    with caplog.at_level("WARNING", logger="bidsfusion.evaluate"):
        row = evaluate(path)
    assert row.validation_auc == row.holdout_auc == 0.5
    assert "has no nonzero coefficient" in caplog.text and row.study in caplog.text


def test_a_row_is_reproduced_by_an_independent_refit(tmp_path: Path) -> None:
    path = planted(tmp_path / "r.npz", 1.0)
    storage = f"sqlite:///{tmp_path}/o.db"
    row = evaluate(path, storage=storage, seed=3)
    with np.load(path) as npz:
        z, label, role = npz["z_m"].astype(float), npz["label"], npz["role"]
    part = {p: (role == p) & (label >= 0) for p in COUNTS}
    mean, sd = z[part["train"]].mean(0), z[part["train"]].std(0)
    x = {p: (z[m] - mean) / sd for p, m in part.items()}
    model = LogisticRegression(
        solver="saga",
        class_weight="balanced",
        C=row.C,
        l1_ratio=row.l1_ratio,
        random_state=row.seed,
        max_iter=row.max_iter,
    ).fit(x["train"], label[part["train"]])
    for p, value in (("validation", row.validation_auc), ("holdout", row.holdout_auc)):
        assert roc_auc_score(label[part[p]], model.decision_function(x[p])) == value
    predicted = model.predict(x["holdout"])
    assert balanced_accuracy_score(label[part["holdout"]], predicted) == row.holdout_bacc
    study = optuna.load_study(study_name=row.study, storage=storage)
    assert study.best_value == row.validation_auc  # the refit is the best trial's model
    scores = holdout_scores(path, row)  # the same refit, by subject
    with np.load(path) as npz:
        assert sorted(scores) == sorted(npz["subject"][part["holdout"]])
    labels, values = zip(*scores.values(), strict=True)
    assert roc_auc_score(labels, values) == row.holdout_auc
    changed = EvaluationRow(**{**vars(row), "holdout_auc": row.holdout_auc - 0.01})
    assert holdout_scores(path, changed) == {}  # a row its representations no longer give

    layout = GroupLayout(tmp_path / "group")
    write_evaluation([row], layout.evaluation, layout.evaluation_summary)
    assert read_evaluation(layout.evaluation) == [row]


def test_the_study_resumes_and_a_finished_one_is_not_rerun(tmp_path, monkeypatch) -> None:
    path, storage = planted(tmp_path / "r.npz", 1.0), f"sqlite:///{tmp_path}/o.db"
    fits, fit = [], logreg.fit

    def counted(*args, **kwargs):
        fits.append(args[1:3])
        if len(fits) == 4 and crash:
            raise KeyboardInterrupt  # killed during the 4th trial
        return fit(*args, **kwargs)

    monkeypatch.setattr(logreg, "fit", counted)
    crash = True
    with pytest.raises(KeyboardInterrupt):
        evaluate(path, n_trials=5, storage=storage)
    crash = False
    row = evaluate(path, n_trials=5, storage=storage)  # 2 more trials + the refit
    assert len(fits) == 4 + 2 + 1 and row.n_trials == 5
    study = optuna.load_study(study_name=row.study, storage=storage)
    first = [t.params for t in study.trials]

    row = evaluate(path, n_trials=8, storage=storage)
    assert len(fits) == 7 + 3 + 1 and row.n_trials == 8
    trials = optuna.load_study(study_name=row.study, storage=storage).trials
    complete = [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8 and [t.params for t in trials[: len(first)]] == first

    assert evaluate(path, n_trials=8, storage=storage) == row  # finished: only the refit
    assert len(fits) == 12
    other = evaluate(path, n_trials=1, storage=storage, seed=1)  # another seed: a new study
    assert other.study != row.study and other.n_trials == 1


def test_two_processes_share_one_sqlite_storage(tmp_path: Path) -> None:
    path, storage = planted(tmp_path / "r.npz", 1.0), f"sqlite:///{tmp_path}/o.db"
    script = textwrap.dedent(f"""
        from bidsfusion.evaluate import evaluate_representations
        row = evaluate_representations({str(path)!r}, "S-AE", 0, "m", 20, 0, {storage!r})
        print(row.n_trials)
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script], text=True) for _ in range(2)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    row = evaluate(path, n_trials=20, storage=storage)
    trials = optuna.load_study(study_name=row.study, storage=storage).trials
    assert 20 <= row.n_trials <= 22 and len(trials) == row.n_trials  # none failed


@pytest.mark.parametrize("part", ["train", "validation"])
def test_a_one_class_fold_part_is_bad_input(tmp_path: Path, part: str) -> None:
    path = planted(tmp_path / "r.npz", 1.0)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["label"][(arrays["role"] == part) & (arrays["label"] == 0)] = 1
    np.savez(path, **arrays)
    with pytest.raises(InputDataError) as error:
        evaluate_representations(path, "S-AE", 2, "m", n_trials=2)
    assert error.value.exit_code == 65
    n = COUNTS[part] - (2 if part == "train" else 0)
    assert f"fold 2's {part} part has {n} positive and 0 negative" in str(error.value)


@pytest.mark.parametrize("holdout", [{"holdout": 1}, {}])
def test_a_holdout_without_both_labels_is_bad_input(tmp_path: Path, holdout) -> None:
    path = planted(tmp_path / "r.npz", 1.0, {"train": 60, "validation": 30, **holdout})
    with pytest.raises(InputDataError) as error:
        evaluate(path, n_trials=2)
    assert error.value.exit_code == 65
    assert f"hold-out has 0 positive and {len(holdout)} negative" in str(error.value)
    assert "--holdout" in str(error.value)


def test_unusable_representations(tmp_path: Path) -> None:
    with pytest.raises(InputMissingError):
        evaluate(tmp_path / "missing.npz")
    path = planted(tmp_path / "r.npz", 1.0)
    with pytest.raises(InputDataError, match="no z_T1w; modalities: m"):
        evaluate_representations(path, "S-AE", 0, "T1w", n_trials=2)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["z_m"][3, 1] = np.nan
    np.savez(path, **arrays)
    with pytest.raises(InputDataError, match="not a finite"):
        evaluate(path, n_trials=2)


@pytest.mark.parametrize(
    "url", ["postgresql://u:secret@127.0.0.1:1/db", "sqlite:////proc/x/secret/db.sqlite"]
)
def test_an_unreachable_storage_is_an_output_error_with_the_password_masked(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(OutputError) as error:
        evaluate(planted(tmp_path / "r.npz", 1.0), storage=url)
    assert error.value.exit_code == 73
    assert "Optuna storage" in str(error.value)
    if url.startswith("postgresql"):
        assert "postgresql://u:***@127.0.0.1:1/db" in str(error.value)
        assert "secret" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("mysql+pymysql://u:p@ss@h/db?charset=utf8", "mysql+pymysql://u:***@h/db?charset=utf8"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////work/optuna.db", "sqlite:////work/optuna.db"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_a_storage_that_is_no_url_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a database URL"):
        evaluate(planted(tmp_path / "r.npz", 1.0), storage="optuna.db")


def _row(objective: str, modality: str, fold: int, auc: float) -> EvaluationRow:
    return EvaluationRow(
        objective, modality, fold, 60, 30, 40, 0.1, "l2", 0.0, 0.8, auc, 0.7, 5, 0, 1, "s"
    )


PLANTED = {  # objective -> modality -> hold-out AUC per fold
    "Random": {"T1w": [0.60, 0.62, 0.58], "falff": [0.55, 0.50, 0.52]},
    "L-CL": {"T1w": [0.70, 0.72, 0.74], "falff": [0.80, 0.78, 0.82]},  # mean 0.76
    "AE": {"T1w": [0.90, 0.86, 0.88], "falff": [0.56, 0.49, 0.60]},  # 0.73, loses a fold
}


def planted_rows(objectives=tuple(PLANTED)) -> list[EvaluationRow]:
    return [
        _row(o, m, k, auc)
        for o in objectives
        for m, folds in PLANTED[o].items()
        for k, auc in enumerate(folds)
    ]


def test_summary_is_sorted_like_fig2_and_marks_who_beats_random(tmp_path: Path) -> None:
    summary = summarize(planted_rows())
    assert [(r[0], r[1]) for r in summary] == [
        ("L-CL", "T1w"),
        ("L-CL", "falff"),
        ("AE", "T1w"),
        ("AE", "falff"),
        ("Random", "T1w"),
        ("Random", "falff"),
    ]
    assert [r[5] for r in summary] == [True, True, True, False, None, None]
    assert summary[0][2:5] == (3, pytest.approx(0.72), pytest.approx(0.02))
    assert summary_table(planted_rows()).splitlines() == [
        "objective  T1w             falff",
        "L-CL       0.72 +- 0.02 *  0.80 +- 0.02 *",
        "AE         0.88 +- 0.02 *  0.55 +- 0.06",
        "Random     0.60 +- 0.02    0.52 +- 0.03",
        "* beats Random in every fold",
    ]
    assert all(r[5] is None for r in summarize(planted_rows(("L-CL", "AE"))))

    layout = GroupLayout(tmp_path / "group")
    table, summary_path = layout.evaluation, layout.evaluation_summary
    write_evaluation(planted_rows(), table, summary_path)
    columns, rows = read_tsv(table)
    assert tuple(columns) == COLUMNS and len(rows) == 18
    assert [r["objective"] for r in rows[:6]] == ["AE"] * 6  # sorted by objective
    columns, rows = read_tsv(summary_path)
    assert [r["objective"] for r in rows] == ["L-CL", "L-CL", "AE", "AE", "Random", "Random"]
    assert [r["beats_random"] for r in rows] == ["True", "True", "True", "False", "n/a", "n/a"]
    with pytest.raises(ValueError, match="two evaluation rows"):
        write_evaluation(planted_rows() * 2, table, summary_path)


def test_a_damaged_journal_is_repaired_or_set_aside(tmp_path: Path, caplog) -> None:
    from bidsfusion.evaluate import journal_storage

    path = tmp_path / "optuna.journal"
    storage = journal_storage(path)
    optuna.create_study(storage=storage, study_name="kept").optimize(lambda t: 1.0, n_trials=2)
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"op_code": 4, "worker')  # a writer killed mid-record
    study = optuna.load_study(study_name="kept", storage=journal_storage(path))
    study.optimize(lambda t: 2.0, n_trials=1)
    assert len(study.trials) == 3 and path.read_bytes().startswith(intact)
    path.write_bytes(b"\x00" * 100 + b"\n" + intact)  # unreadable records
    with caplog.at_level("WARNING"):
        fresh = journal_storage(path)
    assert "unreadable records" in caplog.text and fresh.get_all_studies() == []
    assert len(list(tmp_path.glob("optuna.journal.corrupt-*"))) == 1


def test_auc_standard_error_at_chance_is_the_mann_whitney_null_variance() -> None:
    for n_positive, n_negative in ((8, 9), (3, 20), (1, 1)):
        exact = (n_positive + n_negative + 1) / (12 * n_positive * n_negative)
        assert auc_standard_error(0.5, n_positive, n_negative) == pytest.approx(math.sqrt(exact))


def test_auc_standard_error_matches_simulated_exponential_scores() -> None:
    """Exponential scores are the model where Hanley and McNeil's formula is exact."""
    rng = np.random.default_rng(0)
    n_positive, n_negative, rate = 8, 12, 1 / 3  # AUC = 1 / (1 + rate) = 0.75
    labels = np.r_[np.ones(n_positive), np.zeros(n_negative)]
    aucs = [
        roc_auc_score(
            labels,
            np.r_[rng.exponential(1 / rate, n_positive), rng.exponential(1.0, n_negative)],
        )
        for _ in range(4000)
    ]
    assert np.mean(aucs) == pytest.approx(0.75, abs=0.01)
    assert auc_standard_error(0.75, n_positive, n_negative) == pytest.approx(np.std(aucs), rel=0.05)
    with pytest.raises(ValueError, match="both classes"):
        auc_standard_error(0.75, 0, n_negative)


def test_delong_gives_the_aucs_and_the_variance_of_their_difference() -> None:
    from bidsfusion.evaluate.delong import delong_difference, p_greater, structural_components

    rng = np.random.default_rng(0)
    y = np.repeat([1, 0], 30)
    a, b = rng.normal(size=60) + y, np.round(rng.normal(size=60) + 0.5 * y)  # b has ties
    v10, v01 = structural_components(y, np.stack([a, b]))
    for r, scores in enumerate((a, b)):
        assert v10[r].mean() == pytest.approx(roc_auc_score(y, scores))
        assert v01[r].mean() == pytest.approx(roc_auc_score(y, scores))
    assert delong_difference(y, a, a) == (0.0, 0.0)
    assert p_greater([0.0], [0.0]) is None
    # on correlated classifiers (a shared subject effect) the variance is that of the
    # difference over repeated hold-outs: 2000 simulated ones
    differences, variances = [], []
    for _ in range(2000):
        shared = rng.normal(size=60)
        d, v = delong_difference(y, shared + y, shared + 0.8 * rng.normal(size=60) + 0.5 * y)
        differences.append(d)
        variances.append(v)
    assert np.mean(variances) == pytest.approx(np.var(differences), rel=0.15)
    assert np.var(differences) < 0.5 * np.mean(
        [auc_standard_error(0.8, 30, 30) ** 2 + auc_standard_error(0.65, 30, 30) ** 2]
    )  # the pairing matters: independent AUCs would vary twice as much
    assert p_greater([0.2, 0.3], [0.01, 0.01]) == pytest.approx(0.0062, abs=1e-4)


def test_the_summary_tests_each_objective_against_random_on_the_holdout() -> None:
    rng = np.random.default_rng(1)
    subjects = [f"s{i}" for i in range(20)]
    labels = np.arange(20) % 2
    noise = {k: rng.normal(size=20) for k in range(3)}
    scores = {}
    for k in range(3):
        good = labels * 3.0 + rng.normal(size=20)
        for objective, values in (("L-CL", good), ("AE", noise[k] + 0.1), ("Random", noise[k])):
            for modality in ("T1w", "falff"):
                pairs = zip(labels.tolist(), values.tolist(), strict=True)
                scores[objective, modality, k] = dict(zip(subjects, pairs, strict=True))
    del scores["L-CL", "falff", 1]  # one fold without scores: the others still count
    summary = {(r[0], r[1]): r[6] for r in summarize(planted_rows(), scores)}
    assert summary["L-CL", "T1w"] < 1e-3 and summary["L-CL", "falff"] < 1e-2
    assert summary["AE", "T1w"] is None  # same ranks as Random: no difference, no variance
    assert summary["Random", "T1w"] is None
    assert all(r[6] is None for r in summarize(planted_rows()))
    assert "L-CL       0.72 +- 0.02 * (p 0.00)" in summary_table(planted_rows(), scores)

"""Consistency checks of a group-level OUTPUT_DIR, shared by the group and end-to-end tests."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bidsfusion.models.folder import load_model_folder


def read_pairs(out: Path) -> list[dict[str, str]]:
    """The rows of ``group/pairs.tsv``."""
    with (out / "group" / "pairs.tsv").open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _check_training(fold_dir: Path, spec: str, epochs: int) -> None:
    with (fold_dir / "history.tsv").open(newline="") as handle:
        history = list(csv.DictReader(handle, delimiter="\t"))
    assert [int(r["epoch"]) for r in history] == list(range(1, epochs + 1))
    assert all(f"train_{term}" in history[0] for term in spec.split("-"))
    checkpoint = torch.load(fold_dir / "checkpoint.pt", weights_only=True)
    assert 1 <= checkpoint["epoch"] <= epochs


def check_evaluation(out: Path, specs: Sequence[str], n_folds: int) -> list[dict[str, str]]:
    """evaluation.tsv has a row per (spec, modality, fold) whose AUCs an independent
    scikit-learn refit with the recorded C and l1_ratio reproduces; returns the rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    with (out / "group" / "evaluation.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert list(rows[0])[:12] == [
        "objective", "modality", "fold", "n_train", "n_validation", "n_holdout",
        "C", "penalty", "l1_ratio", "validation_auc", "holdout_auc", "holdout_bacc",
    ]  # fmt: skip
    keys = {(r["objective"], r["modality"], int(r["fold"])) for r in rows}
    assert keys == {(s, m, k) for s in specs for m in ("T1w", "falff") for k in range(n_folds)}
    for row in rows:
        z = np.load(out / "group" / f"objective-{row['objective']}" / f"fold-{row['fold']}"
                    / "representations.npz")  # fmt: skip
        labelled = np.isin(z["label"], (0, 1))
        part = {p: labelled & (z["role"] == p) for p in ("train", "validation", "holdout")}
        x, y = z[f"z_{row['modality']}"].astype(np.float64), z["label"]
        mean, sd = x[part["train"]].mean(0), x[part["train"]].std(0)
        x = (x - mean) / np.where(sd > 0, sd, 1)
        fitted = part["train"] | (part["validation"] if row["tuning"] == "cv" else False)
        model = LogisticRegression(
            C=float(row["C"]), l1_ratio=float(row["l1_ratio"]), solver="saga",
            class_weight="balanced", max_iter=int(row["max_iter"]), random_state=int(row["seed"]),
        ).fit(x[fitted], y[fitted])  # fmt: skip
        for name in ("holdout",) if row["tuning"] == "cv" else ("validation", "holdout"):
            auc = roc_auc_score(y[part[name]], model.decision_function(x[part[name]]))
            assert abs(auc - float(row[f"{name}_auc"])) < 1e-9, (row["study"], name)
    return rows


def check_group_outputs(out: Path, specs: Sequence[str], epochs: int, latent_dim: int) -> None:
    """Assert that pairs, splits and every (spec, fold) output agree with each other."""
    rows = read_pairs(out)
    subjects = {r["subject"] for r in rows}
    assert all(Path(r["path_T1w"]).is_file() and Path(r["path_falff"]).is_file() for r in rows)
    evaluation = [r["subject"] for r in rows if "evaluation" in r["role"]]
    assert sorted(evaluation) == sorted(subjects)  # one evaluation pair per subject
    group_of = {r["subject"]: r["group"] for r in rows}

    splits = json.loads((out / "group" / "splits.json").read_text())
    holdout = set(splits["holdout"])
    validation = [set(f["validation"]) for f in splits["folds"]]
    assert sum(map(len, validation)) == len(set().union(*validation))  # validated once
    assert set().union(*validation) | holdout == subjects
    for fold, validated in zip(splits["folds"], validation, strict=True):
        train = set(fold["train"])
        assert not train & validated and not (train | validated) & holdout
        assert train | validated | holdout == subjects

    for spec in specs:
        for k, fold in enumerate(splits["folds"]):
            fold_dir = out / "group" / f"objective-{spec}" / f"fold-{k}"
            record, model = load_model_folder(fold_dir)  # from its own files alone
            assert (record.objective, record.latent_dim, record.modality_names) == (
                spec, latent_dim, ("T1w", "falff")
            )  # fmt: skip
            assert record.data["train"] == fold["train"]
            assert record.data["holdout"] == sorted(holdout)
            if spec == "Random":  # the untrained control: its initial weights, representations
                assert sorted(p.name for p in fold_dir.iterdir()) == [
                    "model.json", "model.safetensors", "objective.safetensors",
                    "representations.npz",
                ]  # fmt: skip
                assert record.trains is False and record.training["trained"] is False
            else:
                _check_training(fold_dir, spec, epochs)
                best = torch.load(fold_dir / "checkpoint.pt", weights_only=True)
                assert record.training["best_epoch"] == best["epoch"]
                saved = model.state_dict()
                assert all(torch.equal(saved[k], v) for k, v in best["model"].items())
            z = np.load(fold_dir / "representations.npz")
            assert sorted(z["subject"]) == sorted(subjects)
            assert z["z_T1w"].shape == z["z_falff"].shape == (len(subjects), latent_dim)
            assert np.isfinite(z["z_T1w"]).all() and np.isfinite(z["z_falff"]).all()
            roles = dict(zip(z["subject"], z["role"], strict=True))
            assert {s for s, r in roles.items() if r == "validation"} == set(fold["validation"])
            assert {s for s, r in roles.items() if r == "holdout"} == holdout
            assert {s for s, r in roles.items() if r == "train"} == set(fold["train"])
            assert dict(zip(z["subject"], z["group"], strict=True)) == group_of

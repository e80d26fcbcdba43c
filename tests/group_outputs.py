"""Consistency checks of a group-level OUTPUT_DIR, shared by the group and end-to-end tests."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def read_pairs(out: Path) -> list[dict[str, str]]:
    """The rows of ``group/pairs.tsv``."""
    with (out / "group" / "pairs.tsv").open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


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
            with (fold_dir / "history.tsv").open(newline="") as handle:
                history = list(csv.DictReader(handle, delimiter="\t"))
            assert [int(r["epoch"]) for r in history] == list(range(1, epochs + 1))
            assert all(f"train_{term}" in history[0] for term in spec.split("-"))
            checkpoint = torch.load(fold_dir / "checkpoint.pt", weights_only=True)
            assert 1 <= checkpoint["epoch"] <= epochs
            z = np.load(fold_dir / "representations.npz")
            assert sorted(z["subject"]) == sorted(subjects)
            assert z["z_T1w"].shape == z["z_falff"].shape == (len(subjects), latent_dim)
            assert np.isfinite(z["z_T1w"]).all() and np.isfinite(z["z_falff"]).all()
            roles = dict(zip(z["subject"], z["role"], strict=True))
            assert {s for s, r in roles.items() if r == "validation"} == set(fold["validation"])
            assert {s for s, r in roles.items() if r == "holdout"} == holdout
            assert {s for s, r in roles.items() if r == "train"} == set(fold["train"])
            assert dict(zip(z["subject"], z["group"], strict=True)) == group_of

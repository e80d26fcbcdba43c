"""Subject-level stratified hold-out and folds."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest

from bidsfusion.data.splits import Splits, make_splits
from bidsfusion.errors import InputDataError, UsageError


def cohort(hc: int = 70, ad: int = 15, other: int = 15) -> tuple[list[str], list[str]]:
    groups = ["HC"] * hc + ["AD"] * ad + ["other"] * other
    subjects = [f"sub-{i:03d}" for i in range(len(groups))]
    return subjects, groups


def within_one(count: int, expected: float) -> bool:
    return math.floor(expected) <= count <= math.ceil(expected)


def test_parts_are_disjoint_complete_and_stratified():
    subjects, groups = cohort()
    group_of = dict(zip(subjects, groups, strict=True))
    splits = make_splits(subjects, groups, n_folds=5, holdout=0.2, seed=3)
    holdout = set(splits.holdout)
    assert len(holdout) == 20
    held = Counter(group_of[s] for s in holdout)
    assert all(within_one(held[g], 20 * n / 100) for g, n in Counter(groups).items())
    rest = set(subjects) - holdout
    rest_counts = Counter(group_of[s] for s in rest)
    validated: list[str] = []
    for fold in splits.folds:
        train, validation = set(fold.train), set(fold.validation)
        assert not train & validation
        assert not (train | validation) & holdout
        assert train | validation == rest
        counts = Counter(group_of[s] for s in validation)
        assert all(within_one(counts[g], n / 5) for g, n in rest_counts.items())
        validated.extend(fold.validation)
    assert sorted(validated) == sorted(rest)


def test_deterministic_from_seed_and_independent_of_input_order():
    subjects, groups = cohort()
    first = make_splits(subjects, groups, seed=7)
    assert make_splits(subjects[::-1], groups[::-1], seed=7) == first
    assert make_splits(subjects, groups, seed=8) != first


def test_holdout_as_a_count_or_none():
    subjects, groups = cohort()
    assert len(make_splits(subjects, groups, holdout=10).holdout) == 10
    assert make_splits(subjects, groups, holdout=0).holdout == ()


def test_too_few_subjects_per_group_names_the_counts():
    subjects, groups = cohort(hc=25, ad=4, other=2)
    with pytest.raises(InputDataError) as error:
        make_splits(subjects, groups, n_folds=5, holdout=6)
    assert str(error.value).startswith(
        "need at least 5 subjects per group for 5 folds; have AD=3, HC=20 outside the hold-out;"
    )
    assert error.value.exit_code == 65


@pytest.mark.parametrize("holdout", [-1, 1.5, "10", True])
def test_bad_holdout_is_a_usage_error(holdout):
    subjects, groups = cohort()
    with pytest.raises(UsageError):
        make_splits(subjects, groups, holdout=holdout)


def test_json_round_trip(tmp_path):
    subjects, groups = cohort()
    splits = make_splits(subjects, groups, n_folds=4, holdout=12, seed=5)
    path = tmp_path / "splits.json"
    splits.to_json(path)
    assert Splits.from_json(path) == splits
    assert [p.name for p in tmp_path.iterdir()] == ["splits.json"]
    path.write_text('{"seed": 0}')
    with pytest.raises(InputDataError, match=re.escape("splits.json")):
        Splits.from_json(path)

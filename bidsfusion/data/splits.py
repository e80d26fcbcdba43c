"""Subject-level splits: a stratified hold-out, then stratified K folds on the rest.

Stratification uses every group label as given (AD, HC and "other" alike).
The hold-out gives each group its share of the hold-out size (largest
remainders, ties to the alphabetically first group), drawn at random within
the group; the folds come from scikit-learn's ``StratifiedKFold(shuffle=True)``.
Subjects are sorted first, so the result depends only on the set of
(subject, group) and the seed.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from bidsfusion.atomic import write_text
from bidsfusion.errors import BidsFusionError, InputDataError, InputMissingError, UsageError
from bidsfusion.layout import GroupLayout


@dataclass(frozen=True)
class Fold:
    """Subjects that train and validate one fold (disjoint, sorted)."""

    train: tuple[str, ...]
    validation: tuple[str, ...]


@dataclass(frozen=True)
class Splits:
    """A hold-out and ``n_folds`` cross-validation folds of the other subjects."""

    seed: int
    n_folds: int
    holdout: tuple[str, ...]
    folds: tuple[Fold, ...]

    def to_json(self, path: Path) -> None:
        """Write atomically: {seed, n_folds, holdout: [...], folds: [{train, validation}]}."""
        document = {
            "seed": self.seed,
            "n_folds": self.n_folds,
            "holdout": list(self.holdout),
            "folds": [
                {"train": list(f.train), "validation": list(f.validation)} for f in self.folds
            ],
        }
        write_text(Path(path), json.dumps(document, indent=1) + "\n")

    @classmethod
    def from_json(cls, path: Path) -> Splits:
        """Read a file written by :meth:`to_json`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InputMissingError(f"cannot read splits file {path}: {error.strerror}") from None
        try:
            document = json.loads(text)
            folds = tuple(
                Fold(tuple(f["train"]), tuple(f["validation"])) for f in document["folds"]
            )
            splits = cls(
                int(document["seed"]), int(document["n_folds"]), tuple(document["holdout"]), folds
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputDataError(f"{path}: not a splits file ({error!r})") from None
        if len(splits.folds) != splits.n_folds:
            raise InputDataError(
                f"{path}: n_folds is {splits.n_folds} but has {len(splits.folds)} folds"
            )
        return splits


def _holdout_size(holdout: int | float, n_subjects: int) -> int:
    """A count (int >= 0) or a fraction (0 <= x < 1, rounded up) of ``n_subjects``."""
    is_count = isinstance(holdout, int) and not isinstance(holdout, bool)
    is_fraction = isinstance(holdout, float) and 0 <= holdout < 1
    if not (is_count or is_fraction) or holdout < 0:
        raise UsageError(f"holdout must be a count >= 0 or a fraction in [0, 1), got {holdout!r}")
    size = math.ceil(holdout * n_subjects) if is_fraction else int(holdout)
    if size >= n_subjects:
        raise InputDataError(
            f"a hold-out of {size} subjects leaves none for the folds (have {n_subjects} subjects)"
        )
    return size


def _group_quotas(counts: Counter[str], size: int) -> dict[str, int]:
    """Split ``size`` across groups proportionally to ``counts`` (largest remainders)."""
    total = sum(counts.values())
    exact = {g: size * counts[g] / total for g in sorted(counts)}
    quotas = {g: math.floor(x) for g, x in exact.items()}
    by_remainder = sorted(exact, key=lambda g: quotas[g] - exact[g])
    for group in by_remainder[: size - sum(quotas.values())]:
        quotas[group] += 1
    return quotas


def _stratified_holdout(
    subjects: np.ndarray, groups: np.ndarray, size: int, rng: np.random.Generator
) -> set[str]:
    quotas = _group_quotas(Counter(groups.tolist()), size)
    chosen: set[str] = set()
    for group, quota in quotas.items():
        members = subjects[groups == group]
        chosen.update(rng.choice(members, size=quota, replace=False).tolist())
    return chosen


def _counts_text(counts: Counter[str], names: Sequence[str]) -> str:
    return ", ".join(f"{g}={counts[g]}" for g in names)


def _check_fold_sizes(groups: np.ndarray, n_folds: int, evaluated: Sequence[str]) -> None:
    counts = Counter(groups.tolist())
    if any(counts[g] < n_folds for g in evaluated):
        raise InputDataError(
            f"need at least {n_folds} subjects per group for {n_folds} folds; have "
            f"{_counts_text(counts, evaluated)} outside the hold-out; use fewer --folds, "
            "a smaller --holdout, or more subjects"
        )


def make_splits(
    subjects: Sequence[str],
    groups: Sequence[str],
    n_folds: int = 5,
    holdout: int | float = 0.2,
    seed: int = 0,
    evaluated_groups: Sequence[str] = ("AD", "HC"),
) -> Splits:
    """Split subjects into a stratified hold-out and ``n_folds`` stratified folds.

    ``groups[i]`` is the group of ``subjects[i]``. ``holdout`` is a number of
    subjects (int) or a fraction (0 < x < 1, rounded up). Every group in
    ``evaluated_groups`` needs at least ``n_folds`` subjects outside the
    hold-out (InputDataError otherwise); smaller other groups are spread
    across folds as evenly as they allow.
    """
    if len(subjects) != len(groups):
        raise ValueError(f"{len(subjects)} subjects but {len(groups)} groups")
    repeated = [s for s, n in Counter(subjects).items() if n > 1]
    if repeated:
        raise InputDataError(f"subject {repeated[0]} is listed more than once")
    if n_folds < 2:
        raise UsageError(f"n_folds must be at least 2, got {n_folds}")
    order = np.argsort(np.asarray(subjects, dtype=str), kind="stable")
    subject_array = np.asarray(subjects, dtype=str)[order]
    group_array = np.asarray(groups, dtype=str)[order]
    rng = np.random.default_rng(seed)
    size = _holdout_size(holdout, len(subject_array))
    held = _stratified_holdout(subject_array, group_array, size, rng)
    keep = np.array([s not in held for s in subject_array], dtype=bool)
    rest, rest_groups = subject_array[keep], group_array[keep]
    _check_fold_sizes(rest_groups, n_folds, evaluated_groups)
    folder = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class")
            indices = list(folder.split(np.zeros(len(rest)), rest_groups))
    except ValueError:
        counts = Counter(rest_groups.tolist())
        raise InputDataError(
            f"cannot make {n_folds} folds from {len(rest)} subjects; "
            f"have {_counts_text(counts, sorted(counts))}"
        ) from None
    folds = tuple(
        Fold(tuple(sorted(rest[t].tolist())), tuple(sorted(rest[v].tolist()))) for t, v in indices
    )
    return Splits(seed=seed, n_folds=n_folds, holdout=tuple(sorted(held)), folds=folds)


def selected_folds(requested: Sequence[int], n_folds: int) -> list[int]:
    """The folds of ``--fold`` (sorted, each once), every fold when none is given; a fold
    the splits do not have: UsageError (64)."""
    unknown = sorted({k for k in requested if not 0 <= k < n_folds})
    if unknown:
        raise UsageError(
            f"--fold {' '.join(map(str, unknown))}: the splits have folds 0 to {n_folds - 1}"
        )
    return sorted(set(requested)) or list(range(n_folds))


def check_earlier_splits(
    layout: GroupLayout, splits: Splits, retrained: Collection[tuple[str, int]]
) -> None:
    """UsageError (64) when ``splits.json`` holds other splits than ``splits`` and a fold
    not in ``retrained`` (spec, fold) was trained on them: its evaluation rows, training
    summary and analyses would sit beside this run's, on another hold-out."""
    if not layout.splits.exists():
        return
    try:
        if Splits.from_json(layout.splits) == splits:
            return
    except BidsFusionError:
        pass
    earlier = [
        f"{run.spec} {run.files.path.name}"
        for run in layout.runs()
        if (run.spec, run.fold) not in retrained
    ]
    if earlier:
        raise UsageError(
            f"{layout.splits} holds other splits than this run's (--holdout, --folds, --seed or "
            f"the subjects differ) and {', '.join(earlier)} were trained on them: rerun with the "
            "settings in group/config.toml, retrain them with this run (--objective, --fold), "
            "remove their folders, or choose another OUTPUT_DIR"
        )

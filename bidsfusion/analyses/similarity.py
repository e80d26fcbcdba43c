"""How alike two modalities' representations of the same subjects are: CKA and SVCCA.

``x[n, p]`` and ``y[n, q]`` hold the representations of the same ``n`` subjects
(row ``i`` of both is subject ``i``); every computation is in float64.

* Linear CKA (Kornblith et al. 2019): ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``
  with the linear Gram matrices ``K = x x^T``, ``L = y y^T``. The biased HSIC
  (``tr(K H L H)``, ``H`` the centring matrix) makes CKA of independent data large
  at small ``n`` (about 0.55 for two independent 50 x 64 matrices); the default is
  the unbiased HSIC estimator (Song et al. 2012), which puts it near 0.
* SVCCA (Raghu et al. 2017): each side reduced to its top singular directions
  keeping ``variance`` of its variance, then CCA between the reduced sides; the
  mean canonical correlation.

Neither means anything alone: SVCCA of independent 16-dimensional data is 0.71 at n = 26
and 0.44 at n = 64, so groups of unequal size differ by their size. The ``similarity``
analysis therefore gives every value its null (the 95th percentile and the p-value of
:data:`PERMUTATIONS` shuffles of one modality's subjects, which break the pairing and keep
everything else) and, for the groups, the values on equal-size random subsets
(:data:`SUBSAMPLES` draws of as many subjects as the smallest group has), which are
what may be compared between groups.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from bidsfusion.analyses.context import AnalysisContext

SVCCA_VARIANCE = 0.99


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"representations must be 2-D (subjects x features), got {x.shape}")
    return x - x.mean(axis=0)


def _check_pair(x: np.ndarray, y: np.ndarray, minimum: int) -> None:
    if len(x) != len(y):
        raise ValueError(f"{len(x)} and {len(y)} subjects: rows must be the same subjects")
    if len(x) < minimum:
        raise ValueError(f"needs at least {minimum} subjects, got {len(x)}")


def _unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al.'s unbiased HSIC of two Gram matrices (their diagonals are ignored)."""
    n = len(k)
    k, l = k.copy(), l.copy()  # noqa: E741
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    ones_k, ones_l = k.sum(axis=0), l.sum(axis=0)
    value = (k * l).sum() + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2))
    value -= 2.0 * (ones_k @ ones_l) / (n - 2)
    return float(value / (n * (n - 3)))


def linear_cka(x: np.ndarray, y: np.ndarray, debiased: bool = True) -> float:
    """Linear CKA of ``x[n, p]`` and ``y[n, q]`` (see the module doc); NaN when either
    side is constant. The debiased estimator needs ``n >= 4`` and can be slightly
    negative for independent data."""
    x, y = _centred(x), _centred(y)
    _check_pair(x, y, 4 if debiased else 2)
    k, l = x @ x.T, y @ y.T  # noqa: E741
    if debiased:
        xy, xx, yy = _unbiased_hsic(k, l), _unbiased_hsic(k, k), _unbiased_hsic(l, l)
    else:
        xy, xx, yy = (k * l).sum(), (k * k).sum(), (l * l).sum()
    if xx <= 0 or yy <= 0:
        return float("nan")
    return float(xy / np.sqrt(xx * yy))


def _top_directions(x: np.ndarray, variance: float) -> np.ndarray:
    """``x`` (centred) projected on its fewest singular directions keeping ``variance``."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    keep = int(np.searchsorted(energy, variance - 1e-12) + 1)
    return u[:, :keep] * s[:keep]


def svcca(x: np.ndarray, y: np.ndarray, variance: float = SVCCA_VARIANCE) -> float:
    """Mean canonical correlation of ``x`` and ``y`` after SVD reduction to ``variance``
    (see the module doc); NaN when either side is constant."""
    x, y = _centred(x), _centred(y)
    _check_pair(x, y, 3)
    if not (np.any(x) and np.any(y)):
        return float("nan")
    qx, _ = np.linalg.qr(_top_directions(x, variance))
    qy, _ = np.linalg.qr(_top_directions(y, variance))
    correlations = np.linalg.svd(qx.T @ qy, compute_uv=False)
    return float(np.clip(correlations, 0.0, 1.0).mean())


SIMILARITY_COLUMNS = (
    "objective", "fold", "modalities", "group", "n", "cka", "cka_biased", "svcca",
    "cka_null", "cka_p", "svcca_null", "svcca_p", "n_equal", "cka_equal_n", "svcca_equal_n",
)  # fmt: skip
"""Columns of ``group/similarity.tsv``; ``modalities`` names the pair, e.g. ``T1w-falff``;
``*_null`` the 95th percentile of the permutation null, ``*_p`` the permutation p-value;
``*_equal_n`` the mean over subsets of ``n_equal`` subjects (the smallest group's n)."""
PERMUTATIONS = 100
"""Shuffles of one modality's subjects per value."""
SUBSAMPLES = 50
"""Equal-size subsets per group."""


def similarity_rows(context: AnalysisContext) -> list[list[object]]:
    """Per objective, fold, pair of modalities and group (``--positive``, ``--negative``,
    and ``all`` the evaluated subjects), :data:`SIMILARITY_COLUMNS`: n, debiased and biased
    linear CKA, SVCCA, their permutation nulls, and their values on subsets of the
    smallest group's size (seeded by ``--seed``, the fold and the row)."""
    rows: list[list[object]] = []
    groups = (context.positive, context.negative, "all")
    for spec in context.specs:
        for fold in context.folds:
            arrays = context.representations(spec, fold)
            everyone = np.full(len(arrays["group"]), True)
            chosen = {g: everyone if g == "all" else arrays["group"] == g for g in groups}
            n_equal = min(int(c.sum()) for c in chosen.values())
            for a, b in combinations(context.modalities, 2):
                for group in groups:
                    x, y = arrays[f"z_{a}"][chosen[group]], arrays[f"z_{b}"][chosen[group]]
                    rng = np.random.default_rng([context.seed, fold, len(rows)])
                    values = [*_measures(x, y), *permutation_nulls(x, y, rng)]
                    equal = [n_equal, *equal_n_values(x, y, n_equal, rng)]
                    rows.append([spec, fold, f"{a}-{b}", group, len(x), *values, *equal])
    return rows


def _cka_svcca(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Debiased CKA and SVCCA (NaN where there are too few subjects)."""
    cka, _, canonical = _measures(x, y)
    return cka, canonical


def permutation_nulls(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> list[float]:
    """The 95th percentile and p-value of the permutation null of CKA, then of SVCCA."""
    observed = _cka_svcca(x, y)
    null = np.array([_cka_svcca(x, y[rng.permutation(len(y))]) for _ in range(PERMUTATIONS)])
    out = []
    for k, value in enumerate(observed):
        if not np.isfinite(value) or not np.isfinite(null[:, k]).all():
            out += [float("nan"), float("nan")]
            continue
        p = (1 + (null[:, k] >= value).sum()) / (1 + PERMUTATIONS)
        out += [float(np.quantile(null[:, k], 0.95)), float(p)]
    return out


def equal_n_values(x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> list[float]:
    """CKA and SVCCA, each the mean over :data:`SUBSAMPLES` subsets of ``n`` subjects."""
    if n >= len(x):
        return list(_cka_svcca(x, y))
    draws = [rng.choice(len(x), size=n, replace=False) for _ in range(SUBSAMPLES)]
    values = np.array([_cka_svcca(x[d], y[d]) for d in draws])
    return [float(v) for v in values.mean(axis=0)]


def _measures(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Debiased CKA, biased CKA and SVCCA; NaN where there are too few subjects."""
    nan = float("nan")
    return (
        linear_cka(x, y) if len(x) >= 4 else nan,
        linear_cka(x, y, debiased=False) if len(x) >= 2 else nan,
        svcca(x, y) if len(x) >= 3 else nan,
    )


def write_similarity(context: AnalysisContext) -> None:
    """The ``similarity`` analysis: ``group/similarity.tsv`` (:data:`SIMILARITY_COLUMNS`)."""
    from bidsfusion.tsv import write_tsv

    write_tsv(context.layout.similarity, SIMILARITY_COLUMNS, similarity_rows(context))

"""CKA and SVCCA against their definitions and invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from bidsfusion.analyses.similarity import linear_cka, svcca


def _gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Biased linear CKA written with the centring matrix H: tr(KHLH) / sqrt(...)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T  # noqa: E741
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def _loop_unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. (2012), eq. 5, with explicit sums over distinct index tuples."""
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    first = sum(kt[i, j] * lt[j, i] for i in range(n) for j in range(n))
    second = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    third = 2 / (n - 2) * sum(kt[i, :].sum() * lt[:, i].sum() for i in range(n))
    return (first + second - third) / (n * (n - 3))


RNG = np.random.default_rng(0)
X = RNG.standard_normal((50, 64))
Y = X[:, :20] @ RNG.standard_normal((20, 30)) + 0.5 * RNG.standard_normal((50, 30))


def test_cka_of_a_representation_with_itself_is_one() -> None:
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, X, debiased=False) == pytest.approx(1.0)


def test_cka_ignores_rotations_and_isotropic_scaling() -> None:
    rotated = 3.7 * X @ ortho_group.rvs(64, random_state=1)
    for debiased in (True, False):
        assert linear_cka(rotated, Y, debiased) == pytest.approx(linear_cka(X, Y, debiased))
    stretched = X * np.linspace(1, 5, 64)
    assert linear_cka(stretched, Y) != pytest.approx(linear_cka(X, Y), abs=1e-3)


def test_debiased_cka_of_independent_data_is_near_zero_where_the_biased_is_not() -> None:
    other = np.random.default_rng(1).standard_normal((50, 64))
    assert abs(linear_cka(X, other)) < 0.05
    assert 0.45 < linear_cka(X, other, debiased=False) < 0.65


def test_cka_equals_the_gram_matrix_formulas() -> None:
    assert linear_cka(X, Y, debiased=False) == pytest.approx(_gram_cka(X, Y), rel=1e-10)
    x, y = X[:12] - X[:12].mean(0), Y[:12] - Y[:12].mean(0)
    k, l = x @ x.T, y @ y.T  # noqa: E741
    expected = _loop_unbiased_hsic(k, l) / np.sqrt(
        _loop_unbiased_hsic(k, k) * _loop_unbiased_hsic(l, l)
    )
    assert linear_cka(X[:12], Y[:12]) == pytest.approx(expected, rel=1e-10)


def test_svcca_ignores_invertible_linear_maps() -> None:
    x, y = X[:, :8], Y[:, :6]
    mixed = x @ np.random.default_rng(2).standard_normal((8, 8))
    assert svcca(mixed, y, variance=1.0) == pytest.approx(svcca(x, y, variance=1.0), rel=1e-8)
    assert svcca(x, x @ np.random.default_rng(3).standard_normal((8, 8))) == pytest.approx(1.0)
    unrelated = np.random.default_rng(4).standard_normal((50, 6))
    assert svcca(x, unrelated, variance=1.0) < svcca(x, y, variance=1.0)


def test_constant_or_mismatched_inputs() -> None:
    assert np.isnan(linear_cka(np.ones((10, 3)), X[:10]))
    assert np.isnan(svcca(np.ones((10, 3)), X[:10]))
    with pytest.raises(ValueError, match="same subjects"):
        linear_cka(X, Y[:10])


def test_the_nulls_say_independent_data_are_independent_and_equal_n_removes_the_size_effect():
    from bidsfusion.analyses.similarity import equal_n_values, permutation_nulls

    rng = np.random.default_rng(3)
    small, large = rng.normal(size=(26, 16)), rng.normal(size=(64, 16))
    y_small, y_large = rng.normal(size=(26, 16)), rng.normal(size=(64, 16))
    assert svcca(small, y_small) - svcca(large, y_large) > 0.15  # a size effect alone
    _, cka_p, svcca_null, svcca_p = permutation_nulls(large, y_large, np.random.default_rng(0))
    assert cka_p > 0.05 and svcca_p > 0.05  # independent: at their nulls
    assert svcca(large, y_large) <= svcca_null + 0.05
    equal = equal_n_values(large, y_large, 26, np.random.default_rng(0))[1]
    assert abs(equal - svcca(small, y_small)) < 0.1  # compared at one size, they agree
    shared = rng.normal(size=(64, 4))
    x, y = shared @ rng.normal(size=(4, 16)), shared @ rng.normal(size=(4, 16))
    x, y = x + 0.5 * rng.normal(size=x.shape), y + 0.5 * rng.normal(size=y.shape)
    _, linked_cka_p, _, linked_svcca_p = permutation_nulls(x, y, np.random.default_rng(0))
    assert linked_cka_p <= 2 / 101 and linked_svcca_p <= 2 / 101

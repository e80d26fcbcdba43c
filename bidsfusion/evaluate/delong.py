"""DeLong's test of two ROC AUCs measured on the same subjects (DeLong et al. 1988).

Two classifiers scored on one hold-out are correlated: the same subjects are easy or
hard for both. DeLong's structural components give the variance of the difference
of the two AUCs with that correlation, so the test says whether one classifier
beats the other beyond the hold-out's sampling noise.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def structural_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values of ``scores[k, n]`` (k classifiers, n subjects) for labels
    ``y[n]`` (1 positive, 0 negative): ``(v10 [k, positives], v01 [k, negatives])``.

    ``v10[r, i]`` is the fraction of negatives that positive ``i`` outscores under
    classifier ``r`` (ties count half), ``v01[r, j]`` the fraction of positives that
    outscore negative ``j``; each row's mean is that classifier's AUC.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y = np.asarray(y)
    positive, negative = scores[:, y == 1], scores[:, y == 0]
    if positive.shape[1] < 2 or negative.shape[1] < 2:
        raise ValueError("DeLong's variance needs at least two subjects of each class")
    difference = positive[:, :, None] - negative[:, None, :]
    psi = (difference > 0) + 0.5 * (difference == 0)
    return psi.mean(axis=2), psi.mean(axis=1)


def delong_difference(
    y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray
) -> tuple[float, float]:
    """``(AUC_a - AUC_b, its variance)`` of two classifiers' scores of the same subjects."""
    v10, v01 = structural_components(y, np.stack([scores_a, scores_b]))
    contrast = np.array([1.0, -1.0])
    variance = contrast @ np.cov(v10) @ contrast / v10.shape[1]
    variance += contrast @ np.cov(v01) @ contrast / v01.shape[1]
    return float(v10[0].mean() - v10[1].mean()), float(variance)


def p_greater(differences: list[float], variances: list[float]) -> float | None:
    """One-sided p-value that the mean of per-fold AUC differences is above 0: a normal
    test of the mean difference with the mean of the folds' variances, an upper bound of
    the variance of a mean of correlated folds (the hold-out is the same in each).
    None when the variance is 0 and the difference too (identical scores)."""
    mean, variance = float(np.mean(differences)), float(np.mean(variances))
    if variance <= 0.0:
        return None if mean == 0.0 else float(mean < 0.0)
    return float(norm.sf(mean / np.sqrt(variance)))

"""Linear probes: how well a nuisance variable is decoded from features, against its null.

A probe is fitted on the training subjects' features (standardised with their mean and
sd) and scored on the test subjects:

- a categorical variable with two classes: L2 logistic regression (balanced classes), C
  chosen among :data:`CS` by an inner stratified CV of the training subjects
  (``LogisticRegressionCV``, ROC AUC); scored by the test ROC AUC (chance 0.5);
- more classes: the same multinomial probe chosen and scored by balanced accuracy
  (chance 1 / classes);
- a continuous variable: ridge regression of the standardised value, its penalty chosen
  among :data:`ALPHAS` by leave-one-out (``RidgeCV``); scored by the test R^2 (chance 0;
  below 0 when the probe predicts worse than the test mean).

The null is the score of the same fitted probe with the test subjects' values shuffled
(:data:`PERMUTATIONS` times, seeded): its 95th percentile and the permutation p-value
``(1 + count of shuffles at or above the score) / (1 + shuffles)``. It asks whether the
probe's predictions go with the variable on new subjects at all.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold

CS = np.logspace(-4, 4, 9)
"""Inverse penalties of the logistic probes."""
ALPHAS = np.logspace(-3, 5, 17)
"""Penalties of the ridge probes."""
PERMUTATIONS = 1000
INNER_FOLDS = 5
AUC, BALANCED_ACCURACY, R2 = "roc_auc", "balanced_accuracy", "r2"
CHANCE = {AUC: 0.5, R2: 0.0}
"""Chance level of a metric (balanced accuracy: 1 / classes)."""
MIN_TEST = 4
"""The fewest test subjects a probe is scored on."""


@dataclass(frozen=True)
class ProbeScore:
    """A probe's test ``score`` by ``metric`` and that metric's ``chance`` level, the 95th
    percentile of its null, the permutation p-value, and the numbers of training and test
    subjects."""

    metric: str
    chance: float
    score: float
    null: float
    p: float
    n_train: int
    n_test: int


def probe_score(
    x_train: np.ndarray,
    v_train: np.ndarray,
    x_test: np.ndarray,
    v_test: np.ndarray,
    categorical: bool,
    seed: int,
) -> ProbeScore | None:
    """Fit a probe of ``v`` on ``x_train [n, d]`` and score it on ``x_test [m, d]``; None when
    the subjects cannot support one (a class with fewer than 2 training subjects, fewer
    than :data:`MIN_TEST` test subjects, or a test part holding one class or one value)."""
    if categorical:
        v_train, v_test = np.asarray(v_train, dtype=str), np.asarray(v_test, dtype=str)
        seen = np.isin(v_test, np.unique(v_train))
        x_test, v_test = x_test[seen], v_test[seen]
    else:
        v_train, v_test = np.asarray(v_train, float), np.asarray(v_test, float)
    if len(v_test) < MIN_TEST or len(np.unique(v_test)) < 2:
        return None
    mean, sd = x_train.mean(axis=0), x_train.std(axis=0)
    sd[sd == 0] = 1.0
    x_train, x_test = (x_train - mean) / sd, (x_test - mean) / sd
    if categorical:
        fitted = _classifier(x_train, v_train, seed)
        if fitted is None:
            return None
        truth, predicted, metric = _classification(fitted, x_test, v_test)
    else:
        truth, predicted, metric = v_test, _regression(x_train, v_train, x_test), R2
    score = float(_scores(metric, truth[None, :], predicted)[0])
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(truth) for _ in range(PERMUTATIONS)])
    null = _scores(metric, shuffled, predicted)
    p = float((1 + (null >= score - 1e-12).sum()) / (1 + PERMUTATIONS))
    chance = CHANCE.get(metric, 1 / len(np.unique(truth)))
    return ProbeScore(metric, chance, score, float(np.quantile(null, 0.95)), p,
                      len(x_train), len(x_test))  # fmt: skip


def _scores(metric: str, truths: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The score of ``predicted [m]`` against each row of ``truths [k, m]``: ROC AUC (rows
    of booleans, by ranks, ties averaged), R^2, or balanced accuracy."""
    if metric == AUC:
        ranks = rankdata(predicted)
        n1 = truths[0].sum()
        n0 = truths.shape[1] - n1
        return ((truths * ranks[None, :]).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    if metric == R2:
        total = ((truths[0] - truths[0].mean()) ** 2).sum()
        return 1.0 - ((truths - predicted[None, :]) ** 2).sum(axis=1) / total
    return np.array([balanced_accuracy_score(truth, predicted) for truth in truths])


def _classifier(x: np.ndarray, v: np.ndarray, seed: int) -> LogisticRegressionCV | None:
    """The tuned logistic probe, or None when a class has fewer than 2 subjects."""
    smallest = int(np.unique(v, return_counts=True)[1].min())
    if smallest < 2 or len(np.unique(v)) < 2:
        return None
    binary = len(np.unique(v)) == 2
    model = LogisticRegressionCV(
        Cs=CS,
        cv=StratifiedKFold(min(INNER_FOLDS, smallest), shuffle=True, random_state=seed),
        scoring=AUC if binary else BALANCED_ACCURACY,
        class_weight="balanced",
        max_iter=5000,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # scikit-learn 1.8 announces new defaults (l1_ratios, fitted attributes) that leave
        # an L2 probe and the attributes used here (classes_, decision_function) unchanged
        warnings.simplefilter("ignore", FutureWarning)
        return model.fit(x, v)


def _classification(
    model: LogisticRegressionCV, x: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """(truth, prediction, metric): two classes, membership of the second class and the
    decision scores (ROC AUC); more, the classes and the predicted classes (balanced
    accuracy)."""
    if len(model.classes_) == 2:
        return v == model.classes_[1], model.decision_function(x), AUC
    return v, model.predict(x), BALANCED_ACCURACY


def _regression(x_train: np.ndarray, v_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """The ridge probe's predictions of the test values."""
    centre, scale = v_train.mean(), v_train.std() or 1.0
    model = RidgeCV(alphas=ALPHAS).fit(x_train, (v_train - centre) / scale)
    return model.predict(x_test) * scale + centre

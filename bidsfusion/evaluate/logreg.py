"""Linear evaluation of frozen representations (the paper's protocol, section 4).

Per (objective, modality, fold): the labelled subjects (label 1 or 0) of a fold's
``representations.npz``; z standardised with the mean and sd (ddof 0) of the fold's
train subjects; a logistic regression (saga, balanced classes), its C and penalty chosen
by an Optuna TPE study, either on the validation ROC AUC of a fit on the train subjects
(``validation`` tuning: the reference code) or on the mean ROC AUC of an inner stratified
5-fold CV of the train and validation subjects, then fit on both (``cv``: the paper's
text); the final classifier scores the hold-out subjects (ROC AUC, balanced accuracy).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import warnings
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import optuna
import sklearn
from optuna.storages import BaseStorage
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from bidsfusion.errors import InputDataError, InputMissingError, UsageError
from bidsfusion.evaluate.study import complete_trials, open_storage, run_study, study_name
from bidsfusion.fingerprint import digest

log = logging.getLogger("bidsfusion.evaluate")

PROTOCOL = "logreg-1"
"""Version of the search below; part of every study's key (change it with the search)."""

C_RANGE = (1e-6, 1e3)
"""C is drawn log-uniformly in this range."""

PENALTIES = {"l1": 1.0, "l2": 0.0, "elasticnet": None}
"""Penalty name -> its l1_ratio (elastic net: drawn uniformly in [0, 1])."""

MAX_ITER = 20_000
"""saga epochs: enough to converge (tol 1e-4) at every C of the search on standardised
features, measured up to ~9,000 epochs at C = 1e3 on near-collinear features
(benchmarks/evaluate.py); a fit that needs more is reported, not silenced."""

PARTS = ("train", "validation", "holdout")
TUNINGS = ("validation", "cv")
"""How the classifier's hyperparameters are chosen (``--tuning``)."""
CV_FOLDS = 5
"""Inner folds of the ``cv`` tuning (the paper's 5-fold cross-validation)."""

_SKLEARN = ".".join(sklearn.__version__.split(".")[:2])
_PENALTY_DEPRECATED = (  # scikit-learn >= 1.8: the penalty follows l1_ratio
    inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated"
)


@dataclass(frozen=True)
class EvaluationRow:
    """One line of ``group/evaluation.tsv``: the best trial of one study.

    ``l1_ratio`` is the one the classifier used (1.0 for l1, 0.0 for l2); refitting
    :func:`fit` (``C``, ``l1_ratio``, ``seed``, ``tuning``) reproduces the AUCs;
    ``validation_auc`` is the inner CV's mean AUC for the ``cv`` tuning.
    """

    objective: str
    modality: str
    fold: int
    n_train: int
    n_validation: int
    n_holdout: int
    C: float
    penalty: str
    l1_ratio: float
    validation_auc: float
    holdout_auc: float
    holdout_bacc: float
    n_trials: int
    seed: int
    max_iter: int
    study: str
    tuning: str = "validation"


COLUMNS = tuple(f.name for f in fields(EvaluationRow))


@dataclass(frozen=True)
class FoldData:
    """Standardised features ``x[part]`` (n, d float64), labels ``y[part]`` (n, 0/1) and
    subject labels ``subjects[part]`` (n, str) of one modality and fold; ``key`` hashes
    them."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    key: str
    subjects: dict[str, np.ndarray]


def modalities(path: Path) -> list[str]:
    """The modalities of a ``representations.npz`` (its ``z_<modality>`` keys)."""
    return [k[2:] for k in load_representations(Path(path)) if k.startswith("z_")]


def load_fold(path: Path, modality: str, fold: int) -> FoldData:
    """The labelled train, validation and hold-out subjects of one modality.

    Raises InputMissingError (66) when the file cannot be read and InputDataError (65)
    when it lacks the modality, holds non-finite values, or a part lacks a class.
    """
    path = Path(path)
    arrays = load_representations(path)
    if f"z_{modality}" not in arrays:
        found = ", ".join(k[2:] for k in arrays if k.startswith("z_")) or "none"
        raise InputDataError(f"{path} has no z_{modality}; modalities: {found}")
    z, label, role = arrays[f"z_{modality}"], arrays["label"], arrays["role"].astype(str)
    z = z.astype(np.float64)
    if z.ndim != 2 or len(z) != len(label) or not np.isfinite(z).all():
        raise InputDataError(f"{path}: z_{modality} is not a finite (subjects, dims) array")
    data = fold_data(z, label, role, arrays["subject"])
    _check_classes(path, fold, data.y)
    return data


def fold_data(z: np.ndarray, label: np.ndarray, role: np.ndarray, subject: np.ndarray) -> FoldData:
    """The labelled subjects (label 0 or 1) of ``z [n, d]`` by their ``role`` (train,
    validation, holdout), standardised with the train part's mean and sd (ddof 0)."""
    role = np.asarray(role).astype(str)
    parts = {p: (role == p) & np.isin(label, (0, 1)) for p in PARTS}
    mean, sd = z[parts["train"]].mean(axis=0), z[parts["train"]].std(axis=0)
    sd[sd == 0] = 1.0
    x = {p: np.ascontiguousarray((z[m] - mean) / sd) for p, m in parts.items()}
    y = {p: label[m].astype(np.int64) for p, m in parts.items()}
    subjects = {p: subject[m].astype(str) for p, m in parts.items()}
    return FoldData(x, y, _data_key(subject, label, role, z), subjects)


def load_representations(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``representations.npz`` (InputMissingError when unreadable,
    InputDataError when it is not an npz or lacks subject, label or role)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except OSError as error:
        raise InputMissingError(f"cannot read {path}: {error}") from None
    except (ValueError, zipfile.BadZipFile) as error:
        raise InputDataError(
            f"{path} is not a readable .npz ({error}); the group level without --eval-only "
            "writes it again (a trained fold is not retrained)"
        ) from None
    missing = [k for k in ("subject", "label", "role") if k not in arrays]
    if missing:
        raise InputDataError(f"{path} lacks {', '.join(missing)}; rerun the group level")
    return arrays


def _check_classes(path: Path, fold: int, labels: dict[str, np.ndarray]) -> None:
    counts = {p: (int((y == 1).sum()), int((y == 0).sum())) for p, y in labels.items()}
    for part in ("train", "validation"):
        positive, negative = counts[part]
        if not (positive and negative):
            raise InputDataError(
                f"{path}: fold {fold}'s {part} part has {positive} positive and {negative} "
                "negative subjects; both classes are needed: use fewer --folds or check "
                "--positive/--negative"
            )
    positive, negative = counts["holdout"]
    if not (positive and negative):
        raise InputDataError(
            f"{path}: the hold-out has {positive} positive and {negative} negative "
            "subjects; both classes are needed for its ROC AUC: use a larger --holdout"
        )


def _data_key(*arrays: np.ndarray) -> str:
    sha = hashlib.sha256()
    for a in arrays:
        sha.update(f"{a.dtype.str}{a.shape}".encode())
        sha.update(np.ascontiguousarray(a).tobytes())
    return sha.hexdigest()


def classifier(C: float, l1_ratio: float, seed: int) -> LogisticRegression:
    """The protocol's unfitted classifier: saga, balanced classes, intercept,
    ``MAX_ITER`` epochs; the penalty is given by ``l1_ratio`` (0 l2, 1 l1, else
    elastic net), as scikit-learn >= 1.8 asks (older versions get ``penalty``)."""
    options: dict[str, object] = {"l1_ratio": l1_ratio}
    if not _PENALTY_DEPRECATED:
        name = {0.0: "l2", 1.0: "l1"}.get(l1_ratio, "elasticnet")
        options = {"penalty": name, "l1_ratio": l1_ratio if name == "elasticnet" else None}
    return LogisticRegression(
        C=C,
        solver="saga",
        class_weight="balanced",
        fit_intercept=True,
        max_iter=MAX_ITER,
        random_state=seed,
        **options,
    )


def tuning_set(data: FoldData, tuning: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` the final classifier is fit on: the train subjects for ``validation``
    tuning, the train and validation subjects for ``cv`` tuning."""
    if tuning == "validation":
        return data.x["train"], data.y["train"]
    return (
        np.concatenate([data.x["train"], data.x["validation"]]),
        np.concatenate([data.y["train"], data.y["validation"]]),
    )


def fit(
    data: FoldData, C: float, l1_ratio: float, seed: int, tuning: str = "validation"
) -> LogisticRegression:
    """The classifier fit on the standardised subjects of :func:`tuning_set`."""
    return classifier(C, l1_ratio, seed).fit(*tuning_set(data, tuning))


def cv_auc(data: FoldData, C: float, l1_ratio: float, seed: int) -> float:
    """Mean ROC AUC of an inner stratified K-fold CV (K = :data:`CV_FOLDS`, fewer when a
    class has fewer subjects) over the train and validation subjects."""
    x, y = tuning_set(data, "cv")
    splits = min(CV_FOLDS, int(np.bincount(y, minlength=2).min()))
    folds = StratifiedKFold(n_splits=max(splits, 2), shuffle=True, random_state=seed)
    scores = []
    for train, test in folds.split(x, y):
        model = classifier(C, l1_ratio, seed).fit(x[train], y[train])
        scores.append(roc_auc_score(y[test], model.decision_function(x[test])))
    return float(np.mean(scores))


def auc(model: LogisticRegression, data: FoldData, part: str) -> float:
    """ROC AUC of ``model`` on one part."""
    return float(roc_auc_score(data.y[part], model.decision_function(data.x[part])))


def holdout_scores(path: Path, row: EvaluationRow) -> dict[str, tuple[int, float]]:
    """The decision score of every labelled hold-out subject under ``row``'s classifier,
    refit from ``path`` (the fold's ``representations.npz``): subject -> (label, score).

    Empty when the refit does not reproduce the row's hold-out AUC (the representations
    changed since the row was written).
    """
    data = load_fold(path, row.modality, row.fold)
    model = fit(data, row.C, row.l1_ratio, row.seed, row.tuning)
    scores = model.decision_function(data.x["holdout"])
    if abs(roc_auc_score(data.y["holdout"], scores) - row.holdout_auc) > 1e-9:
        return {}
    return {
        s: (int(y), float(score))
        for s, y, score in zip(data.subjects["holdout"], data.y["holdout"], scores, strict=True)
    }


def suggest(trial: optuna.Trial) -> tuple[float, str, float]:
    """``(C, penalty, l1_ratio)`` of a trial, from the search space above."""
    C = trial.suggest_float("C", *C_RANGE, log=True)
    penalty = trial.suggest_categorical("penalty", list(PENALTIES))
    ratio = PENALTIES[penalty]
    return C, penalty, trial.suggest_float("l1_ratio", 0.0, 1.0) if ratio is None else ratio


def evaluate_representations(
    path: Path,
    objective: str,
    fold: int,
    modality: str,
    n_trials: int = 500,
    seed: int = 0,
    storage: str | BaseStorage | None = None,
    tuning: str = "validation",
) -> EvaluationRow:
    """Search, refit and score one (objective, modality, fold); see the module docstring.

    ``storage``: an Optuna RDB URL, an open storage, or None (in memory). A rerun on
    the same storage continues the study to ``n_trials`` COMPLETE trials. ``tuning``:
    ``validation`` (the trials scored on the fold's validation subjects, the classifier fit
    on its train subjects: the reference code) or ``cv`` (scored by an inner CV of train
    and validation, fit on both: the paper's text).
    """
    if tuning not in TUNINGS:
        raise UsageError(f"tuning {tuning!r}: choose one of {', '.join(TUNINGS)}")
    data = load_fold(path, modality, fold)
    record = {"protocol": PROTOCOL, "seed": seed, "data": data.key, "sklearn": _SKLEARN}
    if tuning != "validation":  # the studies of the validation tuning keep their names
        record["tuning"] = tuning
    name = study_name(objective, modality, fold, digest(record))

    def score(trial: optuna.Trial) -> float:
        """The trial's AUC; its classifiers' convergence warnings kept out of the log
        (hundreds a study: the chosen classifier's is logged once, below)."""
        C, _, l1_ratio = suggest(trial)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if tuning == "cv":
                return cv_auc(data, C, l1_ratio, seed)
            return auc(fit(data, C, l1_ratio, seed), data, "validation")

    study = run_study(name, open_storage(storage), score, n_trials, seed)
    C, penalty, l1_ratio = suggest(optuna.trial.FixedTrial(study.best_trial.params))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fit(data, C, l1_ratio, seed, tuning)
    if model.n_iter_.max() >= MAX_ITER:
        log.warning("%s: the best classifier did not converge in %d epochs", name, MAX_ITER)
    if not model.coef_.any():
        log.warning(
            "%s: the best classifier on validation has no nonzero coefficient (every trial "
            "that used the representations scored lower there), so its AUCs are 0.5: these "
            "representations gave the classifier nothing that held on new subjects",
            name,
        )
    row = EvaluationRow(
        objective=objective,
        modality=modality,
        fold=fold,
        **{f"n_{p}": len(data.y[p]) for p in PARTS},
        C=C,
        penalty=penalty,
        l1_ratio=l1_ratio,
        validation_auc=study.best_value if tuning == "cv" else auc(model, data, "validation"),
        holdout_auc=auc(model, data, "holdout"),
        holdout_bacc=float(
            balanced_accuracy_score(data.y["holdout"], model.predict(data.x["holdout"]))
        ),
        n_trials=len(complete_trials(study)),
        seed=seed,
        tuning=tuning,
        max_iter=MAX_ITER,
        study=name,
    )
    log.info("%s: hold-out AUC %.3f, validation %.3f", name, row.holdout_auc, row.validation_auc)
    return row

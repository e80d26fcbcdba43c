"""Does pretraining learn the brain? Objectives told apart on one fixed synthetic dataset.

Runs what a user runs, through the CLI, in ``WORK`` (each stage is reused when its
outputs are there, so an interrupted benchmark continues):

1. ``bidsfusion synth WORK/bids`` (``--subjects``, one session each, 100 volumes,
   ``--ad-fraction``, ``--coupling``, ``--effect-strength``, ``--shared-severity``,
   seed 0), then the participant level into ``WORK/derivatives``;
2. the raw-voxel controls: the derivatives mean-pooled to 32^3, z-scored per volume;
   PCA (10 components) and logistic regression, stratified 5-fold CV ROC AUC of AD
   vs HC (mean and sd over folds) per modality; and cross-modal pair retrieval of
   held-out subjects by PCA + CCA (what a linear method finds shared);
3. one group run with ``--objective Random AE S CL L-CL S-AE Supervised`` (and
   ``--input-size`` (32), ``--epochs``, ``--batch-size``, ``--folds``, ``--holdout``,
   ``--n-trials``);
4. a table per objective: hold-out AUC per modality (mean and sd over folds, and
   DeLong's p-values against Random, from ``evaluation_summary.tsv``, and against AE,
   on the hold-out),
   validation pair retrieval against its chance level (by the latents, and by the
   objective's own critic),
   the shortcut probe, the terms that did not learn (``training_summary.tsv``) and
   the training seconds (``history.tsv``); and the raw-voxel control on the same
   hold-out (PCA + logistic regression fitted on each fold's train subjects, with
   DeLong's p-value against Random).

Targets (issue "Pretraining that learns the brain"): every self-supervised objective
beats Random by more than the fold sd in at least one modality; S and CL retrieval
reach 5x chance. The defaults (160 subjects, half of them the hold-out) make the
hold-out large enough for DeLong's test to tell objectives apart: with 80 subjects
and a 20 % hold-out (16 AD or HC) even a gain of 0.07 AUC had p = 0.23. About an hour
on 2 CPU cores (synthesis 4 min, participant level 16 min, training 37 min)::

    python benchmarks/learning.py /tmp/learning

Where fusion can help (issue "The paper's second half"): no per-modality AD effect, only
the severity both modalities show weakly, each with its own noise (``synth
--shared-severity``), at 16^3 (about 40 minutes for 120 subjects)::

    python benchmarks/learning.py /tmp/severity --subjects 120 --effect-strength 0 \
        --shared-severity 2 --input-size 16 \
        --objective Random AE S L-CL S-AE Supervised
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from bidsfusion.layout import GroupLayout

RAW = "raw voxels"
"""The raw-voxel control's name among the objectives' hold-out scores."""
OBJECTIVES = ("Random", "AE", "S", "CL", "L-CL", "S-AE", "Supervised")
MAPS = {
    "T1w": "anat/*_space-MNI152NLin2009aSym_res-3mm_desc-brain_T1w.nii.gz",
    "falff": "func/*_space-MNI152NLin2009aSym_res-3mm_stat-falff_boldmap.nii.gz",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="folder for the dataset and every output")
    parser.add_argument("--subjects", type=int, default=160)
    parser.add_argument("--ad-fraction", type=float, default=0.4)
    parser.add_argument("--coupling", type=float, default=3.0, help="synth --coupling")
    parser.add_argument("--effect-strength", type=float, default=3.0, help="synth option")
    parser.add_argument("--shared-severity", type=float, default=0.0, help="synth option")
    parser.add_argument("--input-size", type=int, default=32, help="group --input-size")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--holdout", type=float, default=0.5, help="group --holdout")
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--objective", nargs="+", default=list(OBJECTIVES))
    parser.add_argument("--group-option", action="append", default=[], help="extra group option")
    return parser


def _run(*args: object) -> float:
    """Run ``bidsfusion ARGS``; its seconds. Exits with its code when it fails."""
    command = [sys.executable, "-m", "bidsfusion", *map(str, args)]
    print("$", " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    code = subprocess.call(command)
    if code:
        sys.exit(f"benchmark: {' '.join(command[2:])} exited {code}")
    return time.perf_counter() - started


def prepare(work: Path, args: argparse.Namespace) -> Path:
    """The synthetic dataset and its participant-level derivatives (made once)."""
    bids, derivatives = work / "bids", work / "derivatives"
    if not bids.exists():
        seconds = _run("synth", bids, "--subjects", args.subjects, "--sessions", 1,
                       "--volumes", 100, "--ad-fraction", args.ad_fraction,
                       "--coupling", args.coupling,
                       "--effect-strength", args.effect_strength,
                       "--shared-severity", args.shared_severity)  # fmt: skip
        print(f"synth: {seconds:.0f} s", flush=True)
    _check_generator(bids, args)
    if not (derivatives / "qc.tsv").exists():
        seconds = _run(bids, derivatives, "participant", "-w", work / "work", "--nprocs", 2)
        print(f"participant level: {seconds:.0f} s for {args.subjects} subjects", flush=True)
    return derivatives


def _check_generator(bids: Path, args: argparse.Namespace) -> None:
    """Exit naming ``bids`` unless ``bidsfusion synth`` made it with this run's settings
    (a ``WORK`` of an earlier benchmark with other ``--subjects``, say)."""
    from bidsfusion.synth.dataset import generator_entry, synth_settings

    expected = generator_entry(
        synth_settings(
            n_subjects=args.subjects, seed=0, max_sessions=1, n_volumes=100,
            ad_fraction=args.ad_fraction, coupling=args.coupling,
            effect_strength=args.effect_strength, shared_severity=args.shared_severity,
        )
    )  # fmt: skip
    try:
        description = json.loads((bids / "dataset_description.json").read_text())
        found = description["GeneratedBy"][0]
    except (OSError, ValueError, KeyError, IndexError) as error:
        sys.exit(f"benchmark: {bids} is not a dataset of bidsfusion synth ({error!r})")
    if found != expected:
        sys.exit(
            f"benchmark: {bids} was made with other settings or another bidsfusion "
            f"({found}); use another WORK for --subjects {args.subjects} "
            f"--ad-fraction {args.ad_fraction} --coupling {args.coupling} "
            f"--effect-strength {args.effect_strength} "
            f"--shared-severity {args.shared_severity}"
        )


def _diagnoses(bids: Path) -> dict[str, str]:
    with (bids / "participants.tsv").open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {r["participant_id"]: r["diagnosis"] for r in rows}


def raw_voxel_auc(work: Path) -> dict[str, tuple[float, float]]:
    """Per modality: (mean, sd) over 5 stratified folds of the PCA + LR ROC AUC."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    groups = {s: g for s, g in _diagnoses(work / "bids").items() if g in ("AD", "HC")}
    y = np.array([groups[s] == "AD" for s in sorted(groups)], dtype=int)
    out = {}
    for modality, pattern in MAPS.items():
        x = np.stack([_pooled(work / "derivatives" / s, pattern) for s in sorted(groups)])
        aucs = []
        for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
            model = _pca_logistic(len(train))
            model.fit(x[train], y[train])
            aucs.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
        out[modality] = (float(np.mean(aucs)), float(np.std(aucs)))
    return out


def objective_scores(work: Path) -> dict[tuple[str, str, int], dict[str, tuple[int, float]]]:
    """(objective, modality, fold) -> the hold-out subjects' (label, decision score) under
    the evaluation's classifier (:func:`~bidsfusion.evaluate.holdout_scores`)."""
    from bidsfusion.evaluate import holdout_scores, read_evaluation

    layout = GroupLayout.of(work / "derivatives")
    return {
        (r.objective, r.modality, r.fold): holdout_scores(
            layout.fold(r.objective, r.fold).representations, r
        )
        for r in read_evaluation(layout.evaluation)
    }


def raw_voxel_holdout(
    work: Path, scores: dict[tuple[str, str, int], dict[str, tuple[int, float]]]
) -> dict[str, tuple[float, float, float | None]]:
    """Per modality: the hold-out ROC AUC of PCA (10) + logistic regression fitted on
    each fold's train subjects (the ones the objectives' classifiers are fitted on) and
    scored on the group run's hold-out, its mean and sd over folds, and DeLong's
    p-value that it beats ``Random`` on the same subjects, as the summary tests each
    objective (:func:`~bidsfusion.evaluate.summary.p_vs_control`; None without
    Random's rows). Adds the raw voxels' hold-out scores to ``scores``."""
    from sklearn.metrics import roc_auc_score

    from bidsfusion.evaluate.summary import p_vs_control

    layout = GroupLayout.of(work / "derivatives")
    splits = json.loads(layout.splits.read_text())
    groups = {s.removeprefix("sub-"): g for s, g in _diagnoses(work / "bids").items()}
    groups = {s: g for s, g in groups.items() if g in ("AD", "HC")}
    holdout = sorted(set(splits["holdout"]) & set(groups))
    y = np.array([groups[s] == "AD" for s in holdout], dtype=int)
    out = {}
    folds = list(range(len(splits["folds"])))
    for modality, pattern in MAPS.items():
        x = {s: _pooled(work / "derivatives" / f"sub-{s}", pattern) for s in groups}
        for fold, members in enumerate(splits["folds"]):
            train = [s for s in members["train"] if s in groups]
            model = _pca_logistic(len(train))
            model.fit([x[s] for s in train], [groups[s] == "AD" for s in train])
            found = model.decision_function([x[s] for s in holdout])
            scores[RAW, modality, fold] = {s: (int(y[i]), found[i]) for i, s in enumerate(holdout)}
        aucs = [roc_auc_score(y, [scores[RAW, modality, f][s][1] for s in holdout]) for f in folds]
        p = p_vs_control(scores, RAW, modality, folds)
        out[modality] = (float(np.mean(aucs)), float(np.std(aucs, ddof=1)), p)
    return out


def raw_voxel_retrieval(
    work: Path, n_components: int = 20, repeats: int = 10
) -> tuple[float, int, int, int]:
    """Cross-modal pair retrieval by raw voxels: PCA (``n_components`` per modality, fewer
    than the train subjects) and CCA (5 pairs at most) fitted on 75 % of the subjects,
    top-1 retrieval (cosine, both directions) among the other 25 %, averaged over
    ``repeats`` random splits; the number of subjects it retrieves among; the PCA and
    CCA sizes used."""
    from sklearn.cross_decomposition import CCA
    from sklearn.decomposition import PCA

    subjects = sorted(_diagnoses(work / "bids"))
    x = {
        m: np.stack([_pooled(work / "derivatives" / s, p) for s in subjects])
        for m, p in MAPS.items()
    }
    rng = np.random.default_rng(0)
    found = []
    for _ in range(repeats):
        order = rng.permutation(len(subjects))
        train, test = order[: len(order) * 3 // 4], order[len(order) * 3 // 4 :]
        k = min(n_components, len(train) - 1)
        a, b = (PCA(k, random_state=0).fit(x[m][train]).transform(x[m]) for m in MAPS)
        cca = CCA(min(5, k), max_iter=5000).fit(a[train], b[train])
        u, v = cca.transform(a[test], b[test])
        found.append(_top1(u, v))
    return float(np.mean(found)), len(test), k, min(5, k)


def _pca_logistic(n_train: int) -> object:
    """PCA (10 components, fewer when there are fewer than 11 train subjects) and
    logistic regression, seeded."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        PCA(min(10, n_train - 1), random_state=0), LogisticRegression(max_iter=5000)
    )


def _top1(u: np.ndarray, v: np.ndarray) -> float:
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    scores, truth = u @ v.T, np.arange(len(u))
    return float(((scores.argmax(1) == truth).mean() + (scores.argmax(0) == truth).mean()) / 2)


@functools.cache
def _pooled(subject: Path, pattern: str) -> np.ndarray:
    """One subject's map mean-pooled 2x2x2 to 32^3, z-scored, flattened (read once: every
    control uses it)."""
    (path,) = subject.glob(f"ses-*/{pattern}")
    data = np.asarray(nib.load(path).dataobj, dtype=np.float64)
    pooled = data.reshape(32, 2, 32, 2, 32, 2).mean(axis=(1, 3, 5)).ravel()
    return (pooled - pooled.mean()) / pooled.std()


def train_all(work: Path, args: argparse.Namespace) -> float:
    """One group run over every objective; its seconds."""
    options = ["--input-size", args.input_size, "--epochs", args.epochs,
               "--batch-size", args.batch_size, "--folds", args.folds,
               "--n-trials", args.n_trials, "--holdout", args.holdout,
               *[o for option in args.group_option for o in option.split()]]  # fmt: skip
    return _run(work / "bids", work / "derivatives", "group", "-w", work / "work",
                "--objective", *args.objective, *options)  # fmt: skip


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def report(
    work: Path,
    raw: dict[str, tuple[float, float]],
    raw_holdout: dict[str, tuple[float, float, float | None]],
    raw_retrieval: tuple[float, int, int, int],
    objectives: list[str],
    scores: dict[tuple[str, str, int], dict[str, tuple[int, float]]],
) -> str:
    """The benchmark's table as Markdown; the AUC cells give DeLong's p against Random
    and, from the hold-out ``scores``, against AE."""
    from bidsfusion.evaluate.summary import p_vs_control

    layout = GroupLayout.of(work / "derivatives")
    folds = sorted({fold for _, _, fold in scores})
    auc = {(r["objective"], r["modality"]): r for r in _table(layout.evaluation_summary)}
    training = _table(layout.training_summary)
    lines = [
        "| objective | hold-out AUC T1w | hold-out AUC fALFF | val retrieval (chance) "
        "| critic retrieval | probe shared / independent | not learned | train s/fold |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| raw voxels (PCA 10 + LR, 5-fold CV) | {raw['T1w'][0]:.3f} +- {raw['T1w'][1]:.3f} "
        f"| {raw['falff'][0]:.3f} +- {raw['falff'][1]:.3f} "
        f"| {raw_retrieval[0]:.3f} (PCA {raw_retrieval[2]} + CCA {raw_retrieval[3]}, "
        f"{raw_retrieval[1]} held out: "
        f"chance {1 / raw_retrieval[1]:.3f}) | | | | |",
        "| raw voxels (PCA 10 + LR on each fold's train subjects, on the hold-out) | "
        + " | ".join(_raw_cell(*raw_holdout[m]) for m in MAPS)
        + " | | | | | |",
    ]
    for spec in objectives:
        cells = []
        for modality in MAPS:
            row = auc.get((spec, modality))
            p_ae = p_vs_control(scores, spec, modality, folds, control="AE")
            cells.append(_auc_cell(row, p_ae) if row else "-")
        rows = [r for r in training if r["objective"] == spec]
        if rows:
            retrieval = np.mean([float(r["validation_retrieval"] or "nan") for r in rows])
            chance = np.mean([float(r["retrieval_chance"] or "nan") for r in rows])
            critic = [float(r["critic_retrieval"]) for r in rows if r["critic_retrieval"] != "n/a"]
            shared = np.mean([float(r["probe_shared"]) for r in rows])
            independent = np.mean([float(r["probe_independent"]) for r in rows])
            terms = {t for r in rows for t in r["unlearned"].split() if t != "n/a"}
            unlearned = " ".join(sorted(terms))
            seconds = np.mean([_seconds(layout.fold(spec, int(r["fold"])).history)
                               for r in rows])  # fmt: skip
            cells += [f"{retrieval:.3f} ({chance:.3f})",
                      f"{np.mean(critic):.3f}" if critic else "-",
                      f"{shared:.2f} / {independent:.2f}",
                      unlearned or "-", f"{seconds:.0f}"]  # fmt: skip
        else:
            cells += ["-", "-", "-", "-", "-"]
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _auc_cell(row: dict[str, str], p_ae: float | None) -> str:
    """``0.860 +- 0.040 (p 0.23, vs AE 0.41)``: mean and sd over folds, DeLong's p
    against Random and against AE."""
    p = row.get("p_vs_random", "n/a")
    ps = ([] if p in ("n/a", "") else [f"p {float(p):.2f}"]) + (
        [] if p_ae is None else [f"vs AE {p_ae:.2f}"]
    )
    p_text = f" ({', '.join(ps)})" if ps else ""
    return f"{float(row['holdout_auc_mean']):.3f} +- {float(row['holdout_auc_sd']):.3f}{p_text}"


def _raw_cell(mean: float, sd: float, p: float | None) -> str:
    return f"{mean:.3f} +- {sd:.3f}" + ("" if p is None else f" (p {p:.2f})")


def _seconds(history: Path) -> float:
    return sum(float(r["seconds"]) for r in _table(history))


def main() -> None:
    args = _parser().parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args)
    raw = raw_voxel_auc(args.work)
    raw_retrieval = raw_voxel_retrieval(args.work)
    print(f"raw voxels: {raw}, cross-modal retrieval {raw_retrieval[0]:.3f} among "
          f"{raw_retrieval[1]}", flush=True)  # fmt: skip
    seconds = train_all(args.work, args)
    print(f"group level: {seconds:.0f} s", flush=True)
    scores = objective_scores(args.work)
    raw_holdout = raw_voxel_holdout(args.work, scores)
    print(report(args.work, raw, raw_holdout, raw_retrieval, args.objective, scores))


if __name__ == "__main__":
    main()

"""The group level: pretrain encoders on the participant-level derivatives, evaluate them.

Steps: check the objective specs and their options, the work directory and the Optuna
storage; find, cache, label and pair the derivatives (``group/pairs.tsv``); split
subjects into a stratified hold-out and CV folds (``group/splits.json``); pretrain
every spec on every fold (:mod:`bidsfusion.train.pretrain`); evaluate every
(spec, modality, fold) by Optuna-tuned logistic regression
(:mod:`bidsfusion.evaluate`): ``group/evaluation.tsv``, ``evaluation_summary.tsv``
and the summary table on stdout; then run the selected analyses
(:mod:`bidsfusion.analyses`); last, ``group/report.html`` (:mod:`bidsfusion.report`),
also when an analysis failed. ``--eval-only`` skips to the evaluation of the
representations already written.

``--fold K`` trains and evaluates the folds given only, and skips the analyses, which
summarise the whole cross-validation: independent jobs train (objective, fold) pairs
into one OUTPUT_DIR, and a last run without ``--fold`` (``--eval-only``) evaluates
every fold and runs the analyses. Under ``torchrun`` every process trains
(:mod:`bidsfusion.train.distributed`); rank 0 alone writes, evaluates and analyses.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bidsfusion import __version__
from bidsfusion.analyses.run import run_analyses, selected_analyses
from bidsfusion.atomic import locked, write_text
from bidsfusion.bids import check_dataset
from bidsfusion.config import RunConfig
from bidsfusion.errors import BidsFusionError, InputDataError, InputMissingError, UsageError
from bidsfusion.locations import check_locations, check_work_dir, is_bidsfusion_dataset
from bidsfusion.modality import Modality
from bidsfusion.plugins import registered
from bidsfusion.train.distributed import barrier, is_main, process_group

log = logging.getLogger("bidsfusion.group")

ALL_DIM = "all-dim"
PAPER = "paper"
RANDOM = "Random"
PAPER_BASELINES = ("AE", "S-AE", "DCCAE", "L-CCA", "MMVAE", "Supervised")
"""The paper's baselines beside the 15 DIM combinations (Fig. 2)."""


def run(config: RunConfig) -> None:
    """Pretrain and evaluate every requested objective on every fold (``OUTPUT_DIR/group``)."""
    check_dataset(config.bids_dir)
    check_locations(config.bids_dir, config.output_dir, config.work_dir)
    specs = objective_specs(config.objective)
    options = objective_options(config.objective_option, specs)
    modalities = selected_modalities(config.modality)
    _build_once(config, specs, options, [m.name for m in modalities])
    analyses = selected_analyses(config.analysis)
    group_dir = config.output_dir / "group"
    check_work_dir(config.work)
    _limit_threads(config.omp_nthreads or config.nprocs)
    with process_group(config.device, config.dist_timeout):
        main = is_main()
        storage = _storage(config) if main else None
        if config.eval_only:
            inputs, splits = None, _trained_splits(config, specs, group_dir)
        else:
            inputs, splits = _pretrain(config, specs, options, modalities, group_dir)
    if not main:
        return  # the other processes of a distributed run only train
    folds = selected_folds(config.fold, splits.n_folds)
    evaluation = _evaluate(config, specs, folds, group_dir, storage)
    if len(folds) < splits.n_folds and analyses:
        log.info("analyses skipped: they need every fold; run without --fold for them")
        analyses = {}
    try:
        if analyses:
            context = _analysis_context(
                config, specs, modalities, group_dir, inputs, splits, evaluation
            )
            run_analyses(analyses, context)
    except BidsFusionError:
        _report(group_dir)
        raise
    _report(group_dir)


def objective_specs(requested: Sequence[str]) -> list[str]:
    """Validated specs, ``all-dim`` and ``paper`` expanded; unknown terms raise (exit 64)."""
    from bidsfusion.objectives.compose import expand_all_dim, parse_spec

    if not requested:
        raise UsageError(
            "the group level needs at least one --objective, e.g. --objective L-CL (or all-dim)"
        )
    registry = registered("objectives")
    expansions = {
        ALL_DIM: expand_all_dim(),
        PAPER: [*expand_all_dim(), *PAPER_BASELINES, RANDOM],
    }
    specs: list[str] = []
    for spec in requested:
        for one in expansions.get(spec, [spec]):
            if one != RANDOM:
                parse_spec(one, registry)
            specs.append(one)
    return list(dict.fromkeys(specs))


def selected_modalities(requested: Sequence[str]) -> list[Modality]:
    """The registered modalities of ``--modality``, in order, each once; an unknown name or
    fewer than two: UsageError (64) listing the registered ones."""
    registry = registered("modalities")
    known = ", ".join(sorted(registry))
    unknown = [name for name in requested if name not in registry]
    if unknown:
        raise UsageError(f"unknown --modality {', '.join(unknown)}; registered: {known}")
    names = list(dict.fromkeys(requested))
    if len(names) < 2:
        raise UsageError(
            f"--modality {' '.join(names) or '(none)'}: the group level fuses at least two "
            f"modalities; registered: {known}"
        )
    return [registry[name] for name in names]


def objective_options(
    assignments: Sequence[str], specs: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``--objective-option`` values by term, checked against the terms of ``specs``."""
    from bidsfusion.objectives.compose import parse_spec
    from bidsfusion.objectives.options import term_options

    registry = registered("objectives")
    terms = [t for spec in specs if spec != RANDOM for t in parse_spec(spec, registry)]
    return term_options(assignments, terms, registry)


def _build_once(
    config: RunConfig,
    specs: Sequence[str],
    options: Mapping[str, Mapping[str, Any]],
    modalities: list[str],
) -> None:
    """Build the model and every objective once, so a value a factory refuses (exit 64)
    fails before any work."""
    from bidsfusion.objectives.compose import build_objective, parse_spec
    from bidsfusion.train.pretrain import build_model

    registry = registered("objectives")
    model = build_model(config, modalities)
    dims = model.dims(config.latent_dim)
    for spec in specs:
        if spec != RANDOM:
            used = {t: options[t] for t in parse_spec(spec, registry) if t in options}
            build_objective(spec, modalities, dims, registry, used)


def selected_folds(requested: Sequence[int], n_folds: int) -> list[int]:
    """The folds of ``--fold`` (sorted, each once), every fold when none is given; a fold
    the splits do not have: UsageError (64)."""
    unknown = sorted({k for k in requested if not 0 <= k < n_folds})
    if unknown:
        raise UsageError(
            f"--fold {' '.join(map(str, unknown))}: the splits have folds 0 to {n_folds - 1}"
        )
    return sorted(set(requested)) or list(range(n_folds))


def _check_earlier_splits(
    group_dir: Path, splits: Any, specs: Sequence[str], folds: Sequence[int]
) -> None:
    """UsageError (64) when ``group/splits.json`` holds other splits than ``splits`` and
    folds that this run does not retrain were trained on them: their evaluation rows,
    training summary and analyses would sit beside this run's, on another hold-out."""
    from bidsfusion.data.splits import Splits
    from bidsfusion.train.pretrain import representations_path

    path = group_dir / "splits.json"
    if not path.exists():
        return
    try:
        if Splits.from_json(path) == splits:
            return
    except BidsFusionError:
        pass
    retrained = {representations_path(group_dir, s, k).parent for s in specs for k in folds}
    earlier = sorted(
        f"{run.parent.name.removeprefix('objective-')} {run.name}"
        for run in group_dir.glob("objective-*/fold-*")
        if run not in retrained and run.is_dir() and any(run.iterdir())
    )
    if earlier:
        raise UsageError(
            f"{path} holds other splits than this run's (--holdout, --folds, --seed or the "
            f"subjects differ) and {', '.join(earlier)} were trained on them: rerun with the "
            "settings in group/config.toml, retrain them with this run (--objective, --fold), "
            "remove their folders, or choose another OUTPUT_DIR"
        )


def _storage(config: RunConfig) -> Any:
    """The Optuna storage (``--optuna-storage``, else a journal file in the work dir),
    opened now so a bad URL fails before any training (73)."""
    from bidsfusion.evaluate import journal_storage, open_storage

    if config.optuna_storage:
        return open_storage(config.optuna_storage)
    return journal_storage(config.work / "optuna.journal")


def _limit_threads(n: int) -> None:
    """Threads of torch's intra-op pool (``--omp-nthreads``, else ``--nprocs``)."""
    import torch

    torch.set_num_threads(n)


def _pretrain(
    config: RunConfig,
    specs: Sequence[str],
    options: Mapping[str, Mapping[str, Any]],
    modalities: Sequence[Modality],
    group_dir: Path,
) -> tuple[Any, Any]:
    """Pairs, splits and pretraining of every spec on the selected folds; the inputs and
    splits. Rank 0 caches the volumes before the other ranks read them, and writes the
    tables once every rank found the earlier splits compatible."""
    from bidsfusion.data.group_inputs import load_group_inputs
    from bidsfusion.data.pairs import write_pairs_tsv
    from bidsfusion.data.splits import make_splits
    from bidsfusion.train.pretrain import pretrain_all
    from bidsfusion.train.settings import resolve_device

    device = resolve_device(config.device)
    if not is_main():
        barrier()  # until rank 0 has cached the volumes
    inputs = load_group_inputs(config, modalities, group_dir, write=False)
    if is_main():
        barrier()
    evaluated = sorted({p.subject for p in inputs.pairs})
    splits = make_splits(
        evaluated,
        [inputs.groups[s] for s in evaluated],
        config.folds,
        config.holdout,
        config.seed,
        evaluated_groups=(config.positive, config.negative),
    )
    folds = selected_folds(config.fold, splits.n_folds)
    _check_earlier_splits(group_dir, splits, specs, folds)
    barrier()  # every rank has compared with the earlier splits.json before it is replaced
    if is_main():
        write_pairs_tsv(inputs.pairs, inputs.groups, group_dir / "pairs.tsv")
        splits.to_json(group_dir / "splits.json")
        write_text(group_dir / "config.toml", _config_record(config, specs, options))
    pretrain_all(config, specs, inputs, splits, group_dir, options, device, folds)
    return inputs, splits


def _trained_splits(config: RunConfig, specs: Sequence[str], group_dir: Path) -> Any:
    """``--eval-only``: the splits of ``splits.json``, every spec's representations of
    the selected folds present (else exit 66 naming the folder)."""
    from bidsfusion.data.splits import Splits
    from bidsfusion.train.pretrain import representations_path

    if not is_bidsfusion_dataset(config.output_dir) or not (group_dir / "splits.json").exists():
        raise InputMissingError(
            f"{group_dir / 'splits.json'} is missing: --eval-only evaluates representations "
            "a group run wrote; run the group level without --eval-only first"
        )
    try:
        splits = Splits.from_json(group_dir / "splits.json")
    except InputDataError as error:
        raise InputDataError(
            f"{error}; the group level without --eval-only, with the options it was trained "
            "with, writes it again"
        ) from None
    _warn_unused_split_options(config, splits)
    found = []
    for spec in specs:
        for fold in selected_folds(config.fold, splits.n_folds):
            path = representations_path(group_dir, spec, fold)
            if not path.is_file():
                raise InputMissingError(
                    f"{path.parent} holds no {path.name}: train {spec} first (the group "
                    "level without --eval-only)"
                )
            found.append(path)
    _warn_changed_derivatives(group_dir, found)
    return splits


def _warn_changed_derivatives(group_dir: Path, representations: Sequence[Path]) -> None:
    """``--eval-only``: warn when a derivative of ``pairs.tsv`` changed after the oldest of
    ``representations`` was written (they encode the earlier data)."""
    from bidsfusion.tsv import read_tsv

    try:
        columns, rows = read_tsv(group_dir / "pairs.tsv")
    except BidsFusionError:
        return
    paths = {Path(r[c]) for r in rows for c in columns if c.startswith("path_") and r[c]}
    stamps = {p: p.stat().st_mtime_ns for p in paths if p.is_file()}
    written, oldest = min((p.stat().st_mtime_ns, p) for p in representations)
    changed = [p for p, t in stamps.items() if t > written]
    if changed:
        log.warning(
            "%d derivative(s) changed after %s was trained (e.g. %s): --eval-only evaluates "
            "representations of the earlier data; rerun without --eval-only to retrain",
            len(changed),
            oldest.parent.relative_to(group_dir),
            max(changed, key=stamps.__getitem__),
        )


def _warn_unused_split_options(config: RunConfig, splits: Any) -> None:
    """``--eval-only`` keeps the trained splits: say so when ``--folds`` or the hold-out
    size of ``--holdout`` (a count, or a fraction of the subjects) differs."""
    differing = []
    if config.folds != splits.n_folds:
        differing.append(f"--folds {config.folds}")
    first = splits.folds[0]
    n_subjects = len(splits.holdout) + len(first.train) + len(first.validation)
    size = config.holdout
    if isinstance(size, float):
        size = math.ceil(size * n_subjects)
    if size != len(splits.holdout):
        differing.append(f"--holdout {config.holdout}")
    if differing:
        log.warning(
            "--eval-only evaluates the trained splits of splits.json (%d folds, %d hold-out "
            "subjects), not %s: retrain without --eval-only for other splits",
            splits.n_folds,
            len(splits.holdout),
            " and ".join(differing),
        )


def _evaluate(
    config: RunConfig, specs: Sequence[str], folds: Sequence[int], group_dir: Path, storage: Any
) -> list[Any]:
    """Evaluate every (spec, modality, fold of ``folds``); write the tables (with the rows
    of other objectives and folds already there); print the summary; the rows of
    ``evaluation.tsv`` (none without a hold-out)."""
    from bidsfusion.evaluate import (
        evaluate_representations,
        modalities,
        summary_table,
        write_evaluation,
    )
    from bidsfusion.train.pretrain import representations_path

    if not config.holdout:
        log.warning("no hold-out subjects (--holdout 0): the evaluation is skipped")
        return []
    rows = []
    for spec in specs:
        for fold in folds:
            path = representations_path(group_dir, spec, fold)
            for modality in modalities(path):
                rows.append(
                    evaluate_representations(
                        path, spec, fold, modality, config.n_trials, config.seed, storage
                    )
                )
    with locked(group_dir / ".evaluation.lock"):
        rows = _merged(rows, group_dir / "evaluation.tsv")
        scores = _holdout_scores(rows, group_dir)
        write_evaluation(rows, group_dir, scores)
    sys.stdout.write(summary_table(rows, scores) + "\n")
    return rows


def _holdout_scores(rows: Sequence[Any], group_dir: Path) -> dict[tuple[str, str, int], Any]:
    """The hold-out decision scores of every row with a Random row of the same modality and
    fold to compare with, refit from its representations (a row whose representations
    are gone or changed has none: its p-value against Random is n/a)."""
    from bidsfusion.evaluate import holdout_scores
    from bidsfusion.train.pretrain import representations_path

    controls = {(r.modality, r.fold) for r in rows if r.objective == RANDOM}
    scores, unreadable = {}, set()
    for row in rows:
        path = representations_path(group_dir, row.objective, row.fold)
        if path in unreadable or (row.modality, row.fold) not in controls:
            continue
        try:
            found = holdout_scores(path, row)
        except BidsFusionError as error:
            unreadable.add(path)
            log.warning("%s; the p-values against Random leave this fold out", error)
            continue
        if not found:
            log.warning(
                "%s no longer gives the hold-out AUC of its %s row in evaluation.tsv (its "
                "fold was retrained since): no p-value against Random from it; rerun with "
                "--eval-only",
                path,
                row.modality,
            )
        scores[row.objective, row.modality, row.fold] = found
    return scores


def _analysis_context(
    config: RunConfig,
    specs: Sequence[str],
    modalities: Sequence[Modality],
    group_dir: Path,
    inputs: Any,
    splits: Any,
    evaluation: Sequence[Any],
) -> Any:
    """The :class:`~bidsfusion.analyses.context.AnalysisContext` of this run (the inputs
    loaded again after ``--eval-only``)."""
    from bidsfusion.analyses.context import AnalysisContext
    from bidsfusion.data.group_inputs import load_group_inputs
    from bidsfusion.train.settings import resolve_device

    if inputs is None:
        inputs = load_group_inputs(config, modalities, group_dir)
    device = resolve_device(config.device)
    return AnalysisContext(
        config, group_dir, inputs, splits, tuple(specs), tuple(evaluation), device
    )


def _report(group_dir: Path) -> None:
    """Write ``group/report.html`` (:mod:`bidsfusion.report`) and log its path."""
    from bidsfusion.report.html import write_report

    log.info("report: %s", write_report(group_dir))


def _merged(rows: Sequence[Any], table: Path) -> list[Any]:
    """``rows`` plus the rows of ``table`` for other (objective, fold): the results of jobs
    that evaluated other objectives or folds into the same OUTPUT_DIR (the rows of an
    (objective, fold) evaluated now are all replaced, those of modalities no longer fused too)."""
    from bidsfusion.evaluate import read_evaluation

    if not table.exists():
        return list(rows)
    try:
        earlier = read_evaluation(table)
    except BidsFusionError as error:
        log.warning(
            "%s; rewriting it with this run's rows only (--eval-only with every objective "
            "evaluates the others again)",
            error,
        )
        return list(rows)
    mine = {(r.objective, r.fold) for r in rows}
    kept = [r for r in earlier if (r.objective, r.fold) not in mine]
    return [*kept, *rows]


def _config_record(
    config: RunConfig, specs: Sequence[str], options: Mapping[str, Mapping[str, Any]]
) -> str:
    import tomli_w
    import torch

    record = {
        "expanded_objectives": list(specs),
        "objective_options": {term: dict(values) for term, values in options.items()},
        "versions": {"bidsfusion": __version__, "torch": torch.__version__},
    }
    return config.to_toml() + tomli_w.dumps(record)

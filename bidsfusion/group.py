"""The group level: pretrain encoders on the participant-level derivatives, evaluate them.

A short sequence of stages sharing one :class:`GroupRun`, built once before any work (the
objective specs parsed, every model and objective built, the modalities, analyses, work
directory and device checked):

1. inputs: find, cache, label and pair the derivatives (:mod:`bidsfusion.data.group_inputs`);
2. splits: a stratified hold-out and CV folds, checked against earlier runs' splits
   (``group/pairs.tsv``, ``splits.json``, ``config.toml``: :mod:`bidsfusion.data.splits`);
3. pretrain and encode: every spec on every selected fold (:mod:`bidsfusion.train.pretrain`);
4. evaluate: every (spec, modality, fold) by Optuna-tuned logistic regression, merged with
   earlier jobs' rows (:mod:`bidsfusion.evaluate.run`), the summary on stdout;
5. analyses: the selected ones (:mod:`bidsfusion.analyses.run`);
6. report: ``group/report.html`` (:mod:`bidsfusion.report`), also when an analysis failed.

``--eval-only`` replaces 1-3 by the splits and representations already written
(:mod:`bidsfusion.evaluate.trained`). ``--fold K`` trains and evaluates the folds given
only and skips the analyses, which summarise the whole cross-validation: independent jobs
train (objective, fold) pairs into one OUTPUT_DIR, and a last run without ``--fold``
(``--eval-only``) evaluates every fold and runs the analyses. Under ``torchrun`` every
process trains (:mod:`bidsfusion.train.distributed`); rank 0 alone writes, evaluates and
analyses.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bidsfusion import __version__
from bidsfusion.analyses.context import AnalysisContext
from bidsfusion.analyses.run import run_analyses, selected_analyses
from bidsfusion.atomic import write_text
from bidsfusion.bids import check_dataset
from bidsfusion.config import RunConfig
from bidsfusion.data.group_inputs import GroupInputs, load_group_inputs, selected_modalities
from bidsfusion.data.pairs import write_pairs_tsv
from bidsfusion.data.splits import Splits, check_earlier_splits, make_splits, selected_folds
from bidsfusion.errors import BidsFusionError, UsageError
from bidsfusion.evaluate.run import Evaluation, run_evaluation
from bidsfusion.evaluate.study import journal_storage, open_storage
from bidsfusion.evaluate.summary import summary_table
from bidsfusion.evaluate.trained import note_ignored_flags, trained_settings, trained_splits
from bidsfusion.layout import FoldFiles, GroupLayout
from bidsfusion.locations import check_locations, check_work_dir
from bidsfusion.modality import Modality
from bidsfusion.models.folder import settings_for
from bidsfusion.objectives.compose import Registry
from bidsfusion.objectives.specs import ObjectiveSpec, objective_specs
from bidsfusion.objectives.untrained import CONTROL
from bidsfusion.plugins import registered
from bidsfusion.report.html import write_report
from bidsfusion.train.distributed import barrier, is_main, process_group
from bidsfusion.train.pretrain import Pretraining, Recipe, build_recipes, pretrain_all
from bidsfusion.train.settings import TrainSettings, resolve_device
from bidsfusion.train.transfer import check_applicable, label, pretrained_recipe

log = logging.getLogger("bidsfusion.group")


@dataclass(frozen=True)
class GroupRun:
    """What the stages of one group run share, built once by :func:`prepare`."""

    config: RunConfig
    layout: GroupLayout
    specs: tuple[ObjectiveSpec, ...]
    recipes: tuple[Recipe, ...]
    modalities: tuple[Modality, ...]
    analyses: dict[str, Callable[[AnalysisContext], None]]
    device: torch.device

    @property
    def names(self) -> tuple[str, ...]:
        """The objective specs, as ``--objective`` names them (``all-dim`` expanded)."""
        return tuple(spec.name for spec in self.specs)


def prepare(config: RunConfig) -> GroupRun:
    """Check everything a run can check before any work (64, 66, 73 on a problem) and build
    each spec's model and objective; with ``--eval-only``, the model settings are those the
    trained model folders record, and nothing is built."""
    check_dataset(config.bids_dir)
    check_locations(config.bids_dir, config.output_dir, config.execution.work_dir)
    objectives = registered("objectives")
    config, pretrained = _pretrained(config, objectives)
    requested = list(config.objectives.objective)
    if config.objectives.pretrained and CONTROL not in requested:
        requested.append(CONTROL)  # the control a pretrained model is evaluated against
    specs = objective_specs(requested, config.objectives.objective_option, objectives)
    layout = GroupLayout.of(config.output_dir)
    applied = [recipe.spec for recipe in pretrained]
    if config.execution.eval_only:  # what the --pretrained models' folds wrote
        applied = [ObjectiveSpec(label(p), (), {}, {}, False) for p in config.objectives.pretrained]
        config = trained_settings(config, layout, [spec.name for spec in [*specs, *applied]])
    modalities = selected_modalities(config.data.modality)
    recipes = []
    if not config.execution.eval_only:
        seed = config.execution.seed
        fused = [m.name for m in modalities]
        recipes = [*build_recipes(specs, config.model, fused, objectives, seed), *pretrained]
    specs += applied
    _check_unique([spec.name for spec in specs])
    analyses = selected_analyses(config.analyses.analysis)
    check_work_dir(config.work)
    device = resolve_device(config.execution.device)
    return GroupRun(
        config, layout, tuple(specs), tuple(recipes), tuple(modalities), analyses, device
    )


def _pretrained(config: RunConfig, objectives: Registry) -> tuple[RunConfig, list[Recipe]]:
    """``config`` with the model settings and modalities of the ``--pretrained`` models (a
    flag that contradicts them is 64) and their recipes; none with ``--eval-only``, which
    reads what their folds wrote."""
    folders = config.objectives.pretrained
    if config.train.finetune and not folders:
        raise UsageError(
            f"--finetune {config.train.finetune} fine-tunes --pretrained models: give one"
        )
    if config.execution.eval_only or not folders:
        return config, []
    recipes = [pretrained_recipe(p, objectives, config.train.finetune) for p in folders]
    records = {
        FoldFiles(p).metadata: r.source
        for p, r in zip(folders, recipes, strict=True)
        if r.source is not None
    }
    why = "a --pretrained model is used as it was trained"
    return settings_for(config, records, why), recipes


def _check_unique(names: Sequence[str]) -> None:
    """UsageError (64) naming an objective given twice (two --pretrained folders of one name)."""
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(
            f"objective {', '.join(twice)} is given twice: give each --pretrained model folder "
            "its own name (the folder's name names it)"
        )


def run(config: RunConfig) -> None:
    """Pretrain and evaluate every requested objective on every fold (``OUTPUT_DIR/group``)."""
    group = prepare(config)
    config, execution = group.config, group.config.execution
    torch.set_num_threads(execution.omp_nthreads or execution.nprocs)
    inputs: GroupInputs | None = None
    with process_group(group.device, execution.dist_timeout):
        main = is_main()
        storage = _storage(config) if main else None
        if execution.eval_only:
            splits = trained_splits(
                group.layout, config.output_dir, group.names, execution.fold, config.data
            )
            note_ignored_flags(config)
        else:
            inputs, splits = _pretrain(group)
    if not main:
        return  # the other processes of a distributed run only train
    folds = selected_folds(execution.fold, splits.n_folds)
    evaluation = _evaluate(group, folds, storage)
    analyses = group.analyses
    if len(folds) < splits.n_folds and analyses:
        log.info("analyses skipped: they need every fold; run without --fold for them")
        analyses = {}
    try:
        if analyses:
            inputs = inputs or load_group_inputs(config, group.modalities)
            context = AnalysisContext(
                config, group.layout, inputs, splits, group.names, evaluation.rows, group.device
            )
            run_analyses(analyses, context)
    except BidsFusionError:
        _report(group.layout)
        raise
    _report(group.layout)


def _storage(config: RunConfig) -> Any:
    """The Optuna storage (``--optuna-storage``, else a journal file in the work dir),
    opened now so a bad URL fails before any training (73)."""
    if config.evaluate.optuna_storage:
        return open_storage(config.evaluate.optuna_storage)
    return journal_storage(config.work / "optuna.journal")


def _pretrain(group: GroupRun) -> tuple[GroupInputs, Splits]:
    """Inputs, splits and pretraining of every spec on the selected folds. Rank 0 caches
    the volumes before the other ranks read them, and writes the tables once every rank
    found the earlier splits compatible."""
    config, layout = group.config, group.layout
    if not is_main():
        barrier()  # until rank 0 has cached the volumes
    inputs = load_group_inputs(config, group.modalities)
    if is_main():
        barrier()
    for recipe in group.recipes:
        check_applicable(recipe, group.modalities, inputs)
    evaluated = sorted({p.subject for p in inputs.pairs})
    data = config.data
    splits = make_splits(
        evaluated,
        [inputs.groups[s] for s in evaluated],
        data.folds,
        data.holdout,
        config.execution.seed,
        evaluated_groups=(data.positive, data.negative),
    )
    folds = selected_folds(config.execution.fold, splits.n_folds)
    check_earlier_splits(layout, splits, {(name, k) for name in group.names for k in folds})
    barrier()  # every rank has compared with the earlier splits.json before it is replaced
    if is_main():
        write_pairs_tsv(inputs.pairs, inputs.groups, layout.pairs)
        splits.to_json(layout.splits)
        write_text(layout.config, _config_record(group))
    settings = TrainSettings.of(config.train, config.execution.seed, group.device)
    dataset = str(check_dataset(config.bids_dir).get("Name", config.bids_dir.name))
    plan = Pretraining(
        group.recipes, group.modalities, layout, settings, data, config.model, dataset
    )
    pretrain_all(plan, inputs, splits, folds)
    return inputs, splits


def _evaluate(group: GroupRun, folds: list[int], storage: Any) -> Evaluation:
    """The evaluation stage; the summary table on stdout (nothing without a hold-out)."""
    if not group.config.data.holdout:
        log.warning("no hold-out subjects (--holdout 0): the evaluation is skipped")
        return Evaluation((), {})
    evaluate, seed = group.config.evaluate, group.config.execution.seed
    evaluation = run_evaluation(
        group.layout, group.names, folds, evaluate.n_trials, seed, storage, evaluate.tuning
    )
    sys.stdout.write(summary_table(evaluation.rows, evaluation.scores) + "\n")
    return evaluation


def _report(layout: GroupLayout) -> None:
    """Write ``group/report.html`` and log its path."""
    log.info("report: %s", write_report(layout))


def _config_record(group: GroupRun) -> str:
    """``config.toml``: the run's sections, with the expanded objectives, the options given
    for their terms and the versions in its ``[record]``."""
    options: dict[str, dict[str, Any]] = {}
    for spec in group.specs:
        for term, values in spec.options.items():
            options[term] = dict(values)
    record = {
        "expanded_objectives": list(group.names),
        "objective_options": options,
        "versions": {"bidsfusion": __version__, "torch": torch.__version__},
    }
    return group.config.to_toml(record)

"""The group level: pretrain encoders on the participant-level derivatives.

Steps: find each modality's derivatives in OUTPUT_DIR; pair scans by closeness
in days (``group/pairs.tsv``); split subjects into a stratified hold-out and CV
folds (``group/splits.json``); cache the volumes once; then per fold normalise
with training-only landmarks and, per objective spec, train, select by
validation loss, and save the representations of every evaluation subject.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bidsfusion import __version__
from bidsfusion.atomic import atomic_path, write_text
from bidsfusion.bids import (
    check_dataset,
    normalize_labels,
    participants_table,
    select_sessions,
    select_subjects,
    session_days,
)
from bidsfusion.config import RunConfig
from bidsfusion.data.pairs import OTHER_GROUP, Pair, Scan
from bidsfusion.data.volumes import VolumeCache
from bidsfusion.errors import InputDataError, InputMissingError, UsageError
from bidsfusion.fingerprint import digest, file_stamp
from bidsfusion.locations import check_locations, check_work_dir, is_bidsfusion_dataset
from bidsfusion.modality import BUILTIN_MODALITIES
from bidsfusion.plugins import registered

log = logging.getLogger("bidsfusion.group")

ALL_DIM = "all-dim"


def run(config: RunConfig) -> None:
    """Pretrain every requested objective on every fold; write ``OUTPUT_DIR/group``."""
    from bidsfusion.data.splits import make_splits

    check_dataset(config.bids_dir)
    check_locations(config.bids_dir, config.output_dir, config.work_dir)
    specs = objective_specs(config.objective)
    modalities = [registered("modalities")[name] for name in BUILTIN_MODALITIES]
    group_dir = config.output_dir / "group"
    found = _find_scans(config, modalities)
    check_work_dir(config.work)
    _limit_threads(config.omp_nthreads or config.nprocs)
    caches, scans = _cached_scans(config, found)
    groups = subject_groups(config, {s.subject for s in scans})
    pairs = _pairs(scans, [m.name for m in modalities], groups, group_dir)
    evaluated = sorted({p.subject for p in pairs})
    splits = make_splits(
        evaluated,
        [groups[s] for s in evaluated],
        config.folds,
        config.holdout,
        config.seed,
        evaluated_groups=(config.positive, config.negative),
    )
    splits.to_json(group_dir / "splits.json")
    write_text(group_dir / "config.toml", _config_record(config, specs))
    _train_all(config, specs, caches, pairs, groups, splits, group_dir)


def objective_specs(requested: Sequence[str]) -> list[str]:
    """Validated objective specs (``all-dim`` expanded); unknown terms raise (exit 64)."""
    from bidsfusion.objectives.compose import expand_all_dim, parse_spec

    if not requested:
        raise UsageError(
            "the group level needs at least one --objective, e.g. --objective L-CL (or all-dim)"
        )
    registry = registered("objectives")
    specs: list[str] = []
    for spec in requested:
        for one in expand_all_dim() if spec == ALL_DIM else [spec]:
            parse_spec(one, registry)
            specs.append(one)
    return list(dict.fromkeys(specs))


def _limit_threads(n: int) -> None:
    """Threads of torch's intra-op pool (``--omp-nthreads``, else ``--nprocs``)."""
    import torch

    torch.set_num_threads(n)


def _find_scans(config: RunConfig, modalities) -> list[Scan]:
    """The usable derivatives of the selected subjects and sessions (flagged ones left
    out unless --include-flagged); labels with no derivative: exit 18."""
    from bidsfusion.data.derivatives import find_scans

    if not is_bidsfusion_dataset(config.output_dir):
        raise InputMissingError(
            f"{config.output_dir} holds no bidsfusion derivatives (no dataset_description.json "
            "by bidsfusion); run 'bidsfusion BIDS_DIR OUTPUT_DIR participant' first"
        )
    raw_subjects = [p.name[4:] for p in config.bids_dir.glob("sub-*") if p.is_dir()]
    days = {s: session_days(config.bids_dir, s) for s in raw_subjects}
    every = find_scans(config.output_dir, modalities, days, include_flagged=True).scans
    subjects = select_subjects(sorted({s.subject for s in every}), _labels(config, "sub"))
    sessions = _labels(config, "ses")
    if sessions:
        chosen = [s.session for s in every if s.subject in subjects and s.session]
        select_sessions(chosen, sessions)
    found = find_scans(
        config.output_dir, modalities, days, subjects, sessions, config.include_flagged
    )
    for path, reason in found.flagged.items():
        log.warning("excluded %s: %s; pass --include-flagged to train on it", path, reason)
    scans = found.scans
    missing = [m.name for m in modalities if not any(s.modality == m.name for s in scans)]
    if missing:
        raise InputMissingError(
            f"no {' or '.join(missing)} derivatives in {config.output_dir}; "
            "run the participant level first"
        )
    return scans


def _labels(config: RunConfig, entity: str) -> tuple[str, ...]:
    requested = config.participant_label if entity == "sub" else config.session_label
    return normalize_labels(requested, entity)


def subject_groups(config: RunConfig, subjects: set[str]) -> dict[str, str]:
    """The ``--label-column`` value of each subject (``other`` when empty or n/a)."""
    table = participants_table(config.bids_dir)
    first = next(iter(table.values()))
    if config.label_column not in first:
        raise InputDataError(
            f"{config.bids_dir / 'participants.tsv'} has no column "
            f"{config.label_column!r}; columns: {', '.join(first)}; "
            "choose one with --label-column"
        )
    values = {s: (table.get(s, {}).get(config.label_column) or OTHER_GROUP) for s in subjects}
    return {s: (OTHER_GROUP if v in ("", "n/a") else v) for s, v in values.items()}


def _pairs(
    scans: Sequence[Scan], modalities: Sequence[str], groups: Mapping[str, str], group_dir: Path
) -> list[Pair]:
    from bidsfusion.data.pairs import build_pairs, write_pairs_tsv

    pairs = build_pairs(scans, modalities)
    if not pairs:
        raise InputDataError("no subject has both a T1w and a fALFF derivative")
    write_pairs_tsv(pairs, groups, group_dir / "pairs.tsv")
    log.info("%d pairs from %d subjects", len(pairs), len({p.subject for p in pairs}))
    return pairs


def _config_record(config: RunConfig, specs: Sequence[str]) -> str:
    import torch

    versions = f'\n[versions]\nbidsfusion = "{__version__}"\ntorch = "{torch.__version__}"\n'
    return (
        config.to_toml() + f"expanded_objectives = {list(specs)!r}\n".replace("'", '"') + versions
    )


def _train_all(
    config: RunConfig,
    specs: Sequence[str],
    caches: Mapping[str, VolumeCache],
    pairs: Sequence[Pair],
    groups: Mapping[str, str],
    splits,
    group_dir: Path,
) -> None:
    import torch

    from bidsfusion.data.normalize import learn_landmarks, paired_volumes
    from bidsfusion.data.pairs import label_of
    from bidsfusion.train.settings import resolve_device

    device = resolve_device(config.device)
    labels = {s: label_of(g, config.positive, config.negative) for s, g in groups.items()}
    evaluation = [p for p in pairs if p.evaluation]
    for k, fold in enumerate(splits.folds):
        train_subjects, validation_subjects = set(fold.train), set(fold.validation)
        train_pairs = [p for p in pairs if p.subject in train_subjects]
        landmarks = {
            m: learn_landmarks(c, c.rows([p.paths[m] for p in train_pairs]), device)
            for m, c in caches.items()
        }
        validation_pairs = [p for p in pairs if p.subject in validation_subjects]
        data = {
            name: paired_volumes(chosen, caches, landmarks, labels, device)
            for name, chosen in (
                ("train", train_pairs),
                ("validation", validation_pairs),
                ("evaluation", evaluation),
            )
        }
        roles = _roles(fold, splits.holdout)
        for spec in specs:
            torch.manual_seed(config.seed)
            out_dir = group_dir / f"objective-{spec}" / f"fold-{k}"
            key = data_key(config, spec, train_pairs, validation_pairs)
            _train_one(config, spec, data, roles, groups, out_dir, device, key)


def data_key(
    config: RunConfig, spec: str, train: Sequence[Pair], validation: Sequence[Pair]
) -> str:
    """SHA-256 of what a fold's training depends on beyond its settings: the
    bidsfusion version, the model (encoder, latent size, input size, objective spec),
    the labels (column, positive and negative values: the sampler and Supervised use
    them) and each training and validation file (path, size, modification time)."""

    def stamps(pairs: Sequence[Pair]) -> list[dict[str, object]]:
        return [file_stamp(Path(p)) for p in sorted(p for q in pairs for p in q.paths.values())]

    record = {
        "version": __version__,
        "encoder": config.encoder,
        "latent_dim": config.latent_dim,
        "input_size": config.input_size,
        "objective": spec,
        "labels": [config.label_column, config.positive, config.negative],
        "train": stamps(train),
        "validation": stamps(validation),
    }
    return digest(record)


def _cached_scans(
    config: RunConfig, scans: Sequence[Scan]
) -> tuple[dict[str, VolumeCache], list[Scan]]:
    """One volume cache per modality; unusable scans are reported and left out."""
    caches = {}
    for modality in dict.fromkeys(s.modality for s in scans):
        paths = sorted(s.path for s in scans if s.modality == modality)
        cache_path = config.work / "cache" / f"{modality}-{config.input_size}.npy"
        caches[modality] = VolumeCache.build(
            paths, cache_path, config.input_size, skip_bad=True, workers=config.nprocs
        )
        for path, reason in caches[modality].excluded.items():
            log.warning("excluded %s: %s", path, reason)
    bad = {Path(path) for cache in caches.values() for path in cache.excluded}
    return caches, [s for s in scans if s.path not in bad]


def _roles(fold, holdout: Sequence[str]) -> dict[str, str]:
    roles = dict.fromkeys(fold.train, "train")
    roles.update(dict.fromkeys(fold.validation, "validation"))
    roles.update(dict.fromkeys(holdout, "holdout"))
    return roles


def _train_one(
    config: RunConfig,
    spec: str,
    data,
    roles: Mapping[str, str],
    groups: Mapping[str, str],
    out_dir: Path,
    device,
    key: str,
) -> None:
    from bidsfusion.models.multimodal import MultimodalModel
    from bidsfusion.objectives.compose import build_objective
    from bidsfusion.train.encode import encode
    from bidsfusion.train.loop import FoldData, train_fold
    from bidsfusion.train.settings import TrainSettings

    modalities = list(data["train"].volumes)
    size = (config.input_size,) * 3
    encoder = registered("encoders")[config.encoder]
    model = MultimodalModel(modalities, encoder, size, config.latent_dim)
    objective = build_objective(
        spec, modalities, model.dims(config.latent_dim), registered("objectives")
    )
    settings = TrainSettings(
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed, device=str(device)
    )
    result = train_fold(
        model,
        objective,
        FoldData(data["train"].volumes, data["train"].labels),
        FoldData(data["validation"].volumes, data["validation"].labels),
        settings,
        out_dir,
        data_key=key,
    )
    log.info(
        "%s: best epoch %d, validation loss %.4f",
        out_dir,
        result.best_epoch,
        result.best_validation_loss,
    )
    evaluation = data["evaluation"]
    latents = encode(model, evaluation.volumes, config.batch_size, device)
    subjects = np.array(evaluation.subjects)
    with atomic_path(out_dir / "representations.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            subject=subjects,
            group=np.array([groups[s] for s in evaluation.subjects]),
            label=evaluation.labels.numpy(),
            role=np.array([roles.get(s, "unused") for s in evaluation.subjects]),
            **{f"z_{m}": z for m, z in latents.items()},
        )

"""What the group level trains on: the usable derivatives, their groups and pairs, cached.

Each modality's grid derivatives of the selected subjects and sessions are found in
OUTPUT_DIR (scans flagged by the registration QC left out unless
``--include-flagged``), decoded once into the volume cache (unusable files reported
and left out), labelled from participants.tsv, and paired by closeness in days
(``group/pairs.tsv``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bidsfusion.bids import (
    normalize_labels,
    participants_table,
    select_sessions,
    select_subjects,
    session_days,
)
from bidsfusion.config import Data, RunConfig
from bidsfusion.data.derivatives import find_scans
from bidsfusion.data.pairs import OTHER_GROUP, Pair, Scan, build_pairs, label_of
from bidsfusion.data.volumes import VolumeCache
from bidsfusion.errors import InputDataError, InputMissingError, UsageError
from bidsfusion.locations import is_bidsfusion_dataset
from bidsfusion.modality import Modality
from bidsfusion.plugins import registered

log = logging.getLogger("bidsfusion.group")


@dataclass(frozen=True)
class GroupInputs:
    """The cached volumes by modality (in ``--modality`` order), the pairs, and each paired
    subject's group."""

    caches: dict[str, VolumeCache]
    pairs: list[Pair]
    groups: dict[str, str]

    def labels(self, positive: str, negative: str) -> dict[str, int]:
        """Every subject's label: 1 ``positive``, 0 ``negative``, -1 any other group."""
        return {s: label_of(g, positive, negative) for s, g in self.groups.items()}


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


def load_group_inputs(config: RunConfig, modalities: Sequence[Modality]) -> GroupInputs:
    """Find, cache, label and pair the derivatives (``pairs.tsv`` is written with the
    splits, once they are known to be compatible with earlier runs)."""
    caches, scans = _cached_scans(config, selected_scans(config, modalities))
    groups = subject_groups(config.bids_dir, config.data, {s.subject for s in scans})
    names = [m.name for m in modalities]
    caches = {name: caches[name] for name in names if name in caches}  # the model's order
    pairs = build_pairs(scans, names)
    if not pairs:
        raise InputDataError(f"no subject has a derivative of each of {', '.join(names)}")
    log.info("%d pairs from %d subjects", len(pairs), len({p.subject for p in pairs}))
    return GroupInputs(caches, pairs, groups)


def selected_scans(config: RunConfig, modalities: Sequence[Modality]) -> list[Scan]:
    """The usable derivatives of the selected subjects and sessions (flagged ones left
    out unless --include-flagged); labels with no derivative: exit 18."""
    if not is_bidsfusion_dataset(config.output_dir):
        raise InputMissingError(
            f"{config.output_dir} holds no bidsfusion derivatives (no dataset_description.json "
            "by bidsfusion); run 'bidsfusion BIDS_DIR OUTPUT_DIR participant' first"
        )
    raw_subjects = [p.name[4:] for p in config.bids_dir.glob("sub-*") if p.is_dir()]
    days = {s: session_days(config.bids_dir, s) for s in raw_subjects}
    found = find_scans(config.output_dir, modalities, days)
    every = [*found.scans, *found.flagged]
    if not every:
        raise InputMissingError(
            f"{config.output_dir} holds no derivatives of {', '.join(m.name for m in modalities)} "
            "(a participant run that published nothing?); run 'bidsfusion BIDS_DIR OUTPUT_DIR "
            "participant' first"
        )
    requested = normalize_labels(config.execution.participant_label, "sub")
    subjects = set(select_subjects(sorted({s.subject for s in every}), requested))
    sessions = normalize_labels(config.execution.session_label, "ses")
    if sessions:
        select_sessions([s.session for s in every if s.subject in subjects and s.session], sessions)

    def selected(scan: Scan) -> bool:
        return scan.subject in subjects and (not sessions or scan.session in sessions)

    scans = [s for s in found.scans if selected(s)]
    for scan, reason in found.flagged.items():
        if not selected(scan):
            continue
        if config.data.include_flagged:
            scans.append(scan)
        else:
            log.warning("excluded %s: %s; pass --include-flagged to train on it", scan.path, reason)
    missing = [m.name for m in modalities if not any(s.modality == m.name for s in scans)]
    if missing:
        raise InputMissingError(
            f"no {' or '.join(missing)} derivatives in {config.output_dir}; "
            "run the participant level first"
        )
    return scans


def subject_groups(bids_dir: Path, data: Data, subjects: set[str]) -> dict[str, str]:
    """The ``--label-column`` value of each subject (``other`` when empty or n/a)."""
    table = participants_table(bids_dir)
    first = next(iter(table.values()))
    if data.label_column not in first:
        raise InputDataError(
            f"{bids_dir / 'participants.tsv'} has no column "
            f"{data.label_column!r}; columns: {', '.join(first)}; "
            "choose one with --label-column"
        )
    absent = sorted(subjects - set(table))
    if absent:
        log.warning(
            "%s has no row for %s: counted as %s (pretraining only); add the row to "
            "use them as a class",
            bids_dir / "participants.tsv",
            _first([f"sub-{s}" for s in absent]),
            OTHER_GROUP,
        )
    values = {s: (table.get(s, {}).get(data.label_column) or OTHER_GROUP) for s in subjects}
    groups = {s: (OTHER_GROUP if v in ("", "n/a") else v) for s, v in values.items()}
    for option, label in (("--positive", data.positive), ("--negative", data.negative)):
        if label not in groups.values():
            raise UsageError(
                f"{option} {label}: no selected subject has {data.label_column} {label!r} "
                f"in participants.tsv; its values: {_first(sorted(set(groups.values())))}"
            )
    _warn_near_misses(data, groups)
    counts = Counter(groups.values())
    log.info(
        "%s of the selected subjects: %s",
        data.label_column,
        _first([f"{value!r} {n}" for value, n in sorted(counts.items())]),
    )
    return groups


def _first(items: Sequence[str], most: int = 10) -> str:
    """The first ``most`` of ``items`` joined by commas, and how many there are in all."""
    more = f" ... ({len(items)} in all)" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def _warn_near_misses(data: Data, groups: dict[str, str]) -> None:
    """Warn about values that differ from ``--positive``/``--negative`` only in case or
    surrounding spaces: they count as neither class."""
    for option, label in (("--positive", data.positive), ("--negative", data.negative)):
        near = sorted(
            {v for v in groups.values() if v != label and v.strip().casefold() == label.casefold()}
        )
        for value in near:
            subjects = sorted(s for s, v in groups.items() if v == value)
            log.warning(
                "participants.tsv %s %r (sub-%s) is not %s %r (case or spaces differ): "
                "counted as neither class; fix the table or the option",
                data.label_column,
                value,
                ", sub-".join(subjects),
                option,
                label,
            )


def _cached_scans(
    config: RunConfig, scans: Sequence[Scan]
) -> tuple[dict[str, VolumeCache], list[Scan]]:
    """One volume cache per modality; unusable scans are reported and left out."""
    caches: dict[str, VolumeCache] = {}
    size = config.model.input_size
    for modality in dict.fromkeys(s.modality for s in scans):
        paths = sorted(s.path for s in scans if s.modality == modality)
        cache_path = config.work / "cache" / f"{modality}-{size}.npy"
        caches[modality] = VolumeCache.build(
            paths, cache_path, size, skip_bad=True, workers=config.execution.nprocs
        )
        for path, reason in caches[modality].excluded.items():
            log.warning("excluded %s: %s", path, reason)
    bad = {Path(path) for cache in caches.values() for path in cache.excluded}
    return caches, [s for s in scans if s.path not in bad]

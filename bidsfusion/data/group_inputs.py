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
from typing import Any

from bidsfusion.bids import (
    normalize_labels,
    participants_table,
    select_sessions,
    select_subjects,
    session_days,
)
from bidsfusion.data.derivatives import find_scans
from bidsfusion.data.pairs import OTHER_GROUP, Pair, Scan, build_pairs, write_pairs_tsv
from bidsfusion.data.volumes import VolumeCache
from bidsfusion.errors import InputDataError, InputMissingError, UsageError
from bidsfusion.locations import is_bidsfusion_dataset
from bidsfusion.modality import Modality

log = logging.getLogger("bidsfusion.group")


@dataclass(frozen=True)
class GroupInputs:
    """The cached volumes by modality (in ``--modality`` order), the pairs, and each paired
    subject's group."""

    caches: dict[str, VolumeCache]
    pairs: list[Pair]
    groups: dict[str, str]


def load_group_inputs(
    config: Any, modalities: Sequence[Modality], group_dir: Path, write: bool = True
) -> GroupInputs:
    """Find, cache, label and pair the derivatives; write ``group_dir/pairs.tsv`` (not
    with ``write`` false: a distributed run's ranks but the first)."""
    caches, scans = _cached_scans(config, selected_scans(config, modalities))
    groups = subject_groups(config, {s.subject for s in scans})
    names = [m.name for m in modalities]
    caches = {name: caches[name] for name in names if name in caches}  # the model's order
    pairs = build_pairs(scans, names)
    if not pairs:
        raise InputDataError(f"no subject has a derivative of each of {', '.join(names)}")
    if write:
        write_pairs_tsv(pairs, groups, group_dir / "pairs.tsv")
    log.info("%d pairs from %d subjects", len(pairs), len({p.subject for p in pairs}))
    return GroupInputs(caches, pairs, groups)


def selected_scans(config: Any, modalities: Sequence[Modality]) -> list[Scan]:
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
    requested = normalize_labels(config.participant_label, "sub")
    subjects = set(select_subjects(sorted({s.subject for s in every}), requested))
    sessions = normalize_labels(config.session_label, "ses")
    if sessions:
        select_sessions([s.session for s in every if s.subject in subjects and s.session], sessions)

    def selected(scan: Scan) -> bool:
        return scan.subject in subjects and (not sessions or scan.session in sessions)

    scans = [s for s in found.scans if selected(s)]
    for scan, reason in found.flagged.items():
        if not selected(scan):
            continue
        if config.include_flagged:
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


def subject_groups(config: Any, subjects: set[str]) -> dict[str, str]:
    """The ``--label-column`` value of each subject (``other`` when empty or n/a)."""
    table = participants_table(config.bids_dir)
    first = next(iter(table.values()))
    if config.label_column not in first:
        raise InputDataError(
            f"{config.bids_dir / 'participants.tsv'} has no column "
            f"{config.label_column!r}; columns: {', '.join(first)}; "
            "choose one with --label-column"
        )
    absent = sorted(subjects - set(table))
    if absent:
        log.warning(
            "%s has no row for %s: counted as %s (pretraining only); add the row to "
            "use them as a class",
            config.bids_dir / "participants.tsv",
            _first([f"sub-{s}" for s in absent]),
            OTHER_GROUP,
        )
    values = {s: (table.get(s, {}).get(config.label_column) or OTHER_GROUP) for s in subjects}
    groups = {s: (OTHER_GROUP if v in ("", "n/a") else v) for s, v in values.items()}
    for option, label in (("--positive", config.positive), ("--negative", config.negative)):
        if label not in groups.values():
            raise UsageError(
                f"{option} {label}: no selected subject has {config.label_column} {label!r} "
                f"in participants.tsv; its values: {_first(sorted(set(groups.values())))}"
            )
    _warn_near_misses(config, groups)
    counts = Counter(groups.values())
    log.info(
        "%s of the selected subjects: %s",
        config.label_column,
        _first([f"{value!r} {n}" for value, n in sorted(counts.items())]),
    )
    return groups


def _first(items: Sequence[str], most: int = 10) -> str:
    """The first ``most`` of ``items`` joined by commas, and how many there are in all."""
    more = f" ... ({len(items)} in all)" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def _warn_near_misses(config: Any, groups: dict[str, str]) -> None:
    """Warn about values that differ from ``--positive``/``--negative`` only in case or
    surrounding spaces: they count as neither class."""
    for option, label in (("--positive", config.positive), ("--negative", config.negative)):
        near = sorted(
            {v for v in groups.values() if v != label and v.strip().casefold() == label.casefold()}
        )
        for value in near:
            subjects = sorted(s for s, v in groups.items() if v == value)
            log.warning(
                "participants.tsv %s %r (sub-%s) is not %s %r (case or spaces differ): "
                "counted as neither class; fix the table or the option",
                config.label_column,
                value,
                ", sub-".join(subjects),
                option,
                label,
            )


def _cached_scans(config: Any, scans: Sequence[Scan]) -> tuple[dict[str, VolumeCache], list[Scan]]:
    """One volume cache per modality; unusable scans are reported and left out."""
    caches: dict[str, VolumeCache] = {}
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

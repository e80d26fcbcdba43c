"""Pair scans of different modalities of one subject by closeness in time.

Every scan of every modality takes part in at least one pair: it is paired with
the scan of each other modality of the same subject that is closest in days.
With more than two modalities, pairs are built around the first (anchor)
modality: an anchor scan takes the closest scan of every other modality; a
non-anchor scan takes its closest anchor scan, and that anchor scan's closest
scans of the remaining modalities. With two modalities this is the symmetric
rule of the paper (each T1 with its closest fALFF, each fALFF with its closest
T1). Identical pairs are kept once.

Ties in the distance in days go to the candidate from the same session, then
the earlier one (fewer days), then the smaller session label, then the smaller
path: with unknown days (all 0) scans pair within their session.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bidsfusion.errors import InputDataError
from bidsfusion.modality import BUILTIN_MODALITIES
from bidsfusion.tsv import NA, read_tsv, write_tsv

ROLE_PRETRAIN = "pretrain"
"""Role of a pair used for pretraining only."""
ROLE_EVALUATION = "pretrain+evaluation"
"""Role of the one pair per subject that is also used for evaluation."""
OTHER_GROUP = "other"
"""Group written for subjects absent from the group mapping."""


def label_of(group: str, positive: str, negative: str) -> int:
    """1 for the positive class, 0 for the negative, -1 for anything else."""
    return 1 if group == positive else 0 if group == negative else -1


@dataclass(frozen=True)
class Scan:
    """One preprocessed volume of one modality.

    ``days`` is the time since the subject's entry (sessions.tsv), 0 if unknown.
    """

    subject: str
    session: str | None
    modality: str
    path: Path
    days: float = 0.0


@dataclass(frozen=True)
class Pair:
    """Scans of one subject, one per modality (keys in modality order).

    ``days_apart`` is the largest minus the smallest ``days`` of its scans;
    ``evaluation`` marks the one pair per subject kept for evaluation.
    """

    subject: str
    sessions: dict[str, str | None]
    paths: dict[str, Path]
    days_apart: float
    evaluation: bool = False


def _distance_key(target: Scan) -> Callable[[Scan], tuple]:
    """Sort key choosing the candidate closest to ``target`` (see module docstring)."""

    def key(candidate: Scan) -> tuple:
        return (
            abs(candidate.days - target.days),
            candidate.session != target.session,
            candidate.days,
            candidate.session or "",
            str(candidate.path),
        )

    return key


def _closest(target: Scan, candidates: Sequence[Scan]) -> Scan:
    return min(candidates, key=_distance_key(target))


def _subject_tuples(
    by_modality: Mapping[str, list[Scan]], modalities: Sequence[str]
) -> Iterator[dict[str, Scan]]:
    """Yield one dict modality -> scan per pair of one subject (duplicates included)."""
    anchor, others = modalities[0], modalities[1:]
    for scan in by_modality[anchor]:
        yield {anchor: scan} | {m: _closest(scan, by_modality[m]) for m in others}
    for modality in others:
        for scan in by_modality[modality]:
            anchor_scan = _closest(scan, by_modality[anchor])
            rest = {m: _closest(anchor_scan, by_modality[m]) for m in others if m != modality}
            yield {anchor: anchor_scan, modality: scan} | rest


def _pair_order(scans: Mapping[str, Scan], modalities: Sequence[str]) -> tuple:
    days = [scans[m].days for m in modalities]
    return (
        max(days) - min(days),
        scans[modalities[0]].days,
        tuple(scans[m].session or "" for m in modalities),
        tuple(str(scans[m].path) for m in modalities),
    )


def _subject_pairs(
    subject: str, by_modality: Mapping[str, list[Scan]], modalities: Sequence[str]
) -> list[Pair]:
    unique = {
        tuple(t[m].path for m in modalities): t for t in _subject_tuples(by_modality, modalities)
    }
    ordered = sorted(unique.values(), key=lambda t: _pair_order(t, modalities)[1:])
    best = min(ordered, key=lambda t: _pair_order(t, modalities))
    return [
        Pair(
            subject=subject,
            sessions={m: t[m].session for m in modalities},
            paths={m: t[m].path for m in modalities},
            days_apart=_pair_order(t, modalities)[0],
            evaluation=t is best,
        )
        for t in ordered
    ]


def build_pairs(
    scans: Iterable[Scan], modalities: Sequence[str] = BUILTIN_MODALITIES
) -> list[Pair]:
    """Pair the scans of each subject (see module docstring).

    Scans of other modalities are ignored; subjects lacking any of
    ``modalities`` produce no pair. Pairs are ordered by subject, then anchor
    days, sessions and paths; exactly one pair per subject has ``evaluation``
    set: the one with the fewest days apart (ties: earliest anchor scan).
    """
    if len(modalities) < 2 or len(set(modalities)) != len(modalities):
        raise ValueError(f"need at least two distinct modalities, got {tuple(modalities)}")
    grouped: dict[str, dict[str, list[Scan]]] = defaultdict(lambda: defaultdict(list))
    for scan in scans:
        if scan.modality in modalities:
            grouped[scan.subject][scan.modality].append(scan)
    pairs: list[Pair] = []
    for subject in sorted(grouped):
        by_modality = grouped[subject]
        if all(by_modality[m] for m in modalities):
            pairs.extend(_subject_pairs(subject, by_modality, modalities))
    return pairs


def _columns(modalities: Sequence[str]) -> list[str]:
    return [
        "subject",
        *(f"session_{m}" for m in modalities),
        *(f"path_{m}" for m in modalities),
        "days_apart",
        "group",
        "role",
    ]


def write_pairs_tsv(pairs: Sequence[Pair], groups: Mapping[str, str], path: Path) -> None:
    """Write ``pairs`` to a TSV atomically, one row per pair.

    Columns: subject, session_<modality>..., path_<modality>..., days_apart,
    group (``groups[subject]``, else "other"), role ("pretrain" or
    "pretrain+evaluation"). A missing session is written "n/a".
    """
    if not pairs:
        raise InputDataError(
            f"no pairs to write to {path}: no subject has a scan of every modality"
        )
    modalities = list(pairs[0].paths)
    rows = [
        [
            pair.subject,
            *(pair.sessions[m] for m in modalities),
            *(str(pair.paths[m]) for m in modalities),
            float(pair.days_apart),
            groups.get(pair.subject, OTHER_GROUP),
            ROLE_EVALUATION if pair.evaluation else ROLE_PRETRAIN,
        ]
        for pair in pairs
    ]
    write_tsv(Path(path), _columns(modalities), rows)


def _parse_row(row: Mapping[str, str], modalities: Sequence[str], where: str) -> Pair:
    if row["role"] not in (ROLE_PRETRAIN, ROLE_EVALUATION):
        raise InputDataError(f"{where}: unknown role {row['role']!r}")
    try:
        days_apart = float(row["days_apart"])
    except ValueError:
        raise InputDataError(f"{where}: days_apart {row['days_apart']!r} is not a number") from None
    return Pair(
        subject=row["subject"],
        sessions={
            m: None if row[f"session_{m}"] == NA else row[f"session_{m}"] for m in modalities
        },
        paths={m: Path(row[f"path_{m}"]) for m in modalities},
        days_apart=days_apart,
        evaluation=row["role"] == ROLE_EVALUATION,
    )


def read_pairs_tsv(path: Path) -> tuple[list[Pair], dict[str, str]]:
    """Read a file written by :func:`write_pairs_tsv`; return (pairs, subject -> group)."""
    header, rows = read_tsv(Path(path))
    modalities = [c.removeprefix("path_") for c in header if c.startswith("path_")]
    missing = [c for c in _columns(modalities) if c not in header]
    if len(modalities) < 2 or missing:
        raise InputDataError(f"{path}: not a pairs file (missing columns {missing or 'path_*'})")
    pairs: list[Pair] = []
    groups: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line}"
        pair = _parse_row(row, modalities, where)
        if groups.setdefault(pair.subject, row["group"]) != row["group"]:
            raise InputDataError(f"{where}: subject {pair.subject} has two groups")
        pairs.append(pair)
    return pairs, groups

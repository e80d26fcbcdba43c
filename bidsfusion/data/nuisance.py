"""The nuisance variables of a cohort: what a representation may encode besides the label.

Found where a BIDS dataset keeps them, for each subject's evaluation pair:

- ``participants.tsv`` columns named by ``--confound`` (default :data:`DEFAULT_COLUMNS`,
  those of them the table has; ``none``: no column);
- ``scanner``: the raw scans' :data:`SCANNER_KEYS` (their sidecars, with BIDS inheritance)
  joined, kept when it varies over the cohort;
- the participant level's QC of the pair's BOLD-derived map: ``mean_fd_mm`` (mean
  framewise displacement) and ``tsnr`` (temporal SNR), as in ``qc.tsv``.

A variable that takes more than :data:`MAX_CLASSES` numbers is continuous (a text among
them is unknown), any other categorical. ``n/a``, empty and
non-finite values are unknown. A categorical variable keeps the classes of at least
:data:`MIN_CLASS` subjects (the rest are unknown) and needs two such classes. One that
does not qualify is skipped with a one-line note saying why (the scanner and the QC
measures silently when they are the same for every subject or unknown for all).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bidsfusion.bids import QC_KEY, participants_table, scan_metadata, sidecar_path
from bidsfusion.data.pairs import Pair
from bidsfusion.errors import BidsFusionError

DEFAULT_COLUMNS = ("age", "sex", "site")
"""participants.tsv columns probed when ``--confound`` is not given."""
NONE = "none"
"""``--confound none``: no participants.tsv column."""
SCANNER_KEYS = ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength")
"""The sidecar keys that make the ``scanner`` variable."""
QC_VARIABLES = {"mean_fd_mm": "MeanFramewiseDisplacement", "tsnr": "TemporalSNR"}
"""Variable name -> its key in a derivative sidecar's QC record."""
MAX_CLASSES = 10
"""Numbers with more distinct values than this are a continuous variable."""
MIN_CLASS = 4
"""The fewest subjects a class of a categorical variable needs to be kept."""
CATEGORICAL, CONTINUOUS = "categorical", "continuous"
_UNKNOWN = {"", "n/a", "na", "nan", "none", "null"}


@dataclass(frozen=True)
class Nuisance:
    """One variable: its ``name``, ``kind`` (categorical or continuous), where it came from
    (``source``), and each subject's known value (``values``: a class label or a number)."""

    name: str
    kind: str
    source: str
    values: Mapping[str, str | float]

    @property
    def classes(self) -> tuple[str, ...]:
        """The sorted classes of a categorical variable (empty for a continuous one)."""
        return tuple(sorted({str(v) for v in self.values.values()})) if self.is_categorical else ()

    @property
    def is_categorical(self) -> bool:
        """Whether it is categorical."""
        return self.kind == CATEGORICAL


def nuisance_variables(
    bids_dir: Path, pairs: Sequence[Pair], columns: Sequence[str] = (), label_column: str = ""
) -> tuple[list[Nuisance], list[str]]:
    """The usable variables of the evaluation ``pairs`` and a note per variable skipped.

    ``columns``: ``--confound`` (empty: :data:`DEFAULT_COLUMNS` that exist; ``none``: no
    participants.tsv column); ``label_column`` (the diagnosis) is never a confound."""
    evaluated = [p for p in pairs if p.evaluation]
    found, notes = _participant_columns(bids_dir, [p.subject for p in evaluated], columns)
    if label_column in found:
        del found[label_column]
        notes.append(f"confound {label_column} skipped: it is the --label-column, the label")
    found["scanner"] = ("sidecars", _scanners(bids_dir, evaluated, notes))
    for name, key in QC_VARIABLES.items():
        found[name] = ("qc", {p.subject: _qc_value(p, key) for p in evaluated})
    variables = []
    for name, (source, raw) in found.items():
        variable, why = typed_variable(name, source, raw)
        if variable is None:
            if source == "participants.tsv" or why not in (_CONSTANT, _NO_VALUE):
                notes.append(f"confound {name} ({source}) skipped: {why}")
        else:
            variables.append(variable)
    return variables, notes


_CONSTANT = "one value in every subject"
_NO_VALUE = "no subject has a value"


def typed_variable(
    name: str, source: str, raw: Mapping[str, object]
) -> tuple[Nuisance | None, str]:
    """A :class:`Nuisance` from each subject's raw value (None unknown), or None and why
    it cannot be used."""
    known = {s: _value(v) for s, v in raw.items()}
    known = {s: v for s, v in known.items() if v is not None}
    if not known:
        return None, _NO_VALUE
    numbers = {s: v for s, v in known.items() if isinstance(v, float)}
    if len(set(numbers.values())) > MAX_CLASSES:
        values: dict[str, str | float] = dict(numbers)
        kind = CONTINUOUS
    else:
        labels = {s: _label(v) for s, v in known.items()}
        counts = Counter(labels.values())
        if len(counts) == 1:
            return None, _CONSTANT
        kept = {c for c, n in counts.items() if n >= MIN_CLASS}
        if len(kept) < 2:
            return None, (
                f"fewer than two classes with {MIN_CLASS} subjects or more ({_counts(counts)})"
            )
        values = {s: c for s, c in labels.items() if c in kept}
        kind = CATEGORICAL
    return Nuisance(name, kind, source, values), ""


def _participant_columns(
    bids_dir: Path, subjects: Sequence[str], columns: Sequence[str]
) -> tuple[dict[str, tuple[str, dict[str, object]]], list[str]]:
    table = participants_table(bids_dir)
    present = list(next(iter(table.values()))) if table else []
    notes = []
    if list(columns) == [NONE]:
        wanted: list[str] = []
    elif columns:
        wanted = list(dict.fromkeys(columns))
        for name in wanted:
            if name not in present:
                notes.append(
                    f"confound {name} skipped: {bids_dir / 'participants.tsv'} has no such "
                    f"column; its columns: {', '.join(present)}"
                )
        wanted = [c for c in wanted if c in present]
    else:
        wanted = [c for c in DEFAULT_COLUMNS if c in present]
    rows = {s: table.get(s, {}) for s in subjects}
    found = {c: ("participants.tsv", {s: rows[s].get(c) for s in subjects}) for c in wanted}
    return found, notes


def _scanners(bids_dir: Path, pairs: Iterable[Pair], notes: list[str]) -> dict[str, object]:
    """Each subject's scanner: the :data:`SCANNER_KEYS` of its pair's raw scans, joined."""
    out: dict[str, object] = {}
    for pair in pairs:
        described = set()
        for path in pair.paths.values():
            for raw in _raw_sources(path, bids_dir):
                try:
                    metadata = scan_metadata(raw, bids_dir)
                except (BidsFusionError, ValueError) as error:
                    notes.append(f"scanner of sub-{pair.subject} unknown: {error}")
                    continue
                fields = [str(metadata[k]) for k in SCANNER_KEYS if k in metadata]
                if fields:
                    described.add(" ".join(fields))
        out[pair.subject] = " / ".join(sorted(described)) or None
    return out


def _raw_sources(path: Path, bids_dir: Path) -> list[Path]:
    """The raw scans a derivative's sidecar names (``Sources``: ``bids:raw:<path>``)."""
    sources = _sidecar(path).get("Sources", [])
    prefix = "bids:raw:"
    return [
        bids_dir / s.removeprefix(prefix)
        for s in (sources if isinstance(sources, list) else [])
        if isinstance(s, str) and s.startswith(prefix) and (bids_dir / s[len(prefix) :]).exists()
    ]


def _qc_value(pair: Pair, key: str) -> object:
    """The QC record's ``key`` of the first of the pair's derivatives that holds it."""
    for path in pair.paths.values():
        qc = _sidecar(path).get(QC_KEY)
        if isinstance(qc, dict) and key in qc:
            return qc[key]
    return None


def _sidecar(path: Path) -> dict:
    try:
        content = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _value(raw: object) -> str | float | None:
    """A number, a label, or None (unknown)."""
    if raw is None or isinstance(raw, bool):
        return None if raw is None else str(raw)
    if isinstance(raw, int | float):
        return float(raw) if math.isfinite(raw) else None
    text = str(raw).strip()
    if text.lower() in _UNKNOWN:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else None


def _label(value: str | float) -> str:
    """A class label: a whole number without its ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _counts(counts: Counter) -> str:
    return ", ".join(f"{c}: {n}" for c, n in sorted(counts.items()))

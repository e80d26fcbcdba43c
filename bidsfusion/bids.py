"""BIDS input and naming: dataset checks, the pybids layout, label filters, sidecar
metadata, and the one place derivative names are built.

Everything that knows BIDS naming lives here; stages ask this module for
paths instead of formatting file names themselves.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bidsfusion.config import Execution
from bidsfusion.errors import (
    BidsValidationError,
    InputDataError,
    InputMissingError,
    NothingSelectedError,
    UsageError,
)
from bidsfusion.tsv import NA, read_tsv

TEMPLATE_SPACE = "MNI152NLin2009aSym"
GRID_RES = "3mm"
RAW_ENTITIES = (
    "sub",
    "ses",
    "sample",
    "task",
    "tracksys",
    "acq",
    "nuc",
    "voi",
    "ce",
    "trc",
    "stain",
    "rec",
    "dir",
    "run",
    "mod",
    "echo",
    "flip",
    "inv",
    "mt",
    "part",
    "proc",
    "hemi",
    "recording",
    "chunk",
)
"""Entities of raw file names, in BIDS order (the BIDS schema's ``rules.entities``)."""
DERIVED_ENTITIES = ("from", "to", "mode", "space", "res", "den", "label", "desc", "stat")
"""Entities bidsfusion's derivatives add after the source's, in this order."""
ENTITY_ORDER = RAW_ENTITIES + DERIVED_ENTITIES
FINGERPRINT_KEY = "Fingerprint"
"""Derivative sidecar key: the SHA-256 of what made the output (options, inputs, versions)."""
QC_KEY = "QC"
"""Derivative sidecar key: the scan's quality-control measures."""
_ENTITY = re.compile(r"([a-zA-Z]+)-([A-Za-z0-9]+)")
LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")


def check_dataset(bids_dir: Path) -> dict[str, Any]:
    """The parsed dataset_description.json of ``bids_dir``; raises if it is not a dataset."""
    if not bids_dir.exists():
        raise InputMissingError(f"BIDS_DIR {bids_dir} does not exist")
    if not bids_dir.is_dir():
        raise InputMissingError(f"BIDS_DIR {bids_dir} is not a directory")
    description = bids_dir / "dataset_description.json"
    try:
        present = description.exists()
    except OSError as exc:
        raise InputMissingError(
            f"BIDS_DIR {bids_dir} cannot be read ({exc.strerror}); give this user read "
            "and search access to it"
        ) from None
    if not present:
        raise InputMissingError(
            f"{description} is missing: BIDS_DIR must be the root of a BIDS dataset"
        )
    if not description.is_file():
        raise BidsValidationError(f"{description} is not a file: it must be a JSON file")
    try:
        content = json.loads(description.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputMissingError(f"{description} cannot be read: {exc}") from exc
    except ValueError as exc:
        raise BidsValidationError(f"{description} is not valid JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise BidsValidationError(f"{description} must hold a JSON object")
    return content


def validate_dataset(bids_dir: Path) -> None:
    """Check every file under ``sub-*`` against BIDS naming rules (exit 16 on failure)."""
    from bids_validator import BIDSValidator

    validator = BIDSValidator()
    subjects = sorted(p for p in bids_dir.glob("sub-*") if p.is_dir())
    if not subjects:
        raise BidsValidationError(
            f"{bids_dir} holds no sub-* folders; is it the root of a BIDS dataset?"
        )
    bad = [
        f
        for sub in subjects
        for f in sorted(sub.rglob("*"))
        if f.is_file() and not validator.is_bids("/" + f.relative_to(bids_dir).as_posix())
    ]
    if bad:
        raise BidsValidationError(
            f"{len(bad)} file(s) in {bids_dir} are not valid BIDS names, first: "
            f"{bad[0].relative_to(bids_dir)}; rename them or pass --skip-bids-validation"
        )


def load_layout(bids_dir: Path, validate: bool) -> Any:
    """A pybids ``BIDSLayout`` of the raw dataset's file names (derivatives, sourcedata and
    sidecar contents not indexed: :func:`scan_metadata` reads a scan's sidecars, so a bad
    one fails that scan only)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    indexer = BIDSLayoutIndexer(validate=validate, index_metadata=False)
    try:
        return BIDSLayout(str(bids_dir), validate=validate, derivatives=False, indexer=indexer)
    except Exception as exc:
        raise BidsValidationError(f"pybids cannot index {bids_dir}: {exc}") from exc


def normalize_labels(labels: Iterable[str], entity: str = "sub") -> tuple[str, ...]:
    """Labels without their ``sub-``/``ses-`` prefix; path-like labels raise (exit 64)."""
    out = []
    for label in labels:
        bare = label[len(entity) + 1 :] if label.startswith(f"{entity}-") else label
        if not LABEL_RE.match(bare):
            raise UsageError(
                f"invalid {entity} label {label!r}: BIDS labels are letters "
                "and digits only (e.g. 01 or sub-01)"
            )
        out.append(bare)
    return tuple(dict.fromkeys(out))


def select_subjects(available: Sequence[str], requested: Sequence[str]) -> list[str]:
    """The requested subjects (all if none requested); unknown ones raise (exit 18)."""
    if not requested:
        if not available:
            raise NothingSelectedError("the dataset has no subjects")
        return sorted(available)
    missing = [label for label in requested if label not in set(available)]
    if missing:
        shown = ", ".join(sorted(available)[:10]) + (" ..." if len(available) > 10 else "")
        raise NothingSelectedError(
            f"participant label(s) {', '.join(missing)} not found in the dataset; it has: {shown}"
        )
    return list(requested)


def parse_name(name: str) -> tuple[dict[str, str], str]:
    """Entities and suffix of a BIDS file name: ``sub-01_desc-brain_T1w.nii.gz`` ->
    ``({"sub": "01", "desc": "brain"}, "T1w")``."""
    parts = Path(name).name.split(".")[0].split("_")
    entities = dict(m.groups() for p in parts[:-1] if (m := _ENTITY.fullmatch(p)))
    return entities, parts[-1]


def source_entities(path: Path | str) -> dict[str, str]:
    """Every entity of a raw file's name, labels as written (``run-01`` stays ``01``)."""
    return parse_name(str(path))[0]


def derivative_name(entities: Mapping[str, str | None], suffix: str, extension: str) -> str:
    """A BIDS file name from entities in BIDS order, e.g. ``sub-01_desc-brain_T1w.nii.gz``.

    Entities bidsfusion does not know (a raw name read with --skip-bids-validation)
    keep their relative order after the known raw entities.
    """

    def position(key: str) -> int:
        if key in ENTITY_ORDER:
            return ENTITY_ORDER.index(key)
        return len(RAW_ENTITIES)

    keys = sorted((k for k, v in entities.items() if v), key=position)
    parts = [f"{key}-{entities[key]}" for key in keys]
    return "_".join([*parts, suffix]) + extension


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a file: same name, ``.json`` instead of the extensions."""
    return path.with_name(path.name.split(".")[0] + ".json")


def derivative_dir(output_dir: Path, subject: str, session: str | None, datatype: str) -> Path:
    """``OUTPUT_DIR/sub-<L>[/ses-<S>]/<datatype>``."""
    folder = output_dir / f"sub-{subject}"
    if session:
        folder = folder / f"ses-{session}"
    return folder / datatype


def open_dataset(bids_dir: Path, execution: Execution) -> tuple[Any, list[str]]:
    """Check a run's BIDS_DIR and labels; return (layout, selected subjects).

    Raises, in this order: 66 (no dataset), 64 (bad labels), 16 (validation, unless
    skipped), 18 (unknown participant labels).
    """
    check_dataset(bids_dir)
    requested = normalize_labels(execution.participant_label, "sub")
    normalize_labels(execution.session_label, "ses")
    if not execution.skip_bids_validation:
        validate_dataset(bids_dir)
    layout = load_layout(bids_dir, validate=not execution.skip_bids_validation)
    return layout, select_subjects(layout.get_subjects(), requested)


def select_sessions(available: Iterable[str], requested: Sequence[str]) -> tuple[str, ...]:
    """The requested session labels; those no selected subject has raise (exit 18)."""
    existing = sorted(set(available))
    missing = [label for label in requested if label not in existing]
    if missing:
        raise NothingSelectedError(
            f"session label(s) {', '.join(missing)} not found for the selected subjects; "
            f"they have: {', '.join(existing) or 'no sessions'}"
        )
    return tuple(requested)


def scan_metadata(path: Path, bids_dir: Path) -> dict[str, Any]:
    """A scan's sidecar metadata under the BIDS inheritance principle.

    Every ``.json`` from BIDS_DIR down to the scan's folder whose suffix is the scan's
    and whose entities are a subset of its entities applies; deeper files, then
    files with more entities, override. An unreadable or invalid sidecar raises
    InputDataError naming it (exit 65 for that scan only).
    """
    entities, suffix = parse_name(path.name)
    parts = path.parent.relative_to(bids_dir).parts
    found = []
    for depth in range(len(parts) + 1):
        folder = bids_dir.joinpath(*parts[:depth])
        for candidate in folder.glob(f"*{suffix}.json"):
            keys, candidate_suffix = parse_name(candidate.name)
            if candidate_suffix == suffix and keys.items() <= entities.items():
                found.append((depth, len(keys), candidate))
    metadata: dict[str, Any] = {}
    for _, _, sidecar in sorted(found):
        metadata.update(_read_sidecar(sidecar))
    return metadata


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: cannot read the sidecar ({exc})") from None
    except ValueError as exc:
        raise InputDataError(
            f"{path}: invalid JSON sidecar ({exc}); fix it, or remove the scan"
        ) from None
    if not isinstance(content, dict):
        raise InputDataError(f"{path}: a JSON sidecar must hold an object")
    return content


DAYS_COLUMNS = ("days_since_entry", "days")


def session_days(bids_dir: Path, subject: str) -> dict[str, float]:
    """Days since entry per session label, from ``sub-<L>_sessions.tsv``.

    Uses the ``days_since_entry`` (or ``days``) column, else ``acq_time``
    (days after the earliest session); sessions without a value are absent.
    """
    from datetime import datetime

    path = bids_dir / f"sub-{subject}" / f"sub-{subject}_sessions.tsv"
    if not path.is_file():
        return {}
    columns, rows = read_tsv(path)
    days: dict[str, float] = {}
    column = next((c for c in DAYS_COLUMNS if c in columns), None)
    for row in rows:
        label = row.get("session_id", "").removeprefix("ses-")
        value = row.get(column) if column else row.get("acq_time")
        if not label or value in (None, "", NA):
            continue
        try:
            days[label] = (
                float(value) if column else datetime.fromisoformat(value).timestamp() / 86400
            )
        except ValueError as exc:
            raise InputDataError(
                f"{path}: session {label} has an unreadable {column or 'acq_time'} value {value!r}"
            ) from exc
    if column is None and days:
        first = min(days.values())
        days = {label: value - first for label, value in days.items()}
    return days


def participants_table(bids_dir: Path) -> dict[str, dict[str, str]]:
    """Rows of participants.tsv by subject label (without ``sub-``).

    Raises InputMissingError (66) when the file is absent and InputDataError (65)
    when it is empty, has no ``participant_id`` column, no rows, or one participant in
    two rows (which of them would hold would be a guess).
    """
    path = bids_dir / "participants.tsv"
    if not path.exists():
        raise InputMissingError(
            f"{path} is missing; the group level needs it, with a participant_id column "
            "and a column of group labels"
        )
    columns, rows = read_tsv(path)
    if "participant_id" not in columns:
        raise InputDataError(f"{path} has no participant_id column; columns: {', '.join(columns)}")
    labels = [row["participant_id"].removeprefix("sub-") for row in rows]
    repeated = sorted(label for label, n in Counter(labels).items() if label and n > 1)
    if repeated:
        lines = [str(i + 2) for i, label in enumerate(labels) if label == repeated[0]]
        raise InputDataError(
            f"{path} lists sub-{repeated[0]} on lines {', '.join(lines)}"
            f"{f' (and {len(repeated) - 1} more participants twice)' if len(repeated) > 1 else ''}"
            "; keep one row per participant"
        )
    table = {label: row for label, row in zip(labels, rows, strict=True) if label}
    if not table:
        raise InputDataError(f"{path} lists no participants")
    return table

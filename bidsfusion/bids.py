"""BIDS input and output: dataset checks, the pybids layout, label filters, derivative names.

Everything that knows BIDS naming lives here; stages ask this module for
paths instead of formatting file names themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bidsfusion import __version__
from bidsfusion.atomic import write_text
from bidsfusion.errors import (
    BidsValidationError,
    InputDataError,
    InputMissingError,
    NothingSelectedError,
    OutputError,
    UsageError,
)

TEMPLATE_SPACE = "MNI152NLin2009aSym"
GRID_RES = "3mm"
ENTITY_ORDER = (
    "sub",
    "ses",
    "task",
    "acq",
    "run",
    "from",
    "to",
    "mode",
    "space",
    "res",
    "desc",
    "stat",
)
LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")


def check_dataset(bids_dir: Path) -> dict[str, Any]:
    """The parsed dataset_description.json of ``bids_dir``; raises if it is not a dataset."""
    if not bids_dir.exists():
        raise InputMissingError(f"BIDS_DIR {bids_dir} does not exist")
    if not bids_dir.is_dir():
        raise InputMissingError(f"BIDS_DIR {bids_dir} is not a directory")
    description = bids_dir / "dataset_description.json"
    if not description.is_file():
        raise InputMissingError(
            f"{description} is missing: BIDS_DIR must be the root of a BIDS dataset"
        )
    try:
        content = json.loads(description.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputMissingError(f"{description} cannot be read: {exc}") from exc
    except ValueError as exc:
        raise BidsValidationError(f"{description} is not valid JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise BidsValidationError(f"{description} must hold a JSON object")
    return content


def check_locations(bids_dir: Path, output_dir: Path, work_dir: Path | None) -> None:
    """Refuse outputs that would write into the raw dataset (exit 64).

    ``OUTPUT_DIR`` may be ``BIDS_DIR/derivatives/<name>``, nowhere else inside
    BIDS_DIR; the work directory may not be inside BIDS_DIR at all.
    """
    bids, out = bids_dir.resolve(), output_dir.resolve()
    if out == bids:
        raise UsageError(
            f"OUTPUT_DIR {output_dir} is BIDS_DIR: choose another folder, "
            f"e.g. {bids_dir / 'derivatives' / 'bidsfusion'}"
        )
    if out.is_relative_to(bids) and not out.is_relative_to(bids / "derivatives"):
        raise UsageError(
            f"OUTPUT_DIR {output_dir} is inside BIDS_DIR; use a folder outside "
            f"it or under {bids_dir / 'derivatives'}"
        )
    if out == bids / "derivatives":
        raise UsageError(
            f"OUTPUT_DIR {output_dir} must be a sub-folder of "
            f"{bids / 'derivatives'}, e.g. {bids / 'derivatives' / 'bidsfusion'}"
        )
    if work_dir is not None and work_dir.resolve().is_relative_to(bids):
        raise UsageError(f"--work-dir {work_dir} is inside BIDS_DIR; BIDS_DIR is read only")


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
    """A pybids ``BIDSLayout`` of the raw dataset (derivatives and sourcedata not indexed)."""
    from bids import BIDSLayout

    try:
        return BIDSLayout(str(bids_dir), validate=validate, derivatives=False)
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


def derivative_name(entities: Mapping[str, str | None], suffix: str, extension: str) -> str:
    """A BIDS file name from entities in canonical order, e.g. ``sub-01_desc-brain_T1w.nii.gz``."""
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}")
    parts = [f"{key}-{entities[key]}" for key in ENTITY_ORDER if entities.get(key)]
    return "_".join([*parts, suffix]) + extension


def derivative_dir(output_dir: Path, subject: str, session: str | None, datatype: str) -> Path:
    """``OUTPUT_DIR/sub-<L>[/ses-<S>]/<datatype>``."""
    folder = output_dir / f"sub-{subject}"
    if session:
        folder = folder / f"ses-{session}"
    return folder / datatype


def dataset_description(container: str | None = None) -> dict[str, Any]:
    """The derivatives dataset_description.json content."""
    generated = {
        "Name": "bidsfusion",
        "Version": __version__,
        "CodeURL": "https://github.com/bidsfusion/bidsfusion",
    }
    if container:
        generated["Container"] = {
            "Type": "docker" if "docker" in container else "other",
            "Tag": container,
        }
    return {
        "Name": "bidsfusion derivatives",
        "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }


def write_dataset_description(output_dir: Path, container: str | None = None) -> Path:
    """Create OUTPUT_DIR and its dataset_description.json atomically (exit 73 if impossible).

    Concurrent jobs each write the same content under a temporary name and
    rename it into place, so readers never see a partial file.
    """
    path = output_dir / "dataset_description.json"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(dataset_description(container), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(
            f"cannot create OUTPUT_DIR {output_dir}: {exc.strerror or exc}; "
            "choose a writable folder"
        ) from exc
    return path


def open_dataset(config: Any) -> tuple[Any, list[str]]:
    """Check a run's BIDS_DIR, locations and labels; return (layout, selected subjects).

    Raises, in this order: 66 (no dataset), 64 (bad locations or labels),
    16 (validation, unless skipped), 18 (unknown participant labels).
    """
    check_dataset(config.bids_dir)
    check_locations(config.bids_dir, config.output_dir, config.work_dir)
    requested = normalize_labels(config.participant_label, "sub")
    normalize_labels(config.session_label, "ses")
    if not config.skip_bids_validation:
        validate_dataset(config.bids_dir)
    layout = load_layout(config.bids_dir, validate=not config.skip_bids_validation)
    return layout, select_subjects(layout.get_subjects(), requested)


DAYS_COLUMNS = ("days_since_entry", "days")


def session_days(bids_dir: Path, subject: str) -> dict[str, float]:
    """Days since entry per session label, from ``sub-<L>_sessions.tsv``.

    Uses the ``days_since_entry`` (or ``days``) column, else ``acq_time``
    (days after the earliest session); sessions without a value are absent.
    """
    import csv
    from datetime import datetime

    path = bids_dir / f"sub-{subject}" / f"sub-{subject}_sessions.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    days: dict[str, float] = {}
    column = next((c for c in DAYS_COLUMNS if rows and c in rows[0]), None)
    for row in rows:
        label = row.get("session_id", "").removeprefix("ses-")
        value = row.get(column) if column else row.get("acq_time")
        if not label or value in (None, "", "n/a"):
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
    """Rows of participants.tsv by subject label (without ``sub-``); empty if absent."""
    import csv

    path = bids_dir / "participants.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {
            row["participant_id"].removeprefix("sub-"): row
            for row in csv.DictReader(handle, delimiter="\t")
            if row.get("participant_id")
        }

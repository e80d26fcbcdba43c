"""Tab-separated tables, the one format of every table bidsfusion writes and reads.

Values are written as text: floats in their shortest exact form (``repr``), ``None``
and NaN as BIDS's ``n/a``, everything else with ``str``. Tables are written
atomically (temporary name, then rename).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from bidsfusion.atomic import write_text
from bidsfusion.errors import InputDataError, InputMissingError

NA = "n/a"
"""BIDS's spelling of a missing value."""


def format_value(value: object) -> str:
    """The TSV text of one value (see the module docstring)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    if isinstance(value, float):
        return repr(value)
    return str(value)


def tsv_text(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A header line and one line per row; every row has ``len(columns)`` values."""
    lines = ["\t".join(columns)]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a row of {len(row)} values for {len(columns)} columns")
        lines.append("\t".join(format_value(v) for v in row))
    return "\n".join(lines) + "\n"


def write_tsv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """Write a table to ``path`` atomically; returns ``path``."""
    write_text(Path(path), tsv_text(columns, rows))
    return Path(path)


def read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """``(columns, rows)`` of a table, each row a dict column -> text.

    A spreadsheet's byte-order mark, CRLF line ends and blank lines are ignored.
    Raises InputMissingError when the file cannot be read and InputDataError
    (naming the file and line) when it is empty or a row has the wrong number of
    fields.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputMissingError(f"cannot read {path}: {error}") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputDataError(f"{path} is empty: expected a header line of tab-separated columns")
    columns = lines[0].split("\t")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise InputDataError(
                f"{path} line {number}: {len(fields)} fields for {len(columns)} columns"
            )
        rows.append(dict(zip(columns, fields, strict=True)))
    return columns, rows

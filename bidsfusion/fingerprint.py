"""Fingerprints: what identifies the inputs and settings an output was made from.

An output records the fingerprint of what made it; a rerun recomputes the
fingerprint and redoes the output when they differ (other options, another
bidsfusion version, changed input files), and skips it when they match and the
output verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def file_stamp(path: Path, root: Path | None = None) -> dict[str, object]:
    """``{path, mtime_ns, size}`` of a file (-1 if unreadable): what identifies an input.

    ``path`` is given relative to ``root`` when set, so a moved dataset keeps its stamps.
    """
    shown = Path(path).relative_to(root) if root is not None else Path(path)
    try:
        info = Path(path).stat()
    except OSError:
        return {"path": str(shown), "mtime_ns": -1, "size": -1}
    return {"path": str(shown), "mtime_ns": info.st_mtime_ns, "size": info.st_size}


def digest(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a JSON-serialisable record, independent of key order."""
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            sha.update(block)
    return sha.hexdigest()

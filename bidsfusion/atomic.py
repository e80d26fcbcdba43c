"""Atomic writes: produce a file under a temporary name, then rename it into place.

A crash or a concurrent reader never sees a half-written output, and a file
that already exists is replaced in one step or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bidsfusion.errors import OutputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()
"""The process's umask, read once at import (reading it means setting it)."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    The temporary name is unique to the call (concurrent writers of one path do
    not collide) and keeps the suffixes (``.nii.gz``) so writers that sniff the
    extension work; the file gets the mode a new file gets under the process's umask
    (0644 under 022), whatever its writer chose (safetensors writes 0600).
    On error the temporary file is removed; an OS error (a full disk, no
    permission) becomes :class:`~bidsfusion.errors.OutputError` (exit 73) naming
    ``path``, and ``path`` keeps its previous content.
    """
    path = Path(path)
    tmp_path = temporary_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc}; free space or fix permissions, then rerun"
        ) from exc
    finally:
        tmp_path.unlink(missing_ok=True)


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path``, unique to the call, with the same suffixes:
    ``dir/.name.<12 hex>.nii.gz`` for ``dir/name.nii.gz``."""
    suffix = "".join(path.suffixes)
    return path.with_name(f".{path.name.split('.')[0]}.{uuid.uuid4().hex[:12]}{suffix}")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries of ``path`` that a killed writer left behind; return them.

    Only for files one writer at a time produces (a scan's outputs), never for
    files concurrent jobs share (dataset_description.json).
    """
    stem, suffix = path.name.split(".")[0], "".join(path.suffixes)
    pattern = re.compile(rf"\.{re.escape(stem)}\.[0-9a-f]{{12}}{re.escape(suffix)}")
    stale = [p for p in path.parent.glob(f".{stem}.*") if pattern.fullmatch(p.name)]
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def try_lock(path: Path) -> IO[str] | None:
    """An exclusive advisory lock on ``path`` (created if needed) held until the returned
    file is closed, or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed), for the
    read-merge-write of a file concurrent jobs share (the QC and evaluation tables)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

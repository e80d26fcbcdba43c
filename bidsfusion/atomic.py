"""Atomic writes: produce a file under a temporary name, then rename it into place.

A crash or a concurrent reader never sees a half-written output, and a file
that already exists is replaced in one step or not at all.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    The temporary name is unique to the call (concurrent writers of one path do
    not collide) and keeps the suffixes (``.nii.gz``) so writers that sniff the
    extension work; the writer creates the file, so its mode follows the umask.
    On error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = temporary_sibling(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path``, unique to the call, with the same suffixes:
    ``dir/.name.<12 hex>.nii.gz`` for ``dir/name.nii.gz``."""
    suffix = "".join(path.suffixes)
    return path.with_name(f".{path.name.split('.')[0]}.{uuid.uuid4().hex[:12]}{suffix}")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

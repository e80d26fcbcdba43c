"""Checkpoints holding state dicts and plain values only, written atomically.

They load with ``torch.load(..., weights_only=True)``: no pickled classes, so a
checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from bidsfusion.atomic import atomic_path
from bidsfusion.errors import InputDataError, InputMissingError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save(state)`` to a temporary sibling of ``path``, then rename it onto ``path``.

    ``state`` holds state dicts, tensors and plain Python values (numbers,
    strings, lists, dicts, tuples, None) only.
    """
    with atomic_path(Path(path)) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:  # torch's writer reports a full disk this way
            raise OSError(_write_error(exc, tmp.parent)) from exc


def _write_error(error: RuntimeError, folder: Path) -> str:
    """torch's failed write in one line; its "unexpected pos" (a short write) named for
    what it means, a full disk."""
    if "unexpected pos" in str(error):
        free = shutil.disk_usage(folder).free / 2**20
        return f"No space left on device ({free:.1f} MiB free)"
    return str(error).splitlines()[0]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with ``weights_only=True``.

    Raises InputMissingError when ``path`` cannot be read and InputDataError
    (naming the file) when it is corrupt, truncated or holds more than plain values.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise InputMissingError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    except pickle.UnpicklingError as exc:
        raise InputDataError(
            f"checkpoint {path} holds objects other than tensors and plain values, so it was "
            "not written by bidsfusion and is not loaded; remove it"
        ) from exc
    except Exception as exc:
        raise InputDataError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}); remove it"
        ) from exc
    if not isinstance(state, dict):
        raise InputDataError(
            f"checkpoint {path} holds a {type(state).__name__}, not a dict of states"
        )
    return state

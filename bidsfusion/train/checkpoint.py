"""Checkpoints holding state dicts and plain values only, written atomically.

They load with ``torch.load(..., weights_only=True)``: no pickled classes, so a
checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

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
        torch.save(state, tmp)


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
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputDataError(f"checkpoint {path} is corrupt or truncated: {reason}") from exc
    if not isinstance(state, dict):
        raise InputDataError(
            f"checkpoint {path} holds a {type(state).__name__}, not a dict of states"
        )
    return state

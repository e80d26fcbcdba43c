"""What a fold's training leaves to resume from and to use: last.pt, checkpoint.pt, history.tsv.

``last.pt`` (written after every epoch) holds the module, optimizer and scheduler
states with the progress in :class:`FoldState`; ``checkpoint.pt`` the best epoch's
module states. A run resumes only from a ``last.pt`` whose key (settings, numbers
of pairs, data fingerprint) matches; an unreadable one is reported and training
starts over. ``checkpoint.pt`` and ``history.tsv`` are checked against ``last.pt``
and rewritten from it when missing, truncated or stale.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from bidsfusion.checkpoint import load_checkpoint, save_checkpoint
from bidsfusion.errors import BidsFusionError, InputDataError
from bidsfusion.layout import FoldFiles
from bidsfusion.train.history import history_matches, write_history

log = logging.getLogger(__name__)


@dataclass
class FoldState:
    """A fold's progress: epochs done, the best epoch and its states, the history rows."""

    epoch: int = 0
    best_epoch: int = 0
    best_validation_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    best_model: dict[str, Tensor] | None = None
    best_objective: dict[str, Tensor] | None = None


def save_last(
    files: FoldFiles, key: Mapping[str, Any], parts: Mapping[str, Any], state: FoldState
) -> None:
    """Write ``last.pt``: ``key``, the state dict of every part (by name) and ``state``."""
    save_checkpoint(
        files.last,
        {"settings": dict(key), **{n: p.state_dict() for n, p in parts.items()}, **vars(state)},
    )


def save_best(files: FoldFiles, state: FoldState) -> None:
    """Write ``checkpoint.pt``: the best epoch's model and objective states."""
    save_checkpoint(
        files.checkpoint,
        {
            "model": state.best_model,
            "objective": state.best_objective,
            "epoch": state.best_epoch,
            "validation_loss": state.best_validation_loss,
        },
    )


def load_last(files: FoldFiles, key: Mapping[str, Any], parts: Mapping[str, Any]) -> FoldState:
    """Load ``last.pt`` into ``parts`` when its key matches; return its progress.

    A fresh state when there is no ``last.pt``, when it cannot be read (a warning
    names it) or when it was written with another key. States that do not fit
    ``parts`` raise InputDataError naming the file.
    """
    path = files.last
    if not path.exists():
        return FoldState()
    try:
        saved = load_checkpoint(path)
    except BidsFusionError as error:
        log.warning("%s; training from scratch", error)
        return FoldState()
    if saved.get("settings") != dict(key):
        log.warning("%s was written with other settings or data; training from scratch", path)
        return FoldState()
    try:
        for name, part in parts.items():
            part.load_state_dict(saved[name])
        return FoldState(**{k: saved[k] for k in FoldState.__dataclass_fields__})
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise InputDataError(
            f"{path} does not match this model and objective ({exc}); remove it to retrain"
        ) from exc


def repair_outputs(files: FoldFiles, state: FoldState) -> None:
    """Rewrite ``checkpoint.pt`` and ``history.tsv`` from ``state`` where they do not match it."""
    if state.epoch == 0:
        return
    stale = "%s is missing, unreadable or stale; rewritten from %s"
    if not _checkpoint_matches(files.checkpoint, state):
        log.warning(stale, files.checkpoint.name, files.last.name)
        save_best(files, state)
    if not history_matches(files.history, state.history):
        log.warning(stale, files.history.name, files.last.name)
        write_history(files.history, state.history)


def _checkpoint_matches(path: Path, state: FoldState) -> bool:
    try:
        saved = load_checkpoint(path)
    except BidsFusionError:
        return False
    return (
        saved.get("epoch") == state.best_epoch
        and isinstance(saved.get("model"), dict)
        and isinstance(saved.get("objective"), dict)
    )

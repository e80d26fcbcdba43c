"""How training shows its progress: a one-line, in-place bar for the epoch's steps on a
terminal (with the last epoch's validation loss, retrieval and the fold's time left), and
a log line at every tenth of the epochs and at the last (every epoch with ``-v``), each
with the time left."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping

MILESTONES = 10
"""Epoch log lines per fold without ``-v``."""


def is_milestone(epoch: int, epochs: int) -> bool:
    """Whether ``epoch`` (1-based) of ``epochs`` ends one of :data:`MILESTONES` equal parts:
    the first epoch, every tenth of them and the last are logged at INFO."""
    step = max(1, epochs // MILESTONES)
    return epoch == 1 or epoch == epochs or epoch % step == 0


def bar_status(row: Mapping[str, float], left: str) -> str:
    """What the bar shows after an epoch's ``row`` (a history row): its validation loss,
    its first latent retrieval against chance, and ``left`` (:func:`timing.time_left`).
    Built from the epoch's end values, so drawing it never waits on the device."""
    parts = [f"val {row['val_loss']:.4g}"]
    retrieval = [k for k in row if k.startswith("val_retrieval_") and k != "val_retrieval_chance"]
    if retrieval:
        parts.append(f"retrieval {row[retrieval[0]]:.2f}/{row['val_retrieval_chance']:.2f}")
    return "; ".join([*parts, left])


class ProgressBar:
    """An in-place one-line bar on stderr, e.g.
    ``fold-0: epoch 3/200 [#####.....] 5/10 | val 4.1; retrieval 0.31/0.06; ...``, cut to
    the terminal's width (the status first) so that it never wraps."""

    width = 30

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def reporter(self, label: str, total: int, status: str = "") -> Callable[[int], None]:
        """A callback drawing ``done`` of ``total`` steps after ``label``, then ``status``."""
        columns = shutil.get_terminal_size().columns

        def draw(done: int) -> None:
            if self.enabled:
                filled = self.width * done // total
                bar = "#" * filled + "." * (self.width - filled)
                head = f"{label} [{bar}] {done}/{total}"
                tail = f" | {status}" if status else ""
                sys.stderr.write("\r" + head + tail[: max(0, columns - 1 - len(head))])
                sys.stderr.flush()

        return draw

    def clear(self) -> None:
        """Erase the bar so that the epoch's log line starts clean."""
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

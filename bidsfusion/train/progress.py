"""How training shows its progress: a one-line, in-place bar for the epoch's steps on a
terminal, and a log line at every tenth of the epochs and at the last (every epoch with
``-v``), each with the time left."""

from __future__ import annotations

import sys
from collections.abc import Callable

MILESTONES = 10
"""Epoch log lines per fold without ``-v``."""


def is_milestone(epoch: int, epochs: int) -> bool:
    """Whether ``epoch`` (1-based) of ``epochs`` ends one of :data:`MILESTONES` equal parts:
    the first epoch, every tenth of them and the last are logged at INFO."""
    step = max(1, epochs // MILESTONES)
    return epoch == 1 or epoch == epochs or epoch % step == 0


class ProgressBar:
    """An in-place one-line bar on stderr, e.g. ``fold-0: epoch 3/200 [#####.....] 5/10``."""

    width = 30

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def reporter(self, label: str, total: int) -> Callable[[int], None]:
        """A callback drawing ``done`` of ``total`` steps after ``label``."""

        def draw(done: int) -> None:
            if self.enabled:
                filled = self.width * done // total
                bar = "#" * filled + "." * (self.width - filled)
                sys.stderr.write(f"\r{label} [{bar}] {done}/{total}")
                sys.stderr.flush()

        return draw

    def clear(self) -> None:
        """Erase the bar so that the epoch's log line starts clean."""
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

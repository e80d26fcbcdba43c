"""A one-line, in-place progress bar for training epochs (quiet when stderr is not a TTY)."""

from __future__ import annotations

import sys
from collections.abc import Callable


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

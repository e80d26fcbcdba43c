"""How long work took and how long it has left, in words for a log line."""

from __future__ import annotations

import time


def time_left(started: float, done: int, left: int) -> str:
    """``"2 min 5 s elapsed, about 1 min 40 s left"`` after ``done`` of ``done + left``
    units begun at ``time.perf_counter()`` ``started`` (the rate of those done)."""
    elapsed = time.perf_counter() - started
    remaining = elapsed / max(done, 1) * left
    return f"{duration(elapsed)} elapsed, about {duration(remaining)} left"


def duration(seconds: float) -> str:
    """``"1 h 2 min"``, ``"3 min 20 s"`` or ``"45 s"``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"

"""Running the selected group analyses after the evaluation.

``--analysis NAME`` (repeatable) selects registered analyses, all of them by
default and none with ``--analysis none``. Each runs on its own: one that fails is
reported in one line naming it, the others still run, and the level then exits 65.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from bidsfusion.errors import BidsFusionError, InputDataError, UsageError
from bidsfusion.plugins import registered

log = logging.getLogger("bidsfusion.group")

NONE = "none"


def selected_analyses(requested: Sequence[str]) -> dict[str, Callable[[Any], None]]:
    """The analyses ``--analysis`` names (all when empty, none for ``none``), checked
    against the registered ones (64 listing them)."""
    available = registered("analyses")
    if list(requested) == [NONE]:
        return {}
    unknown = [name for name in requested if name not in available]
    if unknown or NONE in requested:
        names = ", ".join(sorted(available)) or "(none registered)"
        wrong = ", ".join(unknown) or f"{NONE} together with other names"
        raise UsageError(f"--analysis {wrong}: choose among {names}, or {NONE} alone")
    chosen = list(dict.fromkeys(requested)) or sorted(available)
    return {name: available[name] for name in chosen}


def run_analyses(analyses: dict[str, Callable[[Any], None]], context: Any) -> None:
    """Run every analysis on ``context``; InputDataError (65) after all ran when one failed."""
    failed = []
    for name, analysis in analyses.items():
        log.info("analysis %s: running", name)
        try:
            analysis(context)
        except BidsFusionError as error:
            log.error("analysis %s failed: %s", name, error)
            failed.append(name)
        except Exception as error:  # a plugin's bug must not stop the other analyses
            log.error("analysis %s failed: %s: %s", name, type(error).__name__, error)
            failed.append(name)
    if failed:
        raise InputDataError(f"analysis {', '.join(failed)} failed (see the log); the others ran")

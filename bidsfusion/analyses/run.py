"""Running the selected group analyses after the evaluation.

``--analysis NAME`` (repeatable) selects registered analyses, all of them by
default and none with ``--analysis none``. Each runs on its own: one that fails is
reported in one line naming it, the others still run, and the level then exits 65
(66 when every failure was missing input, such as a deleted checkpoint; 70 when an
analysis's own code raised something other than a BidsFusionError: a plugin's bug).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from bidsfusion.analyses.context import Analysis, AnalysisContext
from bidsfusion.errors import BidsFusionError, InputDataError, PluginBugError, UsageError, one_line
from bidsfusion.plugins import owner, registered

log = logging.getLogger("bidsfusion.group")

NONE = "none"


def selected_analyses(requested: Sequence[str]) -> dict[str, Analysis]:
    """The analyses ``--analysis`` names (all when empty, none for ``none``), checked
    against the registered ones (64 listing them)."""
    available = registered("analyses")
    if list(requested) == [NONE]:
        return {}
    unknown = [name for name in requested if name not in available]
    if unknown:
        names = ", ".join(sorted(available)) or "(none registered)"
        raise UsageError(f"--analysis {', '.join(unknown)}: choose among {names}, or {NONE} alone")
    chosen = list(dict.fromkeys(requested)) or sorted(available)
    return {name: available[name] for name in chosen}


def run_analyses(analyses: Mapping[str, Analysis], context: AnalysisContext) -> None:
    """Run every analysis on ``context``; when some failed, raise after all ran.

    An analysis that raises a :class:`BidsFusionError` failed for a reason the user can
    act on; any other exception is a bug of the plugin that registered it, named in the
    log. Raised: :class:`PluginBugError` (70) when a bug was among the failures, else the
    failures' own error class when they share one (e.g. 66 for a missing model), else
    InputDataError (65)."""
    failed: dict[str, type[BidsFusionError]] = {}
    bugs: list[str] = []
    for name, analysis in analyses.items():
        log.info("analysis %s: running", name)
        try:
            analysis(context)
        except BidsFusionError as error:
            log.error("analysis %s failed: %s", name, error)
            failed[name] = type(error)
        except Exception as error:  # a plugin's bug must not stop the other analyses
            plugin = owner("analyses", name) if name in registered("analyses") else "?"
            log.error("analysis %s failed: a bug in plugin %r: %s: %s; report it to its "
                      "authors", name, plugin, type(error).__name__, one_line(error))  # fmt: skip
            failed[name] = PluginBugError
            bugs.append(f"{name} (plugin {plugin!r})")
    if bugs:
        raise PluginBugError(
            f"analysis {', '.join(bugs)} failed with an internal error of the plugin's own "
            "code (see the log; report it to its authors); the other analyses ran"
        )
    if failed:
        kinds = set(failed.values())
        kind = kinds.pop() if len(kinds) == 1 else InputDataError
        raise kind(f"analysis {', '.join(failed)} failed (see the log); the others ran")

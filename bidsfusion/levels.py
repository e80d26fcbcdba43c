"""Dispatching a validated configuration to its analysis level."""

from __future__ import annotations

from bidsfusion.config import RunConfig
from bidsfusion.errors import AnalysisLevelError

LEVELS = ("participant", "group")


def run_level(config: RunConfig) -> None:
    """Run ``config.analysis_level`` (exit 17 if it is neither participant nor group)."""
    if config.analysis_level == "participant":
        from bidsfusion import participant

        participant.run(config)
    elif config.analysis_level == "group":
        from bidsfusion import group

        group.run(config)
    else:
        raise AnalysisLevelError(
            f"unknown analysis level {config.analysis_level!r}; choose one of: {', '.join(LEVELS)}"
        )

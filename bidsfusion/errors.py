"""User-facing errors, each carrying the BIDS-Apps exit code it maps to.

The CLI prints ``str(error)`` as one line on stderr and exits with
``error.exit_code``; a traceback is shown only with ``-v``.
"""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """An exception's message folded onto one line (its type name if empty)."""
    return " ".join(str(error).split()) or type(error).__name__


class BidsFusionError(Exception):
    """Base class: a failure the user can act on (exit code 1)."""

    exit_code: int = 1


class BidsValidationError(BidsFusionError):
    """The input dataset failed BIDS validation (exit 16)."""

    exit_code = 16


class AnalysisLevelError(BidsFusionError):
    """Unknown analysis level (exit 17)."""

    exit_code = 17


class NothingSelectedError(BidsFusionError):
    """Filters (participant, session, task labels) selected nothing (exit 18)."""

    exit_code = 18


class UsageError(BidsFusionError):
    """Bad command-line usage or configuration value (exit 64)."""

    exit_code = 64


class InputDataError(BidsFusionError):
    """Input data exist but are unusable: wrong shape, NaNs, missing metadata (exit 65)."""

    exit_code = 65


class InputMissingError(BidsFusionError):
    """An input file or folder is missing or unreadable (exit 66)."""

    exit_code = 66


class OutputError(BidsFusionError):
    """An output file or folder cannot be created (exit 73)."""

    exit_code = 73


class PluginError(BidsFusionError):
    """A plugin misbehaved: duplicate names, a broken entry point (exit 1)."""


class PluginBugError(PluginError):
    """A plugin's own code raised an unexpected exception (exit 70, ``EX_SOFTWARE``):
    a bug to report to the plugin's authors, not a problem with the data."""

    exit_code = 70

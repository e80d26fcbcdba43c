"""Running the real CLI in-process and capturing what it prints (fixtures and helpers)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from bidsfusion.cli import main


@dataclass
class CliResult:
    """Exit code and captured streams of one CLI call."""

    code: int
    out: str
    err: str


def run_main(*args: object) -> CliResult:
    """Run ``bidsfusion ARGS...`` in-process, capturing the streams (usable outside tests)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_info:
            code = int(exit_info.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())

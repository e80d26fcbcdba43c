"""Shared fixtures: plugin autoload off, a tiny BIDS dataset, and an in-process CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ["BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from runner import CliResult
from tiny_bids import write_tiny_bids

from bidsfusion.cli import main


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``bidsfusion ARGS...`` in-process through the real entry point."""

    def _run(*args: object) -> CliResult:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(int(exit_info.value.code or 0), captured.out, captured.err)

    return _run


@pytest.fixture
def tiny_bids(tmp_path: Path) -> Path:
    """A fresh minimal BIDS dataset under tmp_path/bids."""
    return write_tiny_bids(tmp_path / "bids")


@pytest.fixture
def registry() -> dict[str, object]:
    """The built-in objective terms by name, registered through their hook."""
    from bidsfusion.objectives import builtin

    found: dict[str, object] = {}
    builtin.register_objectives(found.__setitem__)
    return found

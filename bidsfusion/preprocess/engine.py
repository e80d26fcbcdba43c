"""Running a subject's nipype workflow and turning node crashes into one-line errors."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bidsfusion import errors
from bidsfusion.config import Execution, Participant, RunConfig
from bidsfusion.errors import BidsFusionError, UsageError

log = logging.getLogger("bidsfusion.participant")

POLL_SECONDS = 0.05
"""How often nipype's scheduler looks for finished and ready nodes (its default, 2 s,
and 0.2 s leave the cores idle between the many short steps: 8 subjects took 34.5 s
at 0.2 s, 32.2 s at 0.05 s with ``--nprocs 2``)."""
ERROR_LINE = re.compile(r"^bidsfusion\.errors\.(\w+): (.*)$")


def nipype_plugins() -> list[str]:
    """The names nipype knows its execution plugins by (``Linear``, ``MultiProc``, ...)."""
    from nipype.pipeline import plugins

    return sorted(
        name.removesuffix("Plugin")
        for name, value in vars(plugins).items()
        if name.endswith("Plugin") and isinstance(value, type)
    )


def check_plugin(name: str) -> None:
    """Raise UsageError (exit 64) unless ``name`` is one of nipype's plugins."""
    known = nipype_plugins()
    if name not in known:
        raise UsageError(
            f"--nipype-plugin {name} is not a nipype plugin; choose one of {', '.join(known)}"
        )


def plugin_settings(participant: Participant, execution: Execution) -> tuple[str, dict[str, Any]]:
    """nipype's (plugin name, plugin_args) from the nipype plugin options, nprocs and mem."""
    check_plugin(participant.nipype_plugin)
    args: dict[str, Any] = {}
    if participant.nipype_plugin_args:
        args = _read_plugin_args(Path(participant.nipype_plugin_args))
    if participant.nipype_plugin == "MultiProc":
        args.setdefault("n_procs", execution.nprocs)
        if execution.mem_gb:
            args.setdefault("memory_gb", execution.mem_gb)
        args.setdefault("raise_insufficient", False)
    return participant.nipype_plugin, args


def _read_plugin_args(path: Path) -> dict[str, Any]:
    import yaml

    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.InputMissingError(
            f"--nipype-plugin-args {path} cannot be read: {exc.strerror or exc}"
        ) from exc
    except yaml.YAMLError as exc:
        raise UsageError(
            f"--nipype-plugin-args {path} is not valid YAML: {' '.join(str(exc).split())}"
        ) from exc
    if not isinstance(content, dict):
        raise UsageError(f"--nipype-plugin-args {path} must hold a mapping of plugin arguments")
    return content.get("plugin_args", content)


def make_plugin(name: str, args: dict[str, Any]) -> Any:
    """What ``Workflow.run`` takes as its plugin: the name, or for MultiProc a plugin
    whose workers die with bidsfusion (even on SIGKILL)."""
    if name != "MultiProc":
        return name
    from bidsfusion.preprocess.multiproc import OrphanFreeMultiProcPlugin

    return OrphanFreeMultiProcPlugin(plugin_args=args)


def run_workflow(
    wf: Any, config: RunConfig, status_callback: Callable[[Any, str], None] | None = None
) -> dict[str, BidsFusionError]:
    """Run ``wf``; return the error of each crashed node by its full name (empty: clean).

    ``status_callback(node, status)`` (status ``start``, ``end`` or ``exception``)
    is handed to the nipype plugin, which calls it as nodes run.
    """
    crash_dir = Path(wf.base_dir) / "crash" / wf.name
    wf.config["execution"].update(
        {
            "crashdump_dir": str(crash_dir),
            "crashfile_format": "txt",
            "stop_on_first_crash": False,
            "remove_unnecessary_outputs": False,
            "create_report": False,
            "poll_sleep_duration": POLL_SECONDS,
        }
    )
    for old in crash_dir.glob("crash-*.txt"):
        old.unlink()
    _quiet_nipype(config.execution.verbose)
    plugin, args = plugin_settings(config.participant, config.execution)
    if status_callback is not None and not plugin.endswith("Graph"):  # graph plugins refuse it
        args["status_callback"] = status_callback
    # MultiProc collects garbage before every submission; frozen, the graph's objects are
    # not scanned (else 0.15 s a submission over 8 subjects' nodes, a third of the wall time)
    gc.freeze()
    try:
        wf.run(plugin=make_plugin(plugin, args), plugin_args=args)
    except RuntimeError as exc:
        failures = dict(crash_report(path) for path in sorted(crash_dir.glob("crash-*.txt")))
        if not failures:
            raise BidsFusionError(f"workflow {wf.name} failed: {exc}") from exc
        return failures
    finally:
        gc.unfreeze()
    return {}


def _quiet_nipype(verbose: int) -> None:
    """nipype's own log, through its handler only: silent (bidsfusion reports crashes
    itself), node errors with ``-v``, everything with ``-vv``."""
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    level = {0: "CRITICAL", 1: "ERROR"}.get(verbose, "INFO")
    for name in ("workflow", "interface", "utils"):
        nipype_config.set("logging", f"{name}_level", level)
    nipype_logging.update_logging(nipype_config)
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        logging.getLogger(name).propagate = False


def crash_report(path: Path) -> tuple[str, BidsFusionError]:
    """(full node name, user-facing error) of a nipype crash file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    node = re.search(r"^Node: (\S+)", text, re.MULTILINE)
    return (node.group(1) if node else path.name), crash_error(path, text)


def crash_error(path: Path, text: str) -> BidsFusionError:
    """The user-facing error recorded in a nipype crash file (the node's last error line)."""
    for line in reversed(text.splitlines()):
        match = ERROR_LINE.match(line.strip())
        if match:
            kind = getattr(errors, match.group(1), BidsFusionError)
            return kind(match.group(2))
    node = re.search(r"Node: (\S+)", text)
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    return BidsFusionError(
        f"step {node.group(1) if node else '?'} failed: {last} (details: {path})"
    )

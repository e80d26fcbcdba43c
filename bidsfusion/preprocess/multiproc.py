"""nipype's MultiProc plugin with workers that die with bidsfusion, however it dies."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from nipype.pipeline.plugins.multiproc import MultiProcPlugin, process_initializer

from bidsfusion.preprocess.dependencies import DependencyMatrix

PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal this process gets when its parent thread exits."""


class OrphanFreeMultiProcPlugin(MultiProcPlugin):
    """MultiProc whose workers get SIGKILL from the kernel when their parent dies, and
    whose scheduler counts dependencies in O(non-zeros) (:class:`DependencyMatrix`).

    The pool starts its workers in the thread that calls ``pool.submit``: nipype's
    scheduler loop, i.e. the thread running ``Workflow.run``, which blocks until the
    pool is shut down (no worker is respawned later: nipype sets no
    ``max_tasks_per_child``). So that thread, which PR_SET_PDEATHSIG watches,
    outlives every worker.
    """

    def __init__(self, plugin_args: dict[str, Any] | None = None) -> None:
        super().__init__(plugin_args=plugin_args)
        self.pool.shutdown()  # nipype's pool, before it started any worker
        self.pool = ProcessPoolExecutor(
            max_workers=self.processors,
            initializer=init_worker,
            initargs=(self._cwd, os.getpid()),
            mp_context=workers_context(self.plugin_args.get("mp_context")),
        )

    def _generate_dependency_list(self, graph: Any) -> None:
        super()._generate_dependency_list(graph)
        self.depidx = DependencyMatrix(self.depidx)


def workers_context(name: str | None) -> mp.context.BaseContext:
    """The context that starts the workers as children of this process: nipype's
    ``mp_context`` (else Python's default), with spawn in place of forkserver (whose
    workers are its children, and hold it alive while they run)."""
    context = mp.get_context(name)
    return mp.get_context("spawn") if context.get_start_method() == "forkserver" else context


def init_worker(cwd: str, parent_pid: int) -> None:
    """nipype's worker set-up, after tying the worker's life to its parent's."""
    die_with_parent(parent_pid)
    process_initializer(cwd)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux only; elsewhere
    nothing); exit at once if the parent ``parent_pid`` died before that was set."""
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return
    prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), *[ctypes.c_ulong(0)] * 3)
    if os.getppid() != parent_pid:
        os._exit(1)

"""The nipype engine: execution plugin settings and node crashes as one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nipype.pipeline import engine as pe

from bidsfusion.config import make_config
from bidsfusion.errors import InputDataError, InputMissingError, UsageError
from bidsfusion.preprocess.engine import check_plugin, plugin_settings, run_workflow
from bidsfusion.preprocess.interfaces import FALFF


def _settings(tmp_path: Path, **options):
    """The (participant, execution) settings plugin_settings takes."""
    config = _config(tmp_path, **options)
    return config.participant, config.execution


def _config(tmp_path: Path, **options):
    return make_config(
        {
            "bids_dir": tmp_path / "bids",
            "output_dir": tmp_path / "out",
            "analysis_level": "participant",
            **options,
        }
    )


def test_multiproc_takes_nprocs_and_mem(tmp_path: Path) -> None:
    name, args = plugin_settings(*_settings(tmp_path, nprocs=3, mem_gb=8.0))
    assert name == "MultiProc"
    assert args == {"n_procs": 3, "memory_gb": 8.0, "raise_insufficient": False}


@pytest.mark.parametrize("wrapped", [False, True])
def test_any_plugin_with_yaml_arguments(tmp_path: Path, wrapped: bool) -> None:
    text = "sbatch_args: --time=2:00:00 --mem=8G\nmax_jobs: 50\n"
    if wrapped:
        text = "plugin_args:\n" + "".join(f"  {line}\n" for line in text.splitlines())
    (tmp_path / "slurm.yml").write_text(text)
    settings = _settings(tmp_path, nipype_plugin="SLURM", nipype_plugin_args=tmp_path / "slurm.yml")
    assert plugin_settings(*settings) == (
        "SLURM",
        {"sbatch_args": "--time=2:00:00 --mem=8G", "max_jobs": 50},
    )


@pytest.mark.parametrize("name", ["Nope", "multiproc", ""])
def test_an_unknown_plugin_is_a_usage_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError) as raised:
        plugin_settings(*_settings(tmp_path, nipype_plugin=name))
    message = str(raised.value)
    assert raised.value.exit_code == 64
    assert f"--nipype-plugin {name} is not a nipype plugin" in message
    assert all(known in message for known in ("Linear, ", "MultiProc, ", "SLURM, ", "SGE, "))
    assert "\n" not in message


@pytest.mark.parametrize("name", ["MultiProc", "Linear", "SLURM", "SGEGraph", "PBS"])
def test_nipype_plugins_pass_the_check(name: str) -> None:
    from nipype.pipeline import plugins

    assert check_plugin(name) is None
    assert isinstance(getattr(plugins, f"{name}Plugin"), type)  # what nipype runs for the name


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (None, InputMissingError, "cannot be read"),
        ("a: [1, 2", UsageError, "not valid YAML"),
        ("- 1\n- 2\n", UsageError, "must hold a mapping"),
    ],
)
def test_bad_plugin_arguments_file(tmp_path: Path, content, error, words) -> None:
    path = tmp_path / "args.yml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=words) as raised:
        plugin_settings(*_settings(tmp_path, nipype_plugin_args=path))
    assert str(path) in str(raised.value)


def test_a_crashed_node_comes_back_as_its_one_line_error(tmp_path: Path) -> None:
    """fALFF of a 3-volume series (6 s, shorter than a 0.01 Hz period): the node's InputDataError
    survives."""
    bold = tmp_path / "short_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 4, 3)), np.eye(4)), bold)
    wf = pe.Workflow(name="crash_test", base_dir=str(tmp_path / "work"))
    wf.add_nodes([pe.Node(FALFF(in_file=str(bold), repetition_time=2.0), name="falff")])
    failures = run_workflow(wf, _config(tmp_path, nipype_plugin="Linear"))
    assert list(failures) == ["crash_test.falff"]
    failure = failures["crash_test.falff"]
    assert isinstance(failure, InputDataError)
    assert "needs one full period" in str(failure)
    assert "\n" not in str(failure)


NAPPING_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    from bidsfusion.config import make_config
    from bidsfusion.preprocess.engine import run_workflow


    def nap(marker):
        import os, pathlib, time

        pathlib.Path(marker).write_text(str(os.getpid()))
        time.sleep(60)


    root = Path(sys.argv[1])
    wf = pe.Workflow(name="naps", base_dir=str(root / "work"))
    for i in range(2):
        node = pe.Node(Function(input_names=["marker"], function=nap), name=f"nap{i}")
        node.inputs.marker = str(root / f"napping{i}")
        wf.add_nodes([node])
    config = {"bids_dir": root, "output_dir": root, "analysis_level": "participant"}
    run_workflow(wf, make_config({**config, "nipype_plugin": "MultiProc", "nprocs": 2}))
    """
)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie has died, unreaped)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _children(parent: int) -> set[int]:
    """The pids whose parent is ``parent``, from /proc/*/stat."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(parent):
                found.add(int(entry.name))
    return found


def _survivors(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running."""
    return {pid for pid in pids if _alive(pid)}


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether ``condition()`` came true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_multiproc_workers_die_with_a_killed_run(tmp_path: Path) -> None:
    """SIGKILL of a run mid-workflow: its MultiProc workers, busy napping, go at once."""
    script = tmp_path / "napping_run.py"
    script.write_text(NAPPING_RUN)
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "NIPYPE_NO_ET": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    markers = [tmp_path / f"napping{i}" for i in range(2)]
    workers: set[int] = set()
    try:
        napping = _wait_for(lambda: all(m.exists() for m in markers) or run.poll() is not None, 15)
        workers = _children(run.pid)
        assert napping and run.poll() is None, (tmp_path / "run.log").read_text()
        assert {int(m.read_text()) for m in markers} <= workers
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=5)
        gone = _wait_for(lambda: not _survivors(workers), 3)
        assert gone, f"workers {_survivors(workers)} outlived the run"
    finally:
        run.kill()
        run.wait(timeout=5)
        log.close()
        for pid in _survivors(workers):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_whose_parent_is_already_gone_exits() -> None:
    """The parent died between fork and prctl: ``getppid`` is not the pid it was given."""
    code = "from bidsfusion.preprocess.multiproc import die_with_parent as d; d(1); print('alive')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (1, "")


def test_dependency_counts_match_scipy_as_jobs_finish() -> None:
    import networkx as nx
    import scipy.sparse as ssp

    from bidsfusion.preprocess.dependencies import DependencyMatrix
    from bidsfusion.preprocess.multiproc import OrphanFreeMultiProcPlugin

    rng = np.random.default_rng(0)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(60))
    graph.add_edges_from((i, j) for i in range(60) for j in range(i + 1, 60) if rng.random() < 0.1)
    plugin = OrphanFreeMultiProcPlugin(plugin_args={"n_procs": 1})
    try:
        plugin._generate_dependency_list(graph)
    finally:
        plugin.pool.shutdown()
    depidx = plugin.depidx
    assert isinstance(depidx, DependencyMatrix)
    for finished in [0, 7, 31, 59]:
        expected = ssp.lil_matrix(depidx).sum(axis=0)
        counts = depidx.sum(axis=0)
        assert counts.shape == (1, 60) and counts.dtype == expected.dtype
        np.testing.assert_array_equal(counts, np.asarray(expected))
        row = depidx.getrowview(finished)  # what nipype does when a job ends
        row[row.nonzero()] = 0
    assert 0 < depidx.sum() < graph.number_of_edges()

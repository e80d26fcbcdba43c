"""The nipype engine: execution plugin settings and node crashes as one-line errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nipype.pipeline import engine as pe

from bidsfusion.config import make_config
from bidsfusion.errors import InputDataError, InputMissingError, UsageError
from bidsfusion.preprocess.engine import plugin_settings, run_workflow
from bidsfusion.preprocess.interfaces import FALFF


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
    name, args = plugin_settings(_config(tmp_path, nprocs=3, mem_gb=8.0))
    assert name == "MultiProc"
    assert args == {"n_procs": 3, "memory_gb": 8.0, "raise_insufficient": False}


@pytest.mark.parametrize("wrapped", [False, True])
def test_any_plugin_with_yaml_arguments(tmp_path: Path, wrapped: bool) -> None:
    text = "sbatch_args: --time=2:00:00 --mem=8G\nmax_jobs: 50\n"
    if wrapped:
        text = "plugin_args:\n" + "".join(f"  {line}\n" for line in text.splitlines())
    (tmp_path / "slurm.yml").write_text(text)
    config = _config(tmp_path, nipype_plugin="SLURM", nipype_plugin_args=tmp_path / "slurm.yml")
    assert plugin_settings(config) == (
        "SLURM",
        {"sbatch_args": "--time=2:00:00 --mem=8G", "max_jobs": 50},
    )


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
        plugin_settings(_config(tmp_path, nipype_plugin_args=path))
    assert str(path) in str(raised.value)


def test_a_crashed_node_comes_back_as_its_one_line_error(tmp_path: Path) -> None:
    """fALFF of a 3-volume series: the band holds no bin; the node's InputDataError survives."""
    bold = tmp_path / "short_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 4, 3)), np.eye(4)), bold)
    wf = pe.Workflow(name="crash_test", base_dir=str(tmp_path / "work"))
    wf.add_nodes([pe.Node(FALFF(in_file=str(bold), repetition_time=2.0), name="falff")])
    failures = run_workflow(wf, _config(tmp_path, nipype_plugin="Linear"))
    assert list(failures) == ["crash_test.falff"]
    failure = failures["crash_test.falff"]
    assert isinstance(failure, InputDataError)
    assert "holds no frequency bin" in str(failure)
    assert "\n" not in str(failure)

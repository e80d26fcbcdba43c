"""Where a run may write: OUTPUT_DIR must be empty, absent or bidsfusion's; a writable work dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bidsfusion.locations import raw_link


def _error_line(result) -> str:
    return result.err.strip().splitlines()[-1]


def test_a_raw_dataset_as_output_dir_is_refused_and_untouched(run_cli, tiny_bids, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset_description.json").write_text('{"Name": "raw", "BIDSVersion": "1.8.0"}')
    (other / "sub-01").mkdir()
    before = sorted(p.relative_to(other) for p in other.rglob("*"))
    result = run_cli(tiny_bids, other, "participant")
    assert result.code == 64, result.err
    assert str(other) in _error_line(result) and "no known tool" in _error_line(result)
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == before
    assert json.loads((other / "dataset_description.json").read_text())["Name"] == "raw"


def test_a_folder_of_other_files_is_refused(run_cli, tiny_bids, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli(tiny_bids, out, "participant")
    assert result.code == 64
    assert "is not empty (notes.txt)" in _error_line(result)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_another_tools_derivatives_are_refused(run_cli, tiny_bids, tmp_path):
    out = tmp_path / "fmriprep"
    out.mkdir()
    description = {"Name": "x", "DatasetType": "derivative", "GeneratedBy": [{"Name": "fMRIPrep"}]}
    (out / "dataset_description.json").write_text(json.dumps(description))
    result = run_cli(tiny_bids, out, "participant")
    assert result.code == 64
    assert "made by fMRIPrep" in _error_line(result)


@pytest.mark.parametrize("where", ["file", "default-is-a-file", "proc"])
def test_an_unwritable_work_dir_is_73_before_any_work(run_cli, tiny_bids, tmp_path, where):
    out = tmp_path / "out"
    args = []
    if where == "file":
        work = tmp_path / "work-file"
        work.write_text("")
        args = ["-w", work]
    elif where == "default-is-a-file":
        out.mkdir()
        work = out / ".bidsfusion-work"
        work.write_text("")
    else:
        work = Path("/proc/bidsfusion-work")  # not writable, even by root
        args = ["-w", work]
    result = run_cli(tiny_bids, out, "participant", *args)
    assert result.code == 73, result.err
    assert str(work) in _error_line(result) and "--work-dir" in _error_line(result)
    if where != "proc":
        assert "is a file, not a folder" in _error_line(result)
    assert not (out / "dataset_description.json").exists()


def test_raw_link_is_relative_inside_bids_dir_else_a_uri(tmp_path):
    bids = tmp_path / "bids"
    assert raw_link(bids, bids / "derivatives" / "bidsfusion") == "../.."
    assert raw_link(bids, tmp_path / "out") == bids.resolve().as_uri()

"""Atomic writes: no partial file under the final name, umask-respecting modes, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from bidsfusion.atomic import atomic_path, write_text
from bidsfusion.locations import dataset_description, write_dataset_description


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "sub" / "x.tsv", "a\tb\n")
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "x.tsv").stat().st_mode & 0o777 == 0o644


def _write_many(output_dir: str) -> None:
    for _ in range(40):
        write_dataset_description(Path(output_dir), "docker://bidsfusion:test")


def test_concurrent_jobs_never_expose_a_partial_dataset_description(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(tmp_path),)) for _ in range(4)]
    for writer in writers:
        writer.start()
    path = tmp_path / "dataset_description.json"
    reads = 0
    while any(w.is_alive() for w in writers):
        if path.exists():
            assert json.loads(path.read_text()) == dataset_description("docker://bidsfusion:test")
            reads += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert reads > 0
    assert [p.name for p in tmp_path.iterdir()] == ["dataset_description.json"]


def test_stale_temporaries_of_one_file_are_removed(tmp_path: Path) -> None:
    from bidsfusion.atomic import remove_stale_temporaries, temporary_sibling

    target = tmp_path / "sub-01_T1w.nii.gz"
    stale = temporary_sibling(target)
    stale.write_bytes(b"half")
    others = [tmp_path / ".sub-01_T1w.notours.nii.gz", temporary_sibling(tmp_path / "sub-01.json")]
    for other in others:
        other.write_bytes(b"keep")
    assert remove_stale_temporaries(target) == [stale]
    assert not stale.exists() and all(other.exists() for other in others)


def test_a_file_written_with_a_private_mode_gets_the_umask_mode(tmp_path: Path) -> None:
    import os

    from bidsfusion.atomic import _UMASK, atomic_path

    target = tmp_path / "model.safetensors"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        os.chmod(tmp, 0o600)  # what safetensors' writer does
    assert target.stat().st_mode & 0o777 == 0o666 & ~_UMASK

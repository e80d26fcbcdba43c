"""The memory-mapped volume cache."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bidsfusion.data import volumes
from bidsfusion.data.volumes import VolumeCache
from bidsfusion.errors import InputDataError, InputMissingError

SIDE = 16


def save(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), path)
    return path


@pytest.fixture
def sources(tmp_path) -> tuple[list[Path], np.ndarray]:
    data = np.random.default_rng(0).random((3, SIDE, SIDE, SIDE), dtype=np.float32)
    paths = [save(tmp_path / f"sub-{i}_T1w.nii.gz", v) for i, v in enumerate(data)]
    return paths, data


def test_build_stores_every_volume_as_float32(sources, tmp_path):
    paths, data = sources
    cache = VolumeCache.build(paths, tmp_path / "cache" / "T1w.npy", input_size=SIDE)
    assert len(cache) == 3 and cache.excluded == {}
    assert cache.array.dtype == np.float32 and cache.array.shape == (3, SIDE, SIDE, SIDE)
    np.testing.assert_array_equal(cache[[2, 0]], data[[2, 0]])
    np.testing.assert_array_equal(cache.rows([paths[1], paths[0]]), [1, 0])
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["T1w.json", "T1w.npy"]


def test_downsampling_is_a_block_average(sources, tmp_path):
    paths, data = sources
    cache = VolumeCache.build(paths, tmp_path / "T1w.npy", input_size=SIDE // 2)
    expected = data.reshape(3, 8, 2, 8, 2, 8, 2).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(cache[:], expected, rtol=1e-6)


def test_unchanged_inputs_skip_the_rebuild_and_changes_trigger_it(sources, tmp_path, monkeypatch):
    paths, data = sources
    cache_path = tmp_path / "T1w.npy"
    VolumeCache.build(paths, cache_path, input_size=SIDE)
    real_read = volumes._read
    reads: list[Path] = []
    monkeypatch.setattr(volumes, "_read", lambda p: reads.append(p) or real_read(p))
    VolumeCache.build(paths, cache_path, input_size=SIDE)
    assert reads == []
    before = paths[1].stat().st_mtime_ns
    save(paths[1], data[1] + 5)
    os.utime(paths[1], ns=(before + 10**9, before + 10**9))
    rebuilt = VolumeCache.build(paths, cache_path, input_size=SIDE)
    assert len(reads) == 3
    np.testing.assert_array_equal(rebuilt[1], data[1] + 5)
    VolumeCache.build(paths, cache_path, input_size=SIDE // 2)
    assert len(reads) == 6
    assert VolumeCache.open(cache_path).input_size == SIDE // 2


def test_a_corrupt_file_fails_naming_it(sources, tmp_path):
    paths, _ = sources
    paths[1].write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputDataError, match=re.escape(paths[1].name)) as error:
        VolumeCache.build(paths, tmp_path / "T1w.npy", input_size=SIDE)
    assert error.value.exit_code == 65
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob(".*"))


def test_skip_bad_excludes_and_reports_unusable_files(sources, tmp_path):
    paths, data = sources
    bad = {
        "corrupt": tmp_path / "corrupt.nii.gz",
        "nan": save(tmp_path / "nan.nii.gz", np.full((SIDE,) * 3, np.nan)),
        "constant": save(tmp_path / "constant.nii.gz", np.ones((SIDE,) * 3)),
        "shape": save(tmp_path / "shape.nii.gz", np.random.rand(SIDE, SIDE, 8)),
        "missing": tmp_path / "missing.nii.gz",
    }
    bad["corrupt"].write_bytes(b"garbage")
    inputs = [
        bad["corrupt"],
        paths[0],
        bad["nan"],
        paths[1],
        bad["constant"],
        bad["shape"],
        paths[2],
        bad["missing"],
    ]
    cache_path = tmp_path / "T1w.npy"
    cache = VolumeCache.build(inputs, cache_path, input_size=SIDE, skip_bad=True)
    assert set(cache.excluded) == set(bad.values())
    assert "NaN" in cache.excluded[bad["nan"]] and "constant" in cache.excluded[bad["constant"]]
    assert cache.paths == tuple(paths)
    np.testing.assert_array_equal(cache[:], data)
    with pytest.raises(InputDataError, match=re.escape("nan.nii.gz")):
        cache.rows([bad["nan"]])
    reopened = VolumeCache.open(cache_path)
    assert reopened.paths == cache.paths and reopened.excluded == cache.excluded
    with pytest.raises(InputDataError, match=re.escape("corrupt.nii.gz")):
        VolumeCache.build(inputs, cache_path, input_size=SIDE)


def test_missing_file_and_missing_cache(tmp_path):
    with pytest.raises(InputMissingError, match=re.escape("absent.nii.gz")):
        VolumeCache.build([tmp_path / "absent.nii.gz"], tmp_path / "c.npy", input_size=SIDE)
    with pytest.raises(InputMissingError, match=re.escape("c.npy")):
        VolumeCache.open(tmp_path / "c.npy")


def test_pickling_sends_no_voxels(sources, tmp_path):
    paths, data = sources
    cache = VolumeCache.build(paths, tmp_path / "T1w.npy", input_size=SIDE)
    cache[0]
    payload = pickle.dumps(cache)
    assert len(payload) < data.nbytes / 10
    np.testing.assert_array_equal(pickle.loads(payload)[2], data[2])

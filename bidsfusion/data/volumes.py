"""The volume cache: every input NIfTI decompressed once into one memory-mapped array.

``<name>.npy`` holds float32 ``[N, S, S, S]`` (S = ``input_size``), one row per
readable input in input order; ``<name>.json`` beside it records the inputs
(path, mtime in ns, size in bytes), the excluded files with the reason, and S.
A build whose inputs and S match the index reuses the cache untouched.

Volumes are taken in their stored voxel order (no reorientation: all
derivatives share one fixed 64^3 grid). A source whose side is a multiple of S
is block-averaged to S (``avg_pool3d`` with kernel = side / S, so 64 -> 32 or
16 averages 2^3 or 4^3 voxels). A volume is unusable when it cannot be read,
is not a cube of such a side, differs in shape from the first good volume, has
NaN or infinite values, or is constant (z-normalisation would divide by 0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bidsfusion.atomic import atomic_path, write_text
from bidsfusion.errors import BidsFusionError, InputDataError, InputMissingError, UsageError
from bidsfusion.fingerprint import file_stamp
from bidsfusion.nifti import read_data

_FORMAT = 1
_CHUNK = 64
"""Volumes decoded per round of the thread pool (bounds memory to ~64 volumes)."""


def _read(path: Path) -> np.ndarray:
    """The finite voxels of one NIfTI as float32 (a trailing 4th axis of length 1 dropped)."""
    data, _ = read_data(path)
    return data[..., 0] if data.ndim == 4 and data.shape[3] == 1 else data


def _check(path: Path, data: np.ndarray, input_size: int) -> None:
    side = data.shape[0]
    if data.ndim != 3 or len(set(data.shape)) != 1 or side % input_size:
        raise InputDataError(
            f"{path}: shape {data.shape} is not a cube whose side is a multiple of {input_size}"
        )
    if data.min() == data.max():
        raise InputDataError(f"{path}: constant volume (every voxel is {data.flat[0]})")


def _block_average(data: np.ndarray, input_size: int) -> np.ndarray:
    """Average non-overlapping blocks of (side / input_size)^3 voxels: [s,s,s] -> [S,S,S]."""
    factor = data.shape[0] // input_size
    if factor == 1:
        return data
    pooled = F.avg_pool3d(torch.from_numpy(data)[None, None], kernel_size=factor)
    return pooled[0, 0].numpy()


def model_input(data: np.ndarray, input_size: int, name: str | Path) -> np.ndarray:
    """A grid volume as a model of ``input_size`` sees it, before normalisation: float32
    ``[S, S, S]``, block-averaged as the cache stores it; InputDataError (65) naming
    ``name`` when it is not a finite cube whose side is a multiple of S, or is constant."""
    data = np.asarray(data, dtype=np.float32)
    data = data[..., 0] if data.ndim == 4 and data.shape[3] == 1 else data
    if not np.isfinite(data).all():
        raise InputDataError(f"{name}: NaN or infinite values; give finite voxels")
    _check(Path(name), data, input_size)
    return _block_average(data, input_size)


def read_model_input(path: Path, input_size: int) -> np.ndarray:
    """:func:`model_input` of a NIfTI file's finite voxels."""
    return model_input(_read(path), input_size, path)


def _load(path: Path, input_size: int) -> tuple[tuple[int, ...], np.ndarray] | BidsFusionError:
    """(source shape, volume [S, S, S]) or the error that makes the file unusable."""
    try:
        data = _read(path)
        return data.shape, model_input(data, input_size, path)
    except BidsFusionError as error:
        return error


def _fill(
    array: np.ndarray, paths: Sequence[Path], input_size: int, skip_bad: bool, workers: int
) -> tuple[list[Path], dict[Path, str]]:
    """Write the usable volumes to consecutive rows of ``array``; return (good, excluded)."""
    good: list[Path] = []
    excluded: dict[Path, str] = {}
    expected: tuple[int, ...] | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start : start + _CHUNK]
            results = pool.map(lambda p: _load(p, input_size), chunk)
            for path, result in zip(chunk, results, strict=True):
                if not isinstance(result, BidsFusionError) and expected not in (None, result[0]):
                    result = InputDataError(f"{path}: shape {result[0]} differs from {expected}")
                if isinstance(result, BidsFusionError):
                    if not skip_bad:
                        raise result
                    excluded[path] = str(result)
                    continue
                expected = result[0]
                array[len(good)] = result[1]
                good.append(path)
    return good, excluded


def _keep_first_rows(path: Path, rows: int) -> None:
    """Rewrite the .npy at ``path`` with only its first ``rows`` rows."""
    full = np.load(path, mmap_mode="r")
    with atomic_path(path) as smaller:
        out = np.lib.format.open_memmap(
            smaller, mode="w+", dtype=np.float32, shape=(rows, *full.shape[1:])
        )
        out[:] = full[:rows]
        out.flush()
        del out
    del full


class VolumeCache:
    """Read-only access to a built cache: ``cache[indices]`` -> float32 [..., S, S, S].

    The memory map opens on first use and is not pickled, so a cache can be
    sent to DataLoader workers cheaply.
    """

    def __init__(
        self, cache_path: Path, paths: Sequence[Path], excluded: Mapping[Path, str], input_size: int
    ) -> None:
        self.cache_path = Path(cache_path)
        self.paths = tuple(paths)
        self.excluded = dict(excluded)
        self.input_size = input_size
        self._rows = {p: i for i, p in enumerate(self.paths)}
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        """The whole cache, memory-mapped read-only: [N, S, S, S] float32."""
        if self._array is None:
            self._array = np.load(self.cache_path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, indices) -> np.ndarray:
        return np.asarray(self.array[indices])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def rows(self, paths: Sequence[Path]) -> np.ndarray:
        """Row index (int64) of each path; InputDataError if a path is not cached."""
        try:
            return np.array([self._rows[Path(p)] for p in paths], dtype=np.int64)
        except KeyError as error:
            reason = self.excluded.get(error.args[0], "not among the cached inputs")
            raise InputDataError(f"{error.args[0]}: not in {self.cache_path} ({reason})") from None

    @staticmethod
    def index_path(cache_path: Path) -> Path:
        """The JSON index beside ``cache_path``."""
        return Path(cache_path).with_suffix(".json")

    @classmethod
    def open(cls, cache_path: Path) -> VolumeCache:
        """Open a cache written by :meth:`build` (no check that its inputs are unchanged)."""
        cache_path = Path(cache_path)
        index = cls._read_index(cache_path)
        if index is None:
            raise InputMissingError(f"{cache_path}: no volume cache (or its index) here")
        return cls._from_index(cache_path, index)

    @classmethod
    def build(
        cls,
        paths: Sequence[Path],
        cache_path: Path,
        input_size: int = 64,
        skip_bad: bool = False,
        workers: int = 4,
    ) -> VolumeCache:
        """Build (or reuse, when inputs and ``input_size`` are unchanged) the cache of ``paths``.

        Duplicate paths are kept once. An unusable file raises InputDataError
        (InputMissingError if absent) naming it; with ``skip_bad`` it is left
        out instead and listed in ``cache.excluded`` (path -> reason). NIfTIs
        are decoded by ``workers`` threads.
        """
        paths = list(dict.fromkeys(Path(p) for p in paths))
        cache_path = Path(cache_path)
        if input_size < 1:
            raise UsageError(f"input_size must be positive, got {input_size}")
        sources = [file_stamp(p) for p in paths]
        index = cls._read_index(cache_path)
        if index is not None and index["input_size"] == input_size and index["sources"] == sources:
            cache = cls._from_index(cache_path, index)
        else:
            cache = cls._write(paths, sources, cache_path, input_size, skip_bad, workers)
        if cache.excluded and not skip_bad:
            raise InputDataError(next(iter(cache.excluded.values())))
        return cache

    @classmethod
    def _write(
        cls,
        paths: list[Path],
        sources: list[dict],
        cache_path: Path,
        input_size: int,
        skip_bad: bool,
        workers: int,
    ) -> VolumeCache:
        if not paths:
            raise InputDataError(f"{cache_path}: no input volumes to cache")
        cls.index_path(cache_path).unlink(missing_ok=True)
        shape = (len(paths), input_size, input_size, input_size)
        with atomic_path(cache_path) as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            good, excluded = _fill(array, paths, input_size, skip_bad, workers)
            array.flush()
            del array
            if not good:
                first = next(iter(excluded.values()))
                raise InputDataError(
                    f"none of the {len(paths)} volumes for {cache_path.name} is usable; "
                    f"first: {first}"
                )
            if len(good) < len(paths):
                _keep_first_rows(tmp, len(good))
        index = {
            "format": _FORMAT,
            "input_size": input_size,
            "sources": sources,
            "rows": [str(p) for p in good],
            "excluded": {str(p): reason for p, reason in excluded.items()},
        }
        write_text(cls.index_path(cache_path), json.dumps(index, indent=1) + "\n")
        return cls(cache_path, good, excluded, input_size)

    @classmethod
    def _read_index(cls, cache_path: Path) -> dict | None:
        """The index if it and the array exist and agree; None otherwise."""
        try:
            index = json.loads(cls.index_path(cache_path).read_text(encoding="utf-8"))
            size = index["input_size"]
            expected = (len(index["rows"]), size, size, size)
            valid = index["format"] == _FORMAT and isinstance(index["excluded"], dict)
            header_shape = np.load(cache_path, mmap_mode="r").shape
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return index if valid and header_shape == expected else None

    @classmethod
    def _from_index(cls, cache_path: Path, index: dict) -> VolumeCache:
        return cls(
            cache_path,
            [Path(p) for p in index["rows"]],
            {Path(p): r for p, r in index["excluded"].items()},
            index["input_size"],
        )

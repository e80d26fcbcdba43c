"""Publishing a scan's finished files into OUTPUT_DIR as one set.

A scan's outputs appear together or not at all: each file and sidecar is first
written under a hidden temporary name beside its destination; only when every
write succeeded are they renamed into place, data files first and sidecars
last (a sidecar carries the fingerprint a rerun trusts, so it must never
describe data that is not there yet). A failed write (a full disk, say) removes
the temporaries, leaves the previous files untouched and raises OutputError
(exit 73) naming the file. Temporaries a killed run left behind are removed
when the scan is published again.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bidsfusion.atomic import remove_stale_temporaries, temporary_sibling
from bidsfusion.bids import QC_KEY, sidecar_path
from bidsfusion.errors import OutputError

Item = tuple[Path, Path, Mapping[str, Any] | None]
"""(finished file, destination in OUTPUT_DIR, sidecar content or None)."""


def publish_set(items: Sequence[Item]) -> list[Path]:
    """Publish every ``(source, destination, sidecar)`` of one scan as a set; the destinations."""
    staged: list[tuple[Path, Path]] = []
    try:
        for source, destination, _ in items:
            copy = functools.partial(shutil.copyfile, source)
            staged.append((_stage(destination, copy), destination))
        for _, data, sidecar in items:
            if sidecar is not None:
                text = json.dumps(dict(sidecar), indent=2, default=str) + "\n"
                path = sidecar_path(data)
                staged.append((_stage(path, lambda tmp, t=text: tmp.write_text(t)), path))
    except OutputError:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        os.replace(tmp, final)
    return [destination for _, destination, _ in items]


def _stage(destination: Path, write: Callable[[Path], object]) -> Path:
    """A temporary sibling of ``destination`` filled by ``write(tmp)``; OutputError naming
    ``destination`` (the temporary removed) when the write fails."""
    tmp = temporary_sibling(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(destination)
        write(tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(
            f"cannot write {destination}: {exc.strerror or exc}; nothing of this scan was "
            "published: free space or fix permissions, then rerun"
        ) from None
    return tmp


class _ScanSinkInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="finished files")
    out_paths = traits.List(traits.Str, mandatory=True, desc="destinations, one per file")
    sidecars = traits.List(
        traits.Str, mandatory=True, desc="JSON sidecar content per file; empty: no sidecar"
    )
    qc_file = File(exists=True, desc="JSON of QC measures, added to every sidecar under 'QC'")


class _ScanSinkOutputSpec(TraitedSpec):
    out_files = traits.List(File, desc="the published files")


class ScanSink(SimpleInterface):
    """Publish all outputs of one scan (and their sidecars) into OUTPUT_DIR as a set."""

    input_spec = _ScanSinkInputSpec
    output_spec = _ScanSinkOutputSpec

    def _run_interface(self, runtime):
        qc = json.loads(Path(self.inputs.qc_file).read_text()) if self.inputs.qc_file else None
        items = [
            (Path(source), Path(destination), _sidecar(text, qc))
            for source, destination, text in zip(
                self.inputs.in_files, self.inputs.out_paths, self.inputs.sidecars, strict=True
            )
        ]
        self._results["out_files"] = [str(p) for p in publish_set(items)]
        return runtime


def _sidecar(text: str, qc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not text:
        return None
    sidecar = json.loads(text)
    if qc is not None:
        sidecar[QC_KEY] = dict(qc)
    return sidecar

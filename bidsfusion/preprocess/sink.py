"""Writing a finished file into OUTPUT_DIR: atomic copy plus a JSON sidecar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bidsfusion.atomic import atomic_path, write_text


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a derivative: same name, ``.json`` instead of the extensions."""
    return path.with_name(path.name.split(".")[0] + ".json")


def publish(source: Path, destination: Path, sidecar: dict | None = None) -> Path:
    """Copy ``source`` to ``destination`` atomically; write its sidecar first if given.

    The sidecar goes first so that a data file present in OUTPUT_DIR always has
    its sidecar: a derivative is complete when its data file exists.
    """
    if sidecar is not None:
        write_text(sidecar_path(destination), json.dumps(sidecar, indent=2, default=str) + "\n")
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)
    return destination


class _SinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="file produced by a workflow node")
    out_path = traits.Str(mandatory=True, desc="absolute destination in OUTPUT_DIR")
    sidecar = traits.Str("", usedefault=True, desc="JSON sidecar content; empty: no sidecar")
    extra_sources = traits.List(traits.Str, desc="added to the sidecar's Sources")


class _SinkOutputSpec(TraitedSpec):
    out_file = File(desc="the published file")


class DerivativeSink(SimpleInterface):
    """Publish one derivative (and its sidecar) into OUTPUT_DIR."""

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec

    def _run_interface(self, runtime):
        sidecar = json.loads(self.inputs.sidecar) if self.inputs.sidecar else None
        if sidecar is not None and self.inputs.extra_sources:
            sidecar.setdefault("Sources", []).extend(self.inputs.extra_sources)
        destination = publish(Path(self.inputs.in_file), Path(self.inputs.out_path), sidecar)
        self._results["out_file"] = str(destination)
        return runtime

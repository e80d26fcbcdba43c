"""The public API for plugins: everything a plugin package may import from bidsfusion.

A plugin imports from here only (``from bidsfusion.api import hookimpl, Objective``); the
rest of bidsfusion may change between versions without notice, this module may not.
``tests/test_api.py`` fails when a plugin shipped with bidsfusion imports anything else.

What is here, by use (docs/plugins.md shows each in a working plugin):

- hooks: :data:`hookimpl` and the typed ``register`` callbacks of each hook
  (:data:`ModalityRegister`, :data:`EncoderRegister`, :data:`ObjectiveRegister`,
  :data:`AnalysisRegister`, :data:`BackendRegister`); :func:`registered` and
  :func:`plugin_manager` (tests register throwaway plugins with it);
- errors, each with its exit code: :class:`BidsFusionError` and its subclasses;
- encoders: the :class:`Encoder` protocol, :class:`EncoderOutput`, :data:`LOCAL_SIZE`,
  :class:`Dims`;
- objectives: :class:`Objective`, :class:`Heads`, :func:`build_objective`,
  :func:`require_at_least` (option checks), :func:`all_gather` (the global batch under
  torchrun);
- modalities: :class:`Modality`, the :class:`Participant` settings it reads, the fALFF
  :class:`FALFF` interface and band helpers (:func:`band_bins`, :func:`padded_length`,
  :func:`check_band`, :data:`FALFF_BAND`);
- preprocessing backends: :class:`Backend`, the built-in steps whose inputs and outputs a
  backend's steps take (:class:`Realign`, :class:`RegisterToTemplate`,
  :class:`Coregister`), the confounds and QC they write (:func:`write_confounds`,
  :func:`framewise_displacement`, :func:`residual_sd`), rigid geometry
  (:func:`params_from_matrix`, :func:`volume_centre`, :func:`transform_from_matrix`) and
  nipype crash files as one-line errors (:func:`crash_report`);
- analyses: :class:`AnalysisContext`, the group layout (:class:`GroupLayout`,
  :class:`FoldFiles`, :func:`map_name`), the standard space (:data:`MNI_GRID_AFFINE`,
  :data:`MNI_GRID_SHAPE`, :func:`mni_template`, :func:`mni_brain_mask`);
- files: :func:`read_tsv`, :func:`write_tsv`, :func:`read_data`, :func:`save_image`,
  :func:`atomic_path`, :func:`write_text` (every write atomic).

Names load on first use, so that a plugin importing a light name (a hook marker, an
error) does not import torch or nipype.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "bidsfusion": ("hookimpl",),
    "bidsfusion.hookspecs": (
        "AnalysisRegister",
        "BackendRegister",
        "EncoderRegister",
        "ModalityRegister",
        "ObjectiveRegister",
    ),
    "bidsfusion.plugins": ("registered",),
    "bidsfusion.errors": (
        "BidsFusionError",
        "InputDataError",
        "InputMissingError",
        "OutputError",
        "PluginError",
        "UsageError",
        "one_line",
    ),
    "bidsfusion.models.base": ("LOCAL_SIZE", "Dims", "Encoder", "EncoderFactory", "EncoderOutput"),
    "bidsfusion.objectives.base": ("Heads", "Objective", "ObjectiveFactory"),
    "bidsfusion.objectives.compose": ("build_objective",),
    "bidsfusion.objectives.options": ("require_at_least",),
    "bidsfusion.objectives.gather": ("all_gather",),
    "bidsfusion.modality": ("FALFF_BAND", "Modality"),
    "bidsfusion.config": ("Participant",),
    "bidsfusion.preprocess.falff": ("band_bins", "padded_length"),
    "bidsfusion.preprocess.modalities": ("check_band",),
    "bidsfusion.preprocess.backend": ("Backend",),
    "bidsfusion.preprocess.interfaces": (
        "FALFF",
        "Coregister",
        "Realign",
        "RegisterToTemplate",
        "write_confounds",
    ),
    "bidsfusion.preprocess.motion": ("framewise_displacement",),
    "bidsfusion.preprocess.qc": ("residual_sd",),
    "bidsfusion.preprocess.images": ("transform_from_matrix",),
    "bidsfusion.preprocess.engine": ("crash_report",),
    "bidsfusion.rigid": ("params_from_matrix", "volume_centre"),
    "bidsfusion.analyses.context": ("Analysis", "AnalysisContext"),
    "bidsfusion.layout": ("FoldFiles", "GroupLayout", "map_name"),
    "bidsfusion.space": ("MNI_GRID_AFFINE", "MNI_GRID_SHAPE", "mni_brain_mask", "mni_template"),
    "bidsfusion.tsv": ("read_tsv", "write_tsv"),
    "bidsfusion.nifti": ("read_data", "save_image"),
    "bidsfusion.atomic": ("atomic_path", "write_text"),
}
"""The module each public name lives in."""
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = sorted([*_MODULE_OF, "plugin_manager"])


def plugin_manager() -> Any:
    """The process-wide pluggy plugin manager (built-ins and entry points loaded): register
    a throwaway plugin with ``plugin_manager().register(obj, name=...)`` and unregister it
    with ``plugin_manager().unregister(name=...)``."""
    from bidsfusion.plugins import get_plugin_manager

    return get_plugin_manager()


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    if name not in _MODULE_OF:
        raise AttributeError(f"bidsfusion.api has no {name!r}; its names: {', '.join(__all__)}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from bidsfusion import hookimpl
    from bidsfusion.analyses.context import Analysis, AnalysisContext
    from bidsfusion.atomic import atomic_path, write_text
    from bidsfusion.config import Participant
    from bidsfusion.errors import (
        BidsFusionError,
        InputDataError,
        InputMissingError,
        OutputError,
        PluginError,
        UsageError,
        one_line,
    )
    from bidsfusion.hookspecs import (
        AnalysisRegister,
        BackendRegister,
        EncoderRegister,
        ModalityRegister,
        ObjectiveRegister,
    )
    from bidsfusion.layout import FoldFiles, GroupLayout, map_name
    from bidsfusion.modality import FALFF_BAND, Modality
    from bidsfusion.models.base import LOCAL_SIZE, Dims, Encoder, EncoderFactory, EncoderOutput
    from bidsfusion.nifti import read_data, save_image
    from bidsfusion.objectives.base import Heads, Objective, ObjectiveFactory
    from bidsfusion.objectives.compose import build_objective
    from bidsfusion.objectives.gather import all_gather
    from bidsfusion.objectives.options import require_at_least
    from bidsfusion.plugins import registered
    from bidsfusion.preprocess.backend import Backend
    from bidsfusion.preprocess.engine import crash_report
    from bidsfusion.preprocess.falff import band_bins, padded_length
    from bidsfusion.preprocess.images import transform_from_matrix
    from bidsfusion.preprocess.interfaces import (
        FALFF,
        Coregister,
        Realign,
        RegisterToTemplate,
        write_confounds,
    )
    from bidsfusion.preprocess.modalities import check_band
    from bidsfusion.preprocess.motion import framewise_displacement
    from bidsfusion.preprocess.qc import residual_sd
    from bidsfusion.rigid import params_from_matrix, volume_centre
    from bidsfusion.space import MNI_GRID_AFFINE, MNI_GRID_SHAPE, mni_brain_mask, mni_template
    from bidsfusion.tsv import read_tsv, write_tsv

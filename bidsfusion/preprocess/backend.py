"""Preprocessing backends: who does motion correction and registration.

A :class:`Backend` bundles nipype interface factories. The built-in
``simpleitk`` backend needs no external binaries; plugins can add others
(e.g. FSL's MCFLIRT/FLIRT) through ``register_preprocessing_backends``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nipype.interfaces.base import BaseInterface

from bidsfusion import hookimpl
from bidsfusion.hookspecs import BackendRegister


@dataclass(frozen=True)
class Backend:
    """Interface factories for the registration-type steps of the participant workflow.

    Each factory returns a nipype interface with the inputs/outputs documented on
    the built-in interfaces in :mod:`bidsfusion.preprocess.interfaces`:

    - ``realign()``: ``in_file`` (4D bold) -> ``out_file`` (realigned 4D),
      ``mean_file``, ``confounds_file`` (TSV: 6 rigid parameters + FD).
    - ``register_anat()``: ``in_file`` (T1w), ``skull_strip`` -> ``transform_file``
      (native -> MNI similarity, ITK .tfm).
    - ``coregister()``: ``in_file`` (mean bold), ``reference_file`` (T1w) ->
      ``transform_file`` (bold -> T1w rigid, ITK .tfm).
    - ``register_func()``: ``in_file`` (mean bold) -> ``transform_file`` (bold ->
      MNI similarity), used when a subject has no T1w.

    ``description`` says which methods the steps use (every output sidecar's ``Backend``)
    and is part of every participant-level fingerprint beside ``name``: change it when a
    step's method changes, so that outputs of the earlier method are redone.

    ``check()`` raises a :class:`~bidsfusion.errors.BidsFusionError` (missing software:
    :class:`~bidsfusion.errors.InputMissingError`, exit 66) when the backend cannot run
    here; the participant level calls it when it selects the backend, before any work.
    """

    name: str
    description: str
    realign: Callable[[], BaseInterface]
    register_anat: Callable[[], BaseInterface]
    coregister: Callable[[], BaseInterface]
    register_func: Callable[[], BaseInterface]
    check: Callable[[], None] = lambda: None


def _interface(name: str) -> Callable[[], BaseInterface]:
    def factory() -> BaseInterface:
        from bidsfusion.preprocess import interfaces

        return getattr(interfaces, name)()

    factory.__name__ = name
    return factory


def _register_mean_bold() -> BaseInterface:
    """RegisterToTemplate from an upright start, without the scalp guard: EPI contrast and
    partial coverage mislead the rotation search and the mask-only starts."""
    from bidsfusion.preprocess.interfaces import RegisterToTemplate

    return RegisterToTemplate(search_rotations=False, scalp_guard=False)


SIMPLEITK = Backend(
    name="simpleitk",
    description=(
        "SimpleITK (no external binaries): rigid motion correction, least squares;"
        " T1w to MNI similarity"
        " (7 dof: rotation, translation, isotropic scale), Mattes mutual information,"
        " multi-resolution, multi-start initialisation, starts optimised over the template"
        " brain mask and over its 6 mm dilation; mean BOLD to T1w rigid (6 dof), Mattes mutual"
        " information; mean BOLD to MNI similarity (7 dof) without a T1w"
    ),
    realign=_interface("Realign"),
    register_anat=_interface("RegisterToTemplate"),
    coregister=_interface("Coregister"),
    register_func=_register_mean_bold,
)


@hookimpl
def register_preprocessing_backends(register: BackendRegister) -> None:
    """Register the built-in SimpleITK backend."""
    register(SIMPLEITK.name, SIMPLEITK)

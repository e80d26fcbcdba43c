"""Every plugin hook of bidsfusion.

Each hook receives a ``register(name, thing)`` callback (the shape of
simonw/llm's hooks). A plugin calls it once per thing it contributes; a name
registered twice is an error that names both plugins. Built-in parts use the
same hooks, so the core has no special path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from bidsfusion.analyses.context import Analysis
    from bidsfusion.modality import Modality
    from bidsfusion.models.base import EncoderFactory
    from bidsfusion.objectives.base import ObjectiveFactory
    from bidsfusion.preprocess.backend import Backend

hookspec = pluggy.HookspecMarker("bidsfusion")

Register = Callable[[str, Any], None]
"""``register(name, thing)``: the shape of every hook's callback."""
ModalityRegister = Callable[[str, "Modality"], None]
"""``register(name, modality)`` of :func:`register_modalities`."""
EncoderRegister = Callable[[str, "EncoderFactory"], None]
"""``register(name, factory)`` of :func:`register_encoders`."""
ObjectiveRegister = Callable[[str, "ObjectiveFactory | str"], None]
"""``register(name, factory)``, or ``register(alias, spec)``, of :func:`register_objectives`."""
AnalysisRegister = Callable[[str, "Analysis"], None]
"""``register(name, analysis)`` of :func:`register_analyses`."""
BackendRegister = Callable[[str, "Backend"], None]
"""``register(name, backend)`` of :func:`register_preprocessing_backends`."""


@hookspec
def register_modalities(register: ModalityRegister) -> None:
    """Register :class:`bidsfusion.modality.Modality` objects by name.

    A modality says how its participant-level map is built (from the T1w or the
    BOLD run, by its own nipype interface factory with its own inputs) and how the
    group level finds it again (BIDS entities). The participant level makes every
    registered modality's map; the group level fuses those of ``--modality``.
    """


@hookspec
def register_encoders(register: EncoderRegister) -> None:
    """Register encoder factories: ``factory(in_shape, latent_dim, **options) -> Encoder``.

    An encoder maps ``x[B,1,D,H,W]`` to ``EncoderOutput(latent[B,d], features)``
    with the 8^3-resolution map under ``features["local"]``.
    """


@hookspec
def register_objectives(register: ObjectiveRegister) -> None:
    """Register objective terms: ``factory(modalities, dims, **options) -> Objective``.

    A string value registers an alias spec, e.g. ``register("DCCAE", "AE-CCA")``.
    Terms compose by name in spec strings joined by ``-`` (``"L-CL"``); the
    total loss is their sum.
    """


@hookspec
def register_analyses(register: AnalysisRegister) -> None:
    """Register group analyses: ``callable(context) -> None``
    (:class:`~bidsfusion.analyses.context.AnalysisContext`), writing under ``group/``. An
    analysis raises a :class:`~bidsfusion.errors.BidsFusionError` for what the user can
    act on; any other exception is reported as a bug of the plugin that registered it."""


@hookspec
def register_preprocessing_backends(register: BackendRegister) -> None:
    """Register preprocessing backends (motion correction, registration, skull stripping)."""

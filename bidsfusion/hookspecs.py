"""Every plugin hook of bidsfusion.

Each hook receives a ``register(name, thing)`` callback (the shape of
simonw/llm's hooks). A plugin calls it once per thing it contributes; a name
registered twice is an error that names both plugins. Built-in parts use the
same hooks, so the core has no special path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("bidsfusion")

Register = Callable[[str, Any], None]
"""``register(name, thing)``: the callback every hook receives."""


@hookspec
def register_modalities(register: Register) -> None:
    """Register :class:`bidsfusion.modality.Modality` objects by name.

    A modality says how its participant-level map is built (from the T1w or the
    BOLD run, by its own nipype interface factory with its own inputs) and how the
    group level finds it again (BIDS entities). The participant level makes every
    registered modality's map; the group level fuses those of ``--modality``.
    """


@hookspec
def register_encoders(register: Register) -> None:
    """Register encoder factories: ``factory(in_shape, latent_dim, **options) -> Encoder``.

    An encoder maps ``x[B,1,D,H,W]`` to ``EncoderOutput(latent[B,d], features)``
    with the 8^3-resolution map under ``features["local"]``.
    """


@hookspec
def register_objectives(register: Register) -> None:
    """Register objective terms: ``factory(modalities, dims, **options) -> Objective``.

    A string value registers an alias spec, e.g. ``register("DCCAE", "AE-CCA")``.
    Terms compose by name in spec strings joined by ``-`` (``"L-CL"``); the
    total loss is their sum.
    """


@hookspec
def register_analyses(register: Register) -> None:
    """Register group analyses: ``callable(context) -> None``, writing under ``group/``."""


@hookspec
def register_preprocessing_backends(register: Register) -> None:
    """Register preprocessing backends (motion correction, registration, skull stripping)."""

"""The :class:`Modality` contract: one input map the model learns from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FALFF_BAND: tuple[float, float] = (0.01, 0.1)
"""The fALFF low-frequency band in Hz (the paper's); the default of ``--falff-band``."""
BUILTIN_MODALITIES: tuple[str, str] = ("T1w", "falff")
"""The built-in modality pair the group level fuses."""


@dataclass(frozen=True)
class Modality:
    """A modality: how its participant-level derivative is built and found again.

    Attributes:
        name: registry name, also the key of its tensors in a batch (``"T1w"``).
        source: the raw BIDS suffix it is computed from: ``"T1w"`` or ``"bold"``.
        datatype: BIDS datatype folder of the derivative (``"anat"``, ``"func"``).
        entities: BIDS entities naming the derivative besides subject, session,
            task and run, ``suffix`` included (e.g. ``{"stat": "falff",
            "suffix": "boldmap"}``); ``space`` and ``res`` are added by the core.
        map_interface: factory ``(**parameters) -> nipype interface`` computing the
            map in the source's native space (input ``in_file``, plus ``mask_file``
            and ``repetition_time`` for bold sources; output ``out_file``). The
            core registers and resamples the map onto the MNI grid once.
            ``None`` for the anatomical image itself.
        description: one line for ``bidsfusion plugins`` and the sidecars.
    """

    name: str
    source: str
    datatype: str
    entities: Mapping[str, str]
    map_interface: Callable[..., Any] | None = None
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

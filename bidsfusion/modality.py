"""The :class:`Modality` contract: one input map the model learns from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nipype.interfaces.base import BaseInterface

    from bidsfusion.config import Participant

FALFF_BAND: tuple[float, float] = (0.01, 0.1)
"""The fALFF low-frequency band in Hz (the paper's); the default of ``--falff-band``."""
BUILTIN_MODALITIES: tuple[str, str] = ("T1w", "falff")
"""The built-in modality pair the group level fuses."""


@dataclass(frozen=True)
class Modality:
    """A modality: how its participant-level map is built and found again.

    Attributes:
        name: registry name, also the key of its tensors in a batch (``"T1w"``).
        source: the raw BIDS suffix it is computed from: ``"T1w"`` or ``"bold"``.
        datatype: BIDS datatype folder of the derivative (``"anat"``, ``"func"``).
        entities: BIDS entities naming the derivative besides subject, session,
            task and run, ``suffix`` included (e.g. ``{"stat": "falff",
            "suffix": "boldmap"}``); ``space`` and ``res`` are added by the core.
        map_interface: factory ``(**inputs) -> nipype interface`` computing the map
            in the source's native space (the core also sets ``inputs`` on its
            node): input ``in_file`` (the raw T1w, or the motion-corrected BOLD run,
            whose ``repetition_time`` in s is set too), output ``out_file``. The
            core registers and resamples the map onto the MNI grid once, through
            the source's transforms, masks it, and draws its registration figure
            (``desc-registration``; ``desc-registration<Desc>`` when the entities
            hold a ``desc``). ``None`` for the anatomical image itself.
        description: one line for ``bidsfusion plugins`` and the sidecars.
        parameters: fixed inputs of ``map_interface``.
        settings: ``settings(participant) -> inputs`` of ``map_interface`` taken from the
            run's :class:`~bidsfusion.config.Participant` settings (falff: ``band`` from
            ``--falff-band``); written in
            the map's sidecar under their names in CamelCase (``band`` -> ``Band``).
        check: ``check(path, n_volumes, repetition_time, inputs)``, bold sources
            only: raise :class:`~bidsfusion.errors.InputDataError` for a run the map
            cannot be made from (the run is then refused with that reason).

    ``parameters`` and ``settings`` are recorded in the map's fingerprint: changing
    them redoes the map. No modality sets another's inputs.
    """

    name: str
    source: str
    datatype: str
    entities: Mapping[str, str]
    map_interface: Callable[..., BaseInterface] | None = None
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    settings: Callable[[Participant], Mapping[str, Any]] | None = None
    check: Callable[[Path, int, float, Mapping[str, Any]], None] | None = None

    def inputs(self, participant: Participant) -> dict[str, Any]:
        """Every input of ``map_interface`` besides the files: ``parameters``, then
        ``settings(participant)``."""
        return {**self.parameters, **(self.settings(participant) if self.settings else {})}

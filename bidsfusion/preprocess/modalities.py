"""The built-in modalities: the brain-masked T1w image and the fALFF map of resting BOLD."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bidsfusion import hookimpl
from bidsfusion.config import Participant
from bidsfusion.hookspecs import ModalityRegister
from bidsfusion.modality import Modality


def falff_interface(**inputs: Any) -> Any:
    """A nipype interface computing fALFF in the BOLD's native space."""
    from bidsfusion.preprocess.interfaces import FALFF

    return FALFF(**inputs)


def falff_settings(participant: Participant) -> dict[str, Any]:
    """falff's inputs from the participant settings: ``band`` (Hz), ``--falff-band``."""
    return {"band": tuple(participant.falff_band)}


def check_band(path: Path, n_volumes: int, tr: float, inputs: Mapping[str, Any]) -> None:
    """Refuse a run too short for ``inputs["band"]`` (one period of its lowest frequency,
    and a frequency bin inside the band): InputDataError (exit 65)."""
    from bidsfusion.preprocess.inputs import check_duration

    check_duration(path, n_volumes, tr, tuple(inputs["band"]))


T1W = Modality(
    name="T1w",
    source="T1w",
    datatype="anat",
    entities={"desc": "brain", "suffix": "T1w"},
    description="brain-masked T1-weighted image",
)

FALFF_MODALITY = Modality(
    name="falff",
    source="bold",
    datatype="func",
    entities={"stat": "falff", "suffix": "boldmap"},
    map_interface=falff_interface,
    description="fractional amplitude of low-frequency fluctuations of resting BOLD",
    settings=falff_settings,
    check=check_band,
)


@hookimpl
def register_modalities(register: ModalityRegister) -> None:
    """Register T1w and falff."""
    register(T1W.name, T1W)
    register(FALFF_MODALITY.name, FALFF_MODALITY)

"""The built-in modalities: the brain-masked T1w image and the fALFF map of resting BOLD."""

from __future__ import annotations

from typing import Any

from bidsfusion import hookimpl
from bidsfusion.hookspecs import Register
from bidsfusion.modality import Modality


def falff_interface(**parameters: Any) -> Any:
    """A nipype interface computing fALFF in the BOLD's native space."""
    from bidsfusion.preprocess.interfaces import FALFF

    return FALFF(**parameters)


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
)


@hookimpl
def register_modalities(register: Register) -> None:
    """Register T1w and falff."""
    register(T1W.name, T1W)
    register(FALFF_MODALITY.name, FALFF_MODALITY)

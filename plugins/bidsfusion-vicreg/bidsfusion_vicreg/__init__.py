"""A VICReg term for bidsfusion: invariant, high-variance, decorrelated latents.

Installed, it adds the objective term ``VICReg`` (``--objective S-VICReg``,
``--objective VICReg-AE``). It uses only bidsfusion's public hooks.
"""

from __future__ import annotations

from bidsfusion.api import ObjectiveRegister, hookimpl
from bidsfusion_vicreg.loss import VICReg, vicreg_parts

__all__ = ["VICReg", "register_objectives", "vicreg_parts"]


@hookimpl
def register_objectives(register: ObjectiveRegister) -> None:
    """Register the ``VICReg`` term."""
    register("VICReg", VICReg)

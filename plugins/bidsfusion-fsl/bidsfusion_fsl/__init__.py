"""An FSL preprocessing backend for bidsfusion's participant level (``--backend fsl``).

Motion correction with MCFLIRT, skull stripping with BET and registration with FLIRT,
through nipype's FSL interfaces. FSL itself is not installed with this package: without
it the participant level exits 66 before any work (:func:`check_fsl`). The steps
(:mod:`bidsfusion_fsl.steps`, which import nipype) load only when a workflow is built.
"""

from __future__ import annotations

from typing import Any

from bidsfusion.api import Backend, BackendRegister, hookimpl
from bidsfusion_fsl.availability import check_fsl
from bidsfusion_fsl.dof import BOLD_TO_T1W_DOF, BOLD_TO_TEMPLATE_DOF, T1W_TO_TEMPLATE_DOF


def _realign() -> Any:
    """MCFLIRT motion correction."""
    from bidsfusion_fsl.steps import FSLRealign

    return FSLRealign()


def _register_t1w() -> Any:
    """BET and 12-dof FLIRT of a T1w to the MNI152 template."""
    from bidsfusion_fsl.steps import FSLRegisterToTemplate

    return FSLRegisterToTemplate(dof=T1W_TO_TEMPLATE_DOF)


def _coregister() -> Any:
    """6-dof FLIRT of a mean BOLD to the BET-stripped T1w."""
    from bidsfusion_fsl.steps import FSLCoregister

    return FSLCoregister()


def _register_mean_bold() -> Any:
    """BET and 7-dof FLIRT of a mean BOLD to the template (a subject without a T1w)."""
    from bidsfusion_fsl.steps import FSLRegisterToTemplate

    return FSLRegisterToTemplate(dof=BOLD_TO_TEMPLATE_DOF)


FSL = Backend(
    name="fsl",
    description=(
        "FSL: MCFLIRT motion correction (normalised correlation), BET skull stripping,"
        f" FLIRT registration (T1w to MNI {T1W_TO_TEMPLATE_DOF} dof, mean BOLD to T1w"
        f" {BOLD_TO_T1W_DOF} dof, mean BOLD to MNI {BOLD_TO_TEMPLATE_DOF} dof without a T1w)"
    ),
    realign=_realign,
    register_anat=_register_t1w,
    coregister=_coregister,
    register_func=_register_mean_bold,
    check=check_fsl,
)
"""The backend: each factory returns one step's interface (:mod:`bidsfusion_fsl.steps`)."""

__all__ = ["FSL", "check_fsl", "register_preprocessing_backends"]


@hookimpl
def register_preprocessing_backends(register: BackendRegister) -> None:
    """Register the ``fsl`` backend."""
    register(FSL.name, FSL)

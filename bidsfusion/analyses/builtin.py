"""Built-in group analyses, registered through the ``register_analyses`` hook."""

from __future__ import annotations

from bidsfusion import hookimpl
from bidsfusion.analyses.confounds import NAME as CONFOUNDS
from bidsfusion.analyses.confounds import write_confounds
from bidsfusion.analyses.group_differences import NAME, write_group_differences
from bidsfusion.analyses.saliency import NAME as SALIENCY
from bidsfusion.analyses.saliency import write_saliency
from bidsfusion.analyses.similarity import write_similarity
from bidsfusion.hookspecs import AnalysisRegister


@hookimpl
def register_analyses(register: AnalysisRegister) -> None:
    """Register ``similarity`` (CKA and SVCCA between the modalities' representations),
    ``saliency`` (SmoothGrad maps of every latent dimension in brain space),
    ``group-differences`` (voxel-wise AD versus HC saliency of the dimensions the
    classifier weighs most) and ``confounds`` (what the representations encode besides the
    diagnosis, and the evaluation with the confounds controlled)."""
    register("similarity", write_similarity)
    register(SALIENCY, write_saliency)
    register(NAME, write_group_differences)
    register(CONFOUNDS, write_confounds)

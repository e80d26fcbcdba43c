"""Built-in objective terms, registered through the ``register_objectives`` hook."""

from __future__ import annotations

from bidsfusion import hookimpl
from bidsfusion.hookspecs import ObjectiveRegister
from bidsfusion.objectives.ae import Autoencoder
from bidsfusion.objectives.cca import DeepCCA
from bidsfusion.objectives.dim import CrossLocalDIM, CrossSpatialDIM, LocalDIM, SimilarityDIM
from bidsfusion.objectives.mmvae import MMVAE
from bidsfusion.objectives.supervised import Supervised
from bidsfusion.objectives.untrained import CONTROL, Untrained


@hookimpl
def register_objectives(register: ObjectiveRegister) -> None:
    """Register L, CL, CS, S, AE, CCA, MMVAE (alone only), Supervised, ``DCCAE = AE-CCA``
    and the untrained control ``Random`` (alone only, never trained)."""
    register("L", LocalDIM)
    register("CL", CrossLocalDIM)
    register("CS", CrossSpatialDIM)
    register("S", SimilarityDIM)
    register("AE", Autoencoder)
    register("CCA", DeepCCA)
    register("MMVAE", MMVAE)
    register("Supervised", Supervised)
    register("DCCAE", "AE-CCA")
    register(CONTROL, Untrained)

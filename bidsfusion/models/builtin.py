"""Built-in encoders, registered through the ``register_encoders`` hook."""

from __future__ import annotations

from bidsfusion import hookimpl
from bidsfusion.hookspecs import EncoderRegister
from bidsfusion.models.dcgan import DCGANEncoder


@hookimpl
def register_encoders(register: EncoderRegister) -> None:
    """Register ``dcgan``: factory ``(in_shape, latent_dim, **options) -> DCGANEncoder``."""
    register("dcgan", DCGANEncoder)

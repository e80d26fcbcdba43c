"""Built-in encoders, registered through the ``register_encoders`` hook."""

from __future__ import annotations

from collections.abc import Callable

from bidsfusion import hookimpl
from bidsfusion.models.dcgan import DCGANEncoder


@hookimpl
def register_encoders(register: Callable[[str, object], None]) -> None:
    """Register ``dcgan``: factory ``(in_shape, latent_dim, **options) -> DCGANEncoder``."""
    register("dcgan", DCGANEncoder)

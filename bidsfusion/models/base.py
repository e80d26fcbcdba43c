"""The encoder contract shared by every encoder plugin and every objective."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class EncoderOutput(NamedTuple):
    """What an encoder returns for a batch ``x[B, 1, D, H, W]``.

    Attributes:
        latent: the representation ``z``, shape ``[B, latent_dim]``.
        features: intermediate maps by name; ``"local"`` is the 8^3-resolution
            map ``[B, local_channels, 8, 8, 8]`` (the coarsest-but-one map when
            the input is too small to have one) used by the local DIM terms.
    """

    latent: Tensor
    features: dict[str, Tensor]

"""The encoder contract shared by every encoder plugin and every objective, and the sizes
of an encoder that objectives are built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor, nn

LOCAL_SIZE = 8
"""Spatial size of every encoder's ``"local"`` feature map: ``[B, C, 8, 8, 8]``."""


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


@dataclass(frozen=True)
class Dims:
    """Sizes of one modality's encoder, all an objective needs to build its parts."""

    in_shape: tuple[int, int, int]
    latent_dim: int
    local_channels: int
    embed_dim: int = 64

    @classmethod
    def of(cls, encoder: nn.Module, embed_dim: int = 64) -> Dims:
        """Read ``in_shape``, ``latent_dim`` and ``local_channels`` from an encoder."""
        return cls(tuple(encoder.in_shape), encoder.latent_dim, encoder.local_channels, embed_dim)

"""The encoder contract shared by every encoder plugin and every objective, and the sizes
of an encoder that objectives are built from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

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


@runtime_checkable
class Encoder(Protocol):
    """What every registered encoder is: an ``nn.Module`` mapping ``x[B, 1, D, H, W]`` to
    :class:`EncoderOutput`, describing its sizes to the objectives.

    Attributes:
        in_shape: the input's spatial shape ``(D, H, W)``.
        latent_dim: the size of ``latent``.
        local_channels: the channels of ``features["local"]``.
    """

    in_shape: tuple[int, int, int]
    latent_dim: int
    local_channels: int

    def __call__(self, x: Tensor) -> EncoderOutput:
        """The encoder's output for a batch ``x[B, 1, D, H, W]``."""
        ...

    def parameters(self, recurse: bool = True) -> Any:
        """Its trainable parameters (an ``nn.Module``'s)."""
        ...


EncoderFactory = Callable[..., Encoder]
"""``factory(in_shape, latent_dim, **options) -> Encoder``: what ``register_encoders``
registers (a class such as :class:`~bidsfusion.models.dcgan.DCGANEncoder`)."""


@dataclass(frozen=True)
class Dims:
    """Sizes of one modality's encoder, all an objective needs to build its parts."""

    in_shape: tuple[int, int, int]
    latent_dim: int
    local_channels: int
    embed_dim: int = 64

    @classmethod
    def of(cls, encoder: Encoder | nn.Module, embed_dim: int = 64) -> Dims:
        """Read ``in_shape``, ``latent_dim`` and ``local_channels`` from an encoder."""
        return cls(tuple(encoder.in_shape), encoder.latent_dim, encoder.local_channels, embed_dim)
